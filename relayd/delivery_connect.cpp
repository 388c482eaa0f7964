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

// The token endpoint failed: the mail waits (our credentials, never a bounce).
recipient_outcome token_failed(const oauth2_error& e) {
  recipient_outcome o;
  o.status = e.cause == queue::outcome_cause::auth ? "4.7.0" : "4.3.5";
  o.cause = e.cause;
  o.text = "OAuth2 " + e.text;
  o.description = describe(o);
  return o;
}

}  // namespace

struct connector::impl {
  impl(asio::io_context& io_, const config& cfg_, dns::mx_resolver& dns_)
      : io(io_),
        cfg(cfg_),
        dns(dns_),
        tls_any(ssl::context::tls_client),
        tls_verify(ssl::context::tls_client) {
    const auto& d = cfg.delivery;
    if (d.relayhost_oauth2) {
      oauth = std::make_unique<oauth2_token_source>(io, *d.relayhost_oauth2,
                                                    "delivery.relayhost_oauth2");
    } else if (!d.relayhost_user.empty()) {
      auto f = secret_file::open(d.relayhost_password_file);
      std::expected<std::string, std::string> v = std::unexpected(f ? "" : f.error());
      if (f) v = f->read_first_line();
      if (!v)
        throw std::runtime_error("delivery.relayhost_password_file: cannot read " +
                                 d.relayhost_password_file + " (" + v.error() + ")");
      password_file.emplace(std::move(*f));
      relay_password = std::move(*v);
    }
    for (auto* ctx : {&tls_any, &tls_verify}) {
      SSL_CTX_set_min_proto_version(ctx->native_handle(), TLS1_2_VERSION);
      ctx->set_options(ssl::context::default_workarounds | ssl::context::no_compression);
    }
    tls_any.set_verify_mode(ssl::verify_none);
    tls_verify.set_default_verify_paths();
    tls_verify.set_verify_mode(ssl::verify_peer);
  }
  ~impl() { wipe(relay_password); }

  awaitable<dns::mx_result> resolve(const std::string& name);
  // `lost`: set when the stream failed. Awaited directly: the reference is the
  // caller's local.
  awaitable<setup_result> set_up(delivery_link& l, smtp::client_session& s,
                                 std::optional<queue::outcome_cause>& lost);
  smtp::client_options session_options(const std::string& host_name, bool try_tls,
                                       const std::string& token) const;

  asio::io_context& io;
  const config& cfg;
  dns::mx_resolver& dns;
  ssl::context tls_any;     // none/may/encrypt: encryption without authentication
  ssl::context tls_verify;  // verify: system CAs and the host name
  std::string relay_password;
  std::optional<secret_file> password_file;     // kept open for SIGHUP
  std::unique_ptr<oauth2_token_source> oauth;  // relayhost_oauth2: the token cache
};

connector::connector(asio::io_context& io, const config& cfg, dns::mx_resolver& dns)
    : impl_(std::make_unique<impl>(io, cfg, dns)) {}

connector::~connector() = default;

void connector::reload_credentials() {
  auto& m = *impl_;
  if (m.oauth) m.oauth->reload();
  if (!m.password_file) return;
  if (auto v = m.password_file->read_first_line(); v) {
    wipe(m.relay_password);
    m.relay_password = std::move(*v);
    spdlog::info("SIGHUP: delivery.relayhost_password_file re-read");
  } else {
    spdlog::error("SIGHUP: delivery.relayhost_password_file: {} (the previous password stays)",
                  v.error());
  }
}

awaitable<dns::mx_result> connector::impl::resolve(const std::string& name) {
  // The lambdas run before the co_await returns: `host` and `name` outlive them.
  if (cfg.delivery.relayhost) {
    const auto& host = cfg.delivery.relayhost->host;
    co_return co_await from_callback<void(dns::mx_result)>(
        [&](auto done) { dns.resolve_host(host, std::move(done)); });
  }
  co_return co_await from_callback<void(dns::mx_result)>(
      [&](auto done) { dns.resolve_mx(name, std::move(done)); });
}

smtp::client_options connector::impl::session_options(const std::string& host_name,
                                                      bool try_tls,
                                                      const std::string& token) const {
  smtp::client_options o;
  o.helo_name = cfg.hostname;
  const auto policy = cfg.delivery.tls;
  o.want_tls = try_tls && policy != tls_policy::none;
  o.require_tls = policy == tls_policy::encrypt || policy == tls_policy::verify;
  if (cfg.delivery.relayhost && !cfg.delivery.relayhost_user.empty()) {
    o.auth_user = cfg.delivery.relayhost_user;
    o.auth_password = oauth ? token : relay_password;
    if (oauth) o.auth_mechanism = cfg.delivery.relayhost_oauth2->mechanism;
    o.allow_plaintext_auth = is_loopback_host(host_name);
    if (!o.allow_plaintext_auth) {
      o.want_tls = true;
      o.require_tls = true;
    }
  }
  return o;
}

awaitable<setup_result> connector::impl::set_up(delivery_link& l, smtp::client_session& s,
                                                std::optional<queue::outcome_cause>& lost) {
  for (;;) {
    auto step = co_await pump(*l.stream, s, l.in, cfg.delivery.command_timeout);
    switch (step.what) {
      case smtp::client_session::event::ready: co_return setup_result::ready;
      case smtp::client_session::event::start_tls: {
        const bool verify = cfg.delivery.tls == tls_policy::verify;
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

awaitable<connect_result> connector::open(const std::string& destination_name) {
  auto& m = *impl_;
  const auto& cfg = m.cfg;
  connect_result out;
  const auto started = steady::now();
  const bool smarthost = cfg.delivery.relayhost.has_value();
  const std::uint16_t port = smarthost ? cfg.delivery.relayhost->port : cfg.delivery.port;

  dns::mx_result mx = co_await m.resolve(destination_name);
  out.dns_seconds = seconds_since(started);
  if (mx.what != dns::outcome::ok) {
    // A relayhost that does not resolve is our configuration or our DNS, not
    // the recipient's domain: the mail waits for it instead of bouncing.
    const std::string relayhost = smarthost ? cfg.delivery.relayhost->to_string() : "";
    out.problem = dns_failed(mx, relayhost);
    if (smarthost) spdlog::error("delivery: {}; mail stays queued", out.problem.description);
    co_return out;
  }

  std::string token;  // OAuth2: fetched before connecting (the HTTPS request is async)
  if (m.oauth) {
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
  for (const auto& host : mx.hosts) {
    for (const auto& addr : host.addresses) {
      error_code aec;
      auto ip = asio::ip::make_address(addr, aec);
      if (aec) continue;
      const std::string relay = fmt::format("{}[{}]:{}", host.name, addr, port);
      bool try_tls = cfg.delivery.tls != tls_policy::none;
      for (int pass = 0; pass < 2; ++pass) {
        auto& ctx = cfg.delivery.tls == tls_policy::verify ? m.tls_verify : m.tls_any;
        delivery_link l{std::make_unique<outbound>(m.io, ctx), nullptr, {}, relay, host.name};
        if (auto ec = co_await l.stream->connect(tcp::endpoint(ip, port),
                                                 cfg.delivery.connect_timeout)) {
          out.problem = connect_failed(relay, ec == asio::error::timed_out, ec.message());
          break;
        }
        l.session = std::make_unique<smtp::client_session>(m.session_options(host.name, try_tls, token));
        std::optional<queue::outcome_cause> lost;
        const auto r = co_await m.set_up(l, *l.session, lost);
        if (r == setup_result::ready) {
          out.link = std::move(l);
          out.connect_seconds = seconds_since(connect_started);
          co_return out;
        }
        if (r == setup_result::tls_failed) {
          out.problem = tls_failed(relay, l.stream->tls_error());
          // tls = may: try the same host again in plaintext.
          if (cfg.delivery.tls == tls_policy::may && !l.session->authenticated() && pass == 0) {
            try_tls = false;
            continue;
          }
          break;
        }
        const auto& f = l.session->failure();
        out.problem = outcome_of(f, relay, lost);
        out.local_fault = f.local_fault;
        if (m.oauth && f.cause == smtp::failure_cause::auth_rejected) {
          m.oauth->refused(token);
          out.token_refused = true;
        }
        // A 421 greeting or EHLO: this host is busy; the next MX may not be.
        out.throttled = out.throttled || f.destination_throttled;
        break;
      }
      if (out.local_fault) break;
    }
    if (out.local_fault) break;
  }
  out.connect_seconds = seconds_since(connect_started);
  wipe(token);
  if (out.local_fault) {
    spdlog::error("delivery to {}: our own configuration is refused: {}", destination_name,
                  out.problem.description);
  }
  co_return out;
}

}  // namespace relayd
