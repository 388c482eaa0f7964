// Implements delivery_mta_sts.hpp: the per-domain cache (memory, backed by the
// spool's `mta_sts` database, read once per domain and written through the
// spool's writer thread), the TXT lookup and the HTTPS fetch (Boost.Beast over
// asio::ssl on the I/O thread; the policy host's addresses come from the same
// c-ares resolver as the MX hosts).
#include "relayd/delivery_mta_sts.hpp"

#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <cctype>
#include <chrono>
#include <expected>
#include <functional>
#include <map>
#include <optional>
#include <utility>

#include "dns/mx_resolver.hpp"
#include "queue/spool.hpp"
#include "relayd/async_call.hpp"
#include "relayd/config.hpp"
#include "relayd/delivery_mta_sts_memory.hpp"
#include "relayd/delivery_outcome.hpp"
#include "smtp/text.hpp"

namespace relayd {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using namespace std::chrono_literals;

constexpr auto fetch_time_limit = 20s;  // the whole fetch, connect to the last octet
constexpr const char* well_known = "/.well-known/mta-sts.txt";

std::int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// A domain in lower case without a trailing dot ("Example.COM." -> "example.com").
std::string domain_key(std::string_view s) {
  std::string out = smtp::text::lower(std::string(s));
  if (!out.empty() && out.back() == '.') out.pop_back();
  return out;
}

mta_sts_verdict verdict_of(const std::string& domain, const mta_sts::cached_policy& c) {
  return {domain, c.parsed.what, c.parsed.mx, c.id};
}

// "text/plain" or "text/plain; charset=utf-8" (type and subtype in any case).
bool is_text_plain(std::string_view v) {
  v = v.substr(0, v.find(';'));
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
  return smtp::text::lower(std::string(v)) == "text/plain";
}

}  // namespace

bool mta_sts_verdict::allows(std::string_view mx_host) const {
  return std::ranges::any_of(
      mx, [&](const std::string& p) { return mta_sts::mx_pattern_matches(p, mx_host); });
}

std::string mta_sts_verdict::patterns() const {
  std::string out;
  for (const auto& p : mx) out += (out.empty() ? "" : ", ") + p;
  return out;
}

recipient_outcome mta_sts_mx_refused(const mta_sts_verdict& v, std::string_view relay,
                                     std::string_view mx_host) {
  recipient_outcome o;
  o.status = "4.7.5";
  o.cause = queue::outcome_cause::tls;
  o.remote_host = std::string(relay);
  o.text = fmt::format("MX host {} does not match the MTA-STS policy of {} (mode enforce, mx {})",
                       mx_host, v.domain, v.patterns());
  o.description = describe(o);
  return o;
}

void mta_sts_required(recipient_outcome& o, const mta_sts_verdict& v) {
  o.status = "4.7.5";
  o.cause = queue::outcome_cause::tls;
  o.text += fmt::format(" (the MTA-STS policy of {} requires TLS with a valid certificate)", v.domain);
  o.description = describe(o);
}

struct mta_sts_source::state {
  state(asio::io_context& io_, const config& cfg_, dns::mx_resolver& dns_, queue::spool& spool_)
      : io(io_), cfg(cfg_), dns(dns_), spool(spool_), tls(ssl::context::tls_client) {
    SSL_CTX_set_min_proto_version(tls.native_handle(), TLS1_2_VERSION);
    tls.set_default_verify_paths();  // honours SSL_CERT_FILE / SSL_CERT_DIR
    tls.set_verify_mode(ssl::verify_peer);
  }

  struct entry {
    bool loaded = false;  // the spool's record was read
    std::optional<mta_sts::cached_policy> cached;
    bool busy = false;    // a lookup runs; `waiters` get its answer
    std::vector<std::function<void(mta_sts_verdict)>> waiters;
  };

  entry& entry_for(const std::string& domain);
  awaitable<mta_sts_verdict> look_up(const std::string& domain, entry& e);
  awaitable<std::expected<std::string, std::string>> fetch(const std::string& domain);
  awaitable<std::expected<std::string, std::string>> fetch_from(const std::string& host,
                                                                const std::string& address);
  void store(const std::string& domain, const mta_sts::cached_policy& c);

  asio::io_context& io;
  const config& cfg;
  dns::mx_resolver& dns;
  queue::spool& spool;
  ssl::context tls;
  std::map<std::string, entry, std::less<>> domains;  // entries are never erased
  mta_sts::lookup_memory memory;  // TXT answers kept a while, failed fetches backing off
};

mta_sts_source::state::entry& mta_sts_source::state::entry_for(const std::string& domain) {
  entry& e = domains[domain];
  if (e.loaded) return e;
  e.loaded = true;
  // One short read transaction, once per domain and process.
  if (auto rec = spool.mta_sts_record(domain)) {
    e.cached = mta_sts::decode(*rec);
    if (!e.cached)
      spdlog::warn("MTA-STS: the cached policy of {} does not decode; it is fetched again", domain);
  }
  return e;
}

void mta_sts_source::state::store(const std::string& domain, const mta_sts::cached_policy& c) {
  spool.store_mta_sts(domain, mta_sts::encode(c), [domain](queue::result r) {
    // The writer thread: only the (thread-safe) log.
    if (r.code != queue::status::ok) spdlog::warn("MTA-STS: cannot keep the policy of {} in the spool: {}", domain, r.detail);
  });
}

awaitable<mta_sts_verdict> mta_sts_source::state::look_up(const std::string& domain, entry& e) {
  const std::string txt_name = "_mta-sts." + domain;
  std::optional<std::string> id;
  if (auto kept = memory.txt(domain, unix_now())) {
    id = std::move(kept->id);
  } else {
    auto txt = co_await from_callback<void(dns::txt_result)>(
        [&](auto done) { dns.resolve_txt(txt_name, std::move(done)); });
    if (txt.what == dns::outcome::ok) {
      if (auto found = mta_sts::policy_id(txt.records))
        id = std::move(*found);
      else if (found.error() != "no v=STSv1 record")
        spdlog::warn("MTA-STS: {} TXT: {}", txt_name, found.error());
    } else if (txt.what == dns::outcome::retry) {
      spdlog::warn("MTA-STS: {}", txt.detail);
    }
    // A definite answer is kept a while; a failed lookup is asked again.
    if (txt.what == dns::outcome::ok || txt.what == dns::outcome::not_found)
      memory.remember_txt(domain, id, txt.ttl, unix_now());
  }
  const std::int64_t now = unix_now();
  switch (mta_sts::next_step(e.cached, id, now)) {
    case mta_sts::step::use_cached:
    case mta_sts::step::keep_cached:
      co_return verdict_of(domain, *e.cached);
    case mta_sts::step::none:
      co_return mta_sts_verdict{domain};
    case mta_sts::step::fetch:
      break;
  }
  const bool keep = e.cached && e.cached->fresh(now);
  const std::string instead =
      keep ? "the cached policy (id " + e.cached->id + ", mode " +
                 std::string(mta_sts::to_string(e.cached->parsed.what)) + ") stays in use"
           : "no policy applies";
  if (std::int64_t until = 0; !memory.may_fetch(domain, *id, now, &until)) {
    spdlog::info("MTA-STS: policy of {} (id {}) not fetched: an earlier fetch failed, next try "
                 "in {}s; {}", domain, *id, until - now, instead);
    co_return keep ? verdict_of(domain, *e.cached) : mta_sts_verdict{domain};
  }
  auto body = co_await fetch(domain);
  std::expected<mta_sts::policy, std::string> parsed = std::unexpected(std::string());
  if (body) {
    parsed = mta_sts::parse_policy(*body);
    if (!parsed) body = std::unexpected("the policy is malformed: " + parsed.error());
  }
  if (!body) {
    const auto next = memory.fetch_failed(domain, *id, now);
    spdlog::warn("MTA-STS: policy of {} (id {}) not fetched: {}; {} (next try in {}s)", domain,
                 *id, body.error(), instead, next - now);
    co_return keep ? verdict_of(domain, *e.cached) : mta_sts_verdict{domain};
  }
  memory.fetch_succeeded(domain);
  mta_sts::cached_policy c{*id, now, std::move(*body), std::move(*parsed)};
  spdlog::info("MTA-STS: policy of {} fetched: id {}, mode {}, max_age {}, mx {}", domain, c.id,
               mta_sts::to_string(c.parsed.what), c.parsed.max_age,
               verdict_of(domain, c).patterns());
  store(domain, c);
  e.cached = std::move(c);
  co_return verdict_of(domain, *e.cached);
}

awaitable<std::expected<std::string, std::string>> mta_sts_source::state::fetch(
    const std::string& domain) {
  const std::string host = "mta-sts." + domain;
  auto where = co_await from_callback<void(dns::mx_result)>(
      [&](auto done) { dns.resolve_host(host, std::move(done)); });
  if (where.what != dns::outcome::ok) co_return std::unexpected(where.detail);
  std::string why = "no address for " + host;
  for (const auto& h : where.hosts)
    for (const auto& a : h.addresses) {
      auto got = co_await fetch_from(host, a);
      if (got) co_return got;
      why = std::move(got.error());
    }
  co_return std::unexpected(why);
}

awaitable<std::expected<std::string, std::string>> mta_sts_source::state::fetch_from(
    const std::string& host, const std::string& address) {
  using std::unexpected;
  boost::system::error_code aec;
  const auto ip = asio::ip::make_address(address, aec);
  if (aec) co_return unexpected("bad address " + address);
  const tcp::endpoint ep(ip, cfg.delivery.mta_sts_port);
  const std::string url = "https://" + host + well_known;
  const std::string at = url + " (" + address + ")";

  beast::ssl_stream<beast::tcp_stream> stream(io, tls);
  SSL_set_tlsext_host_name(stream.native_handle(), host.c_str());
  SSL_set1_host(stream.native_handle(), host.c_str());  // checked with the chain
  auto& tcp_layer = beast::get_lowest_layer(stream);
  tcp_layer.expires_after(fetch_time_limit);  // one deadline for the whole fetch
  if (auto [ec] = co_await tcp_layer.async_connect(ep, use_tuple); ec)
    co_return unexpected(at + ": cannot connect: " + ec.message());
  if (auto [ec] = co_await stream.async_handshake(ssl::stream_base::client, use_tuple); ec) {
    std::string reason = ec.message();
    if (const long v = SSL_get_verify_result(stream.native_handle()); v != X509_V_OK)
      reason = std::string("certificate verification failed: ") + X509_verify_cert_error_string(v);
    co_return unexpected(at + ": TLS handshake failed: " + reason);
  }
  http::request<http::empty_body> req{http::verb::get, well_known, 11};
  req.set(http::field::host, host);
  req.set(http::field::user_agent, "relayd");
  req.set(http::field::connection, "close");
  if (auto [ec, n] = co_await http::async_write(stream, req, use_tuple); ec)
    co_return unexpected(at + ": cannot send the request: " + ec.message());
  beast::flat_buffer buf;
  http::response_parser<http::string_body> parser;
  parser.header_limit(16 * 1024);
  parser.body_limit(mta_sts::max_policy_size);
  if (auto [ec, n] = co_await http::async_read(stream, buf, parser, use_tuple); ec) {
    if (ec == http::error::body_limit)
      co_return unexpected(at + ": the policy is larger than 64 KiB");
    co_return unexpected(at + ": no answer: " + ec.message());
  }
  tcp_layer.close();
  const auto& res = parser.get();
  const int status = static_cast<int>(res.result_int());
  if (status >= 300 && status < 400)
    co_return unexpected(at + ": HTTP " + std::to_string(status) + " redirect (not followed)");
  if (status != 200) co_return unexpected(at + ": HTTP " + std::to_string(status));
  const auto type = res[http::field::content_type];
  if (!is_text_plain(std::string_view(type.data(), type.size())))
    co_return unexpected(at + ": Content-Type \"" + std::string(type.data(), type.size()) +
                         "\" is not text/plain");
  co_return res.body();
}

mta_sts_source::mta_sts_source(asio::io_context& io, const config& cfg, dns::mx_resolver& dns,
                               queue::spool& spool)
    : s_(std::make_shared<state>(io, cfg, dns, spool)) {}

mta_sts_source::~mta_sts_source() = default;

awaitable<mta_sts_verdict> mta_sts_source::policy_for(std::string domain) {
  auto self = s_;  // the source outlives its callers (the connector's), kept anyway
  domain = domain_key(domain);
  if (domain.empty() || domain.starts_with('[')) co_return mta_sts_verdict{domain};  // a literal
  auto& e = self->entry_for(domain);
  if (e.busy) {
    co_return co_await from_callback<void(mta_sts_verdict)>(
        [&](auto done) { e.waiters.emplace_back(std::move(done)); });
  }
  e.busy = true;
  mta_sts_verdict v{domain};
  try {
    v = co_await self->look_up(domain, e);
  } catch (const std::exception& ex) {
    spdlog::error("MTA-STS: looking up the policy of {}: {}", domain, ex.what());
  }
  e.busy = false;
  for (auto& w : std::exchange(e.waiters, {})) w(v);
  co_return v;
}

}  // namespace relayd
