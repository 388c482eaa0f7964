// DANE policy and OpenSSL set-up (see delivery_dane.hpp).
#include "relayd/delivery_dane.hpp"

#include <fmt/format.h>
#include <openssl/ssl.h>

#include <boost/asio/ssl/context.hpp>

#include "relayd/async_call.hpp"
#include "relayd/delivery_outcome.hpp"
#include "relayd/delivery_stream.hpp"

namespace relayd {

std::string tlsa_name(std::string_view mx_host, std::uint16_t port) {
  return fmt::format("_{}._tcp.{}", port, mx_host);
}

std::vector<std::string> tlsa_bases(const std::string& mx_host, const std::string& canonical) {
  if (canonical.empty() || canonical == mx_host) return {mx_host};
  return {canonical, mx_host};
}

bool wants_tlsa(bool mx_secure, bool host_secure) {
  return mx_secure && host_secure;
}

dane_decision decide_dane(const std::string& tlsa_base, const dns::tlsa_result& r) {
  dane_decision d;
  switch (r.what) {
    case dns::outcome::ok:
      break;
    case dns::outcome::not_found:
      d.why = r.secure ? "no TLSA records for " + tlsa_base
                       : "no TLSA records for " + tlsa_base + " (insecure)";
      return d;
    default:  // retry, fail: the validating resolver could not give a secure answer
      d.mode = dane_mode::defer;
      d.why = r.detail + " (DNSSEC-bogus or unanswered; the host is not used)";
      return d;
  }
  if (!r.secure) {
    d.why = "TLSA records for " + tlsa_base + " are not DNSSEC-signed (insecure): ignored";
    return d;
  }
  for (const auto& rec : r.records)
    if (dns::usable(rec)) d.records.push_back(rec);
  if (d.records.empty()) {
    d.why = fmt::format("{} TLSA record(s) for {}, none usable (RFC 7672 2.2)",
                        r.records.size() + r.malformed, tlsa_base);
    return d;
  }
  d.mode = dane_mode::enforce;
  d.why = fmt::format("{} usable TLSA record(s) for {}", d.records.size(), tlsa_base);
  return d;
}

awaitable<dane_decision> dane_for_host(dns::mx_resolver& dns, const dns::mx_result& mx,
                                       const std::string& mx_host, std::uint16_t port) {
  bool host_secure = false;
  std::string canonical;  // a CNAME's target; secure with the addresses (one validated answer)
  for (const auto& h : mx.hosts)
    if (h.name == mx_host) {
      host_secure = h.secure;
      canonical = h.canonical;
    }
  dane_decision d;
  if (!wants_tlsa(mx.secure, host_secure)) {
    d.why = mx.secure ? "the addresses of " + mx_host + " are not DNSSEC-signed"
                      : "the MX records are not DNSSEC-signed";
    co_return d;
  }
  const auto names = tlsa_bases(mx_host, canonical);
  for (std::size_t i = 0; i < names.size(); ++i) {
    const std::string base = tlsa_name(names[i], port);
    // The lambda runs before the co_await returns: what it borrows outlives it.
    auto r = co_await from_callback<void(dns::tlsa_result)>(
        [&](auto done) { dns.resolve_tlsa(base, std::move(done)); });
    d = decide_dane(base, r);
    // None at the expanded name: the MX host name's records (RFC 7672 2.2.2).
    if (r.what == dns::outcome::not_found && i + 1 < names.size()) continue;
    if (d.mode == dane_mode::enforce) d.names.assign(names.begin() + static_cast<std::ptrdiff_t>(i), names.end());
    break;
  }
  co_return d;
}

void enable_dane(boost::asio::ssl::context& ctx) {
  SSL_CTX* c = ctx.native_handle();
  SSL_CTX_dane_enable(c);
  // RFC 7672 3.1.1: DANE-EE(3) matches the server's key, whatever its names or dates.
  SSL_CTX_dane_set_flags(c, DANE_FLAG_NO_DANE_EE_NAMECHECKS);
  SSL_CTX_set_verify(c, SSL_VERIFY_PEER, nullptr);
}

std::string arm_dane(outbound& stream, const std::string& mx_host,
                     const std::vector<dns::tlsa_record>& records) {
  SSL* ssl = stream.native_ssl();
  // The MX host name is the reference identifier (DANE-TA) and the SNI.
  if (SSL_dane_enable(ssl, mx_host.c_str()) <= 0)
    return "cannot enable DANE for " + mx_host;
  int added = 0;
  for (const auto& r : records)
    if (SSL_dane_tlsa_add(ssl, r.usage, r.selector, r.mtype, r.data.data(), r.data.size()) > 0)
      ++added;
  // OpenSSL refuses what it cannot use (e.g. a "full certificate" that is no
  // DER certificate); with nothing left DANE cannot verify anything.
  if (added == 0) return "none of the TLSA records of " + mx_host + " could be used by OpenSSL";
  return "";
}

std::string arm_dane(outbound& stream, const std::string& mx_host, const dane_decision& d) {
  if (d.names.empty()) return arm_dane(stream, mx_host, d.records);
  auto e = arm_dane(stream, d.names.front(), d.records);
  for (std::size_t i = 1; e.empty() && i < d.names.size(); ++i)
    if (SSL_add1_host(stream.native_ssl(), d.names[i].c_str()) != 1)
      e = "cannot add " + d.names[i] + " as a DANE reference identifier";
  return e;
}

std::string dane_session_summary(outbound& stream) {
  SSL* ssl = stream.native_ssl();
  std::string out = fmt::format("{} with cipher {}", SSL_get_version(ssl),
                                SSL_CIPHER_get_name(SSL_get_current_cipher(ssl)));
  std::uint8_t usage = 0, selector = 0, mtype = 0;
  const int depth = SSL_get0_dane_tlsa(ssl, &usage, &selector, &mtype, nullptr, nullptr);
  if (depth >= 0)
    out += fmt::format(", {}({}) {} {} matched at depth {}",
                       usage == 3 ? "DANE-EE" : usage == 2 ? "DANE-TA" : "TLSA", usage, selector,
                       mtype, depth);
  return out;
}

recipient_outcome dane_failed(std::string_view relay, std::string_view why, bool dns_lookup) {
  recipient_outcome o;
  o.status = dns_lookup ? "4.4.3" : "4.7.5";
  o.cause = dns_lookup ? queue::outcome_cause::dns : queue::outcome_cause::tls;
  if (!dns_lookup) {
    o.in_reply_to = queue::smtp_command::starttls;
    o.remote_host = relay;
  }
  o.text = fmt::format("DANE: {}", why);
  o.description = describe(o);
  return o;
}

}  // namespace relayd
