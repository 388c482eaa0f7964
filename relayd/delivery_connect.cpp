// Implements delivery_connect.hpp: DNS, the host/address walk, the TLS `may`
// fallback and the session set-up. A 4xx greeting or EHLO (and every connect
// error) moves on to the next address; a refusal of our own configuration stops
// the walk (the next host would refuse it too).
#include "relayd/delivery_connect.hpp"

#include <openssl/crypto.h>
#include <openssl/ssl.h>
#include <spdlog/spdlog.h>

#include <boost/asio/ssl.hpp>
#include <chrono>
#include <stdexcept>

#include "dns/mx_resolver.hpp"
#include "relayd/async_call.hpp"
#include "relayd/config.hpp"
#include "relayd/delivery_outcome.hpp"
#include "relayd/delivery_route.hpp"
#include "relayd/oauth2_token.hpp"
#include "relayd/secret_file.hpp"

namespace relayd {
namespace {

namespace ssl = asio::ssl;
using steady = std::chrono::steady_clock;
using error_code = boost::system::error_code;

double seconds_since(steady::time_point t) {
  return std::chrono::duration<double>(steady::now() - t).count();
}

bool is_loopback_host(const std::string& host) {
  if (host == "localhost") return true;
  error_code ec;
  auto a = asio::ip::make_address(host, ec);
  return !ec && a.is_loopback();
}

void wipe(std::string& s) {
  OPENSSL_cleanse(s.data(), s.size());
  s.clear();
}

enum class setup_result { ready, failed, tls_failed };

// A host to try: one address of an MX host or of a relayhost.
struct candidate {
  std::string host_name, address;
  std::uint16_t port = 25;
  bool implicit_tls = false;
};

// The token endpoint failed: the mail waits (our credentials, never a bounce).
recipient_outcome token_failed(const oauth2_error& e) {
  recipient_outcome o;
  o.status = e.cause == queue::outcome_cause::auth ? "4.7.0" : "4.3.5";
  o.cause = e.cause;
  o.text = "OAuth2 " + e.text;
  o.description = describe(o);
  return o;
}

// What REQUIRETLS needs to know of a ready connection (delivery_requiretls.hpp).
// Here: TLS and WebPKI, and where the name came from; MTA-STS and DANE raise
// `verification` (DNSSEC: `name`) when their own checks passed.
next_hop_facts hop_facts(const delivery_link& l, bool smarthost, const dns::mx_result& mx) {
  next_hop_facts f;
  f.verification = !l.session->tls_active() ? tls_verification::none
                   : l.stream->verified()   ? tls_verification::webpki
                                            : tls_verification::unauthenticated;
  f.name = smarthost     ? next_hop_name::relayhost
           : mx.implicit ? next_hop_name::domain
                         : next_hop_name::mx_insecure;
  f.offers_requiretls = l.session->capabilities().requiretls;
  return f;
}

// The config key naming route `n`'s password file in messages.
std::string password_key(const route& r, std::size_t n) {
  return n == default_route ? "delivery.relayhost_password_file"
                            : "route " + r.name + ": password_file";
}

}  // namespace

struct connector::impl {
  impl(asio::io_context& io_, const config& cfg_, dns::mx_resolver& dns_)
      : io(io_),
        cfg(cfg_),
        dns(dns_),
        tls_any(ssl::context::tls_client),
        tls_verify(ssl::context::tls_client) {
    for (auto* ctx : {&tls_any, &tls_verify}) {
      SSL_CTX_set_min_proto_version(ctx->native_handle(), TLS1_2_VERSION);
      ctx->set_options(ssl::context::default_workarounds | ssl::context::no_compression);
    }
    tls_any.set_verify_mode(ssl::verify_none);
    // tls_any verifies too, without enforcing it: REQUIRETLS reads the result.
    tls_any.set_default_verify_paths();
    tls_verify.set_default_verify_paths();
    tls_verify.set_verify_mode(ssl::verify_peer);
    for (std::size_t n = 0; n <= cfg.routes.size(); ++n) routes.push_back(route_settings(cfg, n));
    passwords.resize(routes.size());
    password_files.resize(routes.size());
    if (cfg.delivery.relayhost_oauth2)
      oauth = std::make_unique<oauth2_token_source>(io, *cfg.delivery.relayhost_oauth2,
                                                    "delivery.relayhost_oauth2");
    for (std::size_t n = 0; n < routes.size(); ++n) {
      const route& r = routes[n];
      if (r.user.empty() || (n == default_route && oauth)) continue;
      auto f = secret_file::open(r.password_file);
      std::expected<std::string, std::string> v = std::unexpected(f ? "" : f.error());
      if (f) v = f->read_first_line();
      if (!v)
        throw std::runtime_error(password_key(r, n) + ": cannot read " + r.password_file + " (" +
                                 v.error() + ")");
      password_files[n].emplace(std::move(*f));
      passwords[n] = std::move(*v);
    }
  }
  ~impl() {
    for (auto& p : passwords) wipe(p);
  }

  // The hosts to try for `d`, in order; `mx` is the last (or only) answer.
  awaitable<std::vector<candidate>> candidates(const destination_key& d, const route& r,
                                               dns::mx_result& mx);
  // `lost`: set when the stream failed. Awaited directly: the reference is the
  // caller's local.
  awaitable<setup_result> set_up(delivery_link& l, smtp::client_session& s, const route& r,
                                 std::optional<queue::outcome_cause>& lost);
  // `token`: route 0's OAuth2 access token when relayhost_oauth2 is set.
  smtp::client_options session_options(const std::string& host_name, bool try_tls,
                                       const candidate& c, std::size_t route_number,
                                       const std::string& token) const;

  asio::io_context& io;
  const config& cfg;
  dns::mx_resolver& dns;
  ssl::context tls_any;     // none/may/encrypt: encryption without authentication
  ssl::context tls_verify;  // verify: system CAs and the host name
  std::vector<route> routes;            // by route number
  std::vector<std::string> passwords;   // by route number
  std::vector<std::optional<secret_file>> password_files;  // by route number, kept for SIGHUP
  std::unique_ptr<oauth2_token_source> oauth;  // route 0 with relayhost_oauth2: the token cache
  std::uint64_t turn = 0;  // rotates equal relayhosts over connections
};

connector::connector(asio::io_context& io, const config& cfg, dns::mx_resolver& dns)
    : impl_(std::make_unique<impl>(io, cfg, dns)) {}

connector::~connector() = default;

void connector::reload_credentials() {
  auto& m = *impl_;
  if (m.oauth) m.oauth->reload();
  for (std::size_t n = 0; n < m.routes.size(); ++n) {
    if (!m.password_files[n]) continue;
    const std::string key = password_key(m.routes[n], n);
    if (auto v = m.password_files[n]->read_first_line(); v) {
      wipe(m.passwords[n]);
      m.passwords[n] = std::move(*v);
      spdlog::info("SIGHUP: {} re-read", key);
    } else {
      spdlog::error("SIGHUP: {}: {} (the previous password stays)", key, v.error());
    }
  }
}

awaitable<std::vector<candidate>> connector::impl::candidates(const destination_key& d,
                                                               const route& r,
                                                               dns::mx_result& mx) {
  std::vector<candidate> all;
  std::vector<std::uint32_t> preference;
  // The lambdas run before the co_await returns: what they borrow outlives them.
  if (r.relayhost.empty()) {
    mx = co_await from_callback<void(dns::mx_result)>(
        [&](auto done) { dns.resolve_mx(d.name, std::move(done)); });
    for (const auto& host : mx.hosts)
      for (const auto& addr : host.addresses) {
        preference.push_back(static_cast<std::uint32_t>(all.size()));  // resolver's order
        all.push_back({host.name, addr, r.port, false});
      }
  } else {
    // A pool: every host in list order, the addresses of one host as equals.
    bool resolved = false;
    for (std::size_t i = 0; i < r.relayhost.size(); ++i) {
      const relay_host& h = r.relayhost[i];
      auto one = co_await from_callback<void(dns::mx_result)>(
          [&](auto done) { dns.resolve_host(h.host, std::move(done)); });
      if (one.what != dns::outcome::ok) {
        if (!resolved) mx = std::move(one);
        spdlog::warn("delivery: relayhost {} of route {}: {}", h.to_string(), r.name, one.detail);
        continue;
      }
      resolved = true;
      for (const auto& host : one.hosts)
        for (const auto& addr : host.addresses) {
          preference.push_back(static_cast<std::uint32_t>(i));
          all.push_back({host.name, addr, h.port, h.implicit_tls});
        }
      mx = std::move(one);
    }
  }
  std::vector<candidate> ordered;
  for (auto k : attempt_order(preference, turn++)) ordered.push_back(std::move(all[k]));
  co_return ordered;
}

smtp::client_options connector::impl::session_options(const std::string& host_name,
                                                      bool try_tls, const candidate& c,
                                                      std::size_t route_number,
                                                      const std::string& token) const {
  const route& r = routes[route_number];
  smtp::client_options o;
  o.helo_name = cfg.hostname;
  o.implicit_tls = c.implicit_tls;
  o.want_tls = try_tls && r.tls != tls_policy::none;
  o.require_tls = r.tls == tls_policy::encrypt || r.tls == tls_policy::verify;
  if (!r.relayhost.empty() && !r.user.empty()) {
    o.auth_user = r.user;
    const bool use_token = route_number == default_route && oauth;
    o.auth_password = use_token ? token : passwords[route_number];
    if (use_token) o.auth_mechanism = cfg.delivery.relayhost_oauth2->mechanism;
    o.allow_plaintext_auth = is_loopback_host(host_name);
    if (!o.allow_plaintext_auth) {
      o.want_tls = true;
      o.require_tls = true;
    }
  }
  return o;
}

awaitable<setup_result> connector::impl::set_up(delivery_link& l, smtp::client_session& s,
                                                const route& r,
                                                std::optional<queue::outcome_cause>& lost) {
  for (;;) {
    auto step = co_await pump(*l.stream, s, l.in, cfg.delivery.command_timeout);
    switch (step.what) {
      case smtp::client_session::event::ready: co_return setup_result::ready;
      case smtp::client_session::event::start_tls: {
        const bool verify = r.tls == tls_policy::verify;
        if (auto ec = co_await l.stream->handshake(l.host_name, verify,
                                                   cfg.delivery.connect_timeout)) {
          spdlog::warn("TLS handshake with {} failed: {}", l.host_name, ec.message());
          co_return setup_result::tls_failed;
        }
        l.in.clear();
        s.tls_established();
        continue;
      }
      default:
        lost = step.lost;
        co_return setup_result::failed;
    }
  }
}

awaitable<connect_result> connector::open(const destination_key& destination,
                                          bool requiretls) {
  auto& m = *impl_;
  const auto& cfg = m.cfg;
  const std::size_t number = destination.route < m.routes.size() ? destination.route : 0;
  const route& r = m.routes[number];
  const std::string what =
      number == default_route ? destination.name : "route " + r.name + " (" + destination.name + ")";
  connect_result out;
  const auto started = steady::now();
  const bool smarthost = !r.relayhost.empty();

  dns::mx_result mx;
  const auto hosts = co_await m.candidates(destination, r, mx);
  out.dns_seconds = seconds_since(started);
  if (hosts.empty() && mx.what != dns::outcome::ok) {
    // A relayhost that does not resolve is our configuration or our DNS, not
    // the recipient's domain: the mail waits for it instead of bouncing.
    const std::string relayhost = smarthost ? r.relayhost.front().to_string() : "";
    out.problem = dns_failed(mx, relayhost);
    if (smarthost) spdlog::error("delivery: {}; mail stays queued", out.problem.description);
    co_return out;
  }

  std::string token;  // OAuth2 (route 0): fetched before connecting (the HTTPS request is async)
  const bool uses_token = number == default_route && m.oauth && smarthost && !r.user.empty();
  if (uses_token) {
    auto t = co_await m.oauth->token();
    if (!t) {
      out.problem = token_failed(t.error());
      out.local_fault = true;
      co_return out;
    }
    token = std::move(*t);
  }
  const auto connect_started = steady::now();
  out.problem = no_host_answered();
  requiretls_walk walk;  // requiretls: the hosts that did not qualify
  for (const auto& host : hosts) {
    error_code aec;
    auto ip = asio::ip::make_address(host.address, aec);
    if (aec) continue;
    const std::string relay = fmt::format("{}[{}]:{}", host.host_name, host.address, host.port);
    bool try_tls = r.tls != tls_policy::none || requiretls;
    bool refused_for_requiretls = false;  // requiretls: this host answered and did not qualify
    const auto not_qualified = [&](requiretls_check c) {
      walk.refused(c, relay);
      refused_for_requiretls = true;
    };
    for (int pass = 0; pass < 2; ++pass) {
      auto& ctx = r.tls == tls_policy::verify ? m.tls_verify : m.tls_any;
      delivery_link l{std::make_unique<outbound>(m.io, ctx), nullptr, {}, relay, host.host_name};
      if (auto ec = co_await l.stream->connect(tcp::endpoint(ip, host.port),
                                               cfg.delivery.connect_timeout)) {
        out.problem = connect_failed(relay, ec == asio::error::timed_out, ec.message());
        break;
      }
      // smtps://: TLS before the greeting, checked as for STARTTLS; no plaintext fallback.
      if (host.implicit_tls &&
          co_await l.stream->handshake(host.host_name, r.tls == tls_policy::verify,
                                       cfg.delivery.connect_timeout)) {
        out.problem = tls_failed(relay, l.stream->tls_error());
        spdlog::warn("TLS handshake with {} failed: {}", relay, l.stream->tls_error());
        if (requiretls) not_qualified({requiretls_verdict::no_tls});
        break;
      }
      auto options = m.session_options(host.host_name, try_tls, host, number, token);
      if (requiretls) options.want_tls = options.require_tls = true;
      l.session = std::make_unique<smtp::client_session>(std::move(options));
      std::optional<queue::outcome_cause> lost;
      const auto res = co_await m.set_up(l, *l.session, r, lost);
      if (res == setup_result::ready) {
        l.hop = hop_facts(l, smarthost, mx);
        if (requiretls) {
          // RFC 8689 4.2.1: a host that does not qualify gets QUIT; the next is tried.
          const auto check = check_next_hop(queue::flag_requiretls, l.hop);
          if (!check.may_send()) {
            spdlog::info("delivery to {}: {} does not qualify: {}", what, relay, check.text());
            not_qualified(check);
            l.session->quit();
            co_await pump(*l.stream, *l.session, l.in, cfg.delivery.command_timeout);
            l.stream->close();
            break;
          }
        }
        out.link = std::move(l);
        out.connect_seconds = seconds_since(connect_started);
        co_return out;
      }
      if (res == setup_result::tls_failed) {
        out.problem = tls_failed(relay, l.stream->tls_error());
        if (requiretls) {
          not_qualified({requiretls_verdict::no_tls});
          break;
        }
        // tls = may: try the same host again in plaintext.
        if (r.tls == tls_policy::may && !l.session->authenticated() && pass == 0) {
          try_tls = false;
          continue;
        }
        break;
      }
      const auto& f = l.session->failure();
      if (requiretls && f.cause == smtp::failure_cause::tls_unavailable) {
        not_qualified({requiretls_verdict::no_tls});
        break;
      }
      out.problem = outcome_of(f, relay, lost);
      out.local_fault = f.local_fault;
      if (uses_token && f.cause == smtp::failure_cause::auth_rejected) {
        m.oauth->refused(token);
        out.token_refused = true;
      }
      // A 421 greeting or EHLO: this host is busy; the next one may not be.
      out.throttled = out.throttled || f.destination_throttled;
      break;
    }
    if (requiretls && !refused_for_requiretls) walk.unreachable();
    if (out.local_fault) break;
  }
  if (walk.any_refused() && !out.local_fault) out.problem = walk.outcome();
  out.connect_seconds = seconds_since(connect_started);
  wipe(token);
  if (out.local_fault) {
    spdlog::error("delivery to {}: our own configuration is refused: {}", what,
                  out.problem.description);
  }
  co_return out;
}

}  // namespace relayd
