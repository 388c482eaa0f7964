// MX resolution for delivery, through c-ares driven by the daemon's Asio
// io_context: no blocking call, no thread per lookup. Every lookup ends in one
// named outcome, and that outcome alone decides deferred vs dead:
//   ok         hosts in preference order (equal preferences shuffled), each with
//              its A/AAAA addresses; implicit MX (no MX record: the domain's own
//              A/AAAA) is ok with implicit = true
//   retry      SERVFAIL, REFUSED, timeout, no reachable server: temporary
//   not_found  NXDOMAIN, or no MX and no A/AAAA: permanent
//   null_mx    a single "MX 0 ." (RFC 7505): permanent
//   fail       any other permanent failure (malformed name, ...)
// Results are cached for their TTL. Completions run on the io_context's thread.
// resolve_txt (DKIM key records) uses the same channel and outcomes, uncached;
// so does resolve_tlsa (DANE). With options.dnssec every query asks for the AD
// bit and results say whether the resolver validated them (`secure`).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "dns/tlsa.hpp"

namespace boost::asio {
class io_context;
}

namespace dns {

enum class outcome { ok, retry, fail, not_found, null_mx };
std::string_view to_string(outcome o);  // "ok", "retry", ...
inline bool permanent(outcome o) {
  return o == outcome::fail || o == outcome::not_found || o == outcome::null_mx;
}

struct mx_host {
  std::string name;                    // "mx1.example.org" (no trailing dot)
  std::uint16_t preference = 0;
  std::vector<std::string> addresses;  // textual IPv6 and IPv4 addresses; may be empty
  bool secure = false;                 // dnssec: its A and AAAA answers had the AD bit
  // When `name` is an alias (CNAME): the name its addresses are at ("" otherwise).
  std::string canonical;
};

struct mx_result {
  outcome what = outcome::retry;
  std::string detail;  // for logs and relayctl: "SERVFAIL looking up MX for example.org"
  bool implicit = false;
  bool secure = false;  // dnssec: the MX RRset had the AD bit (implicit: its denial and addresses)
  std::vector<mx_host> hosts;  // only for ok; at least one host with addresses
};

struct txt_result {
  outcome what = outcome::retry;  // ok, retry, fail, or not_found (NXDOMAIN or no TXT record)
  std::string detail;             // "NXDOMAIN looking up TXT for s1._domainkey.example.org"
  std::vector<std::string> records;  // ok: each record's strings joined
  // How long the answer may be kept (seconds): ok, the records' lowest TTL;
  // not_found, the SOA's negative TTL (RFC 2308), 0 without an SOA; else 0.
  std::uint32_t ttl = 0;
};

// _25._tcp.HOST TLSA records (RFC 7672). ok: at least one record; not_found:
// NXDOMAIN or no TLSA record; retry: SERVFAIL (a validating resolver's answer
// for bogus data), timeout, ...; fail: a malformed name.
struct tlsa_result {
  outcome what = outcome::retry;
  std::string detail;
  bool secure = false;               // the reply had the AD bit (records or their denial)
  std::vector<tlsa_record> records;  // parsed; usable or not (dns::usable)
  std::size_t malformed = 0;         // records too short to parse (unusable)
};

struct resolver_options {
  // "127.0.0.1:5353", "[::1]:53"; empty: /etc/resolv.conf
  std::vector<std::string> servers;
  std::chrono::milliseconds timeout{5000};  // per try
  int tries = 3;
  std::size_t cache_entries = 10000;
  // Ask for the AD bit and report it (mx_result::secure, ...). Only meaningful
  // with `servers` naming a DNSSEC-validating resolver relayd can trust.
  bool dnssec = false;
  // Wall clock for the cache; injectable for tests.
  std::function<std::chrono::steady_clock::time_point()> now;
};

class mx_resolver {
 public:
  // Fails (std::runtime_error with the reason) only if c-ares cannot start or a
  // server address is malformed: a start-up error.
  mx_resolver(boost::asio::io_context& io, resolver_options options);
  ~mx_resolver();
  mx_resolver(const mx_resolver&) = delete;
  mx_resolver& operator=(const mx_resolver&) = delete;

  // MX lookup for a mail domain (implicit MX fallback, null MX, address lookup).
  // A domain literal "[192.0.2.1]" / "[IPv6:2001:db8::1]" resolves without DNS.
  void resolve_mx(std::string domain, std::function<void(mx_result)> done);
  // A/AAAA only (a relayhost written "[host]"): one mx_host, preference 0.
  void resolve_host(std::string host, std::function<void(mx_result)> done);

  // TXT records of `name` (no cache: its caller checks rarely and wants fresh data).
  void resolve_txt(std::string name, std::function<void(txt_result)> done);

  // TLSA records of `name` (e.g. "_25._tcp.mx1.example.org"); always asks for
  // the AD bit; no cache.
  void resolve_tlsa(std::string name, std::function<void(tlsa_result)> done);

  // Cancels everything outstanding: pending callbacks get outcome::retry.
  void cancel();

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace dns
