// Implements delivery_agent.hpp: the coroutine pump around smtp::client_session.
// One worker per connection: resolve, connect (hosts in preference order, each
// address in turn), set up (EHLO, STARTTLS per [delivery] tls, AUTH for the
// relayhost), then deliver the destination's jobs one after another, lingering
// briefly for more before QUIT. Expected errors are values; every read, write,
// connect and handshake has a deadline.
#include "relayd/delivery_agent.hpp"

#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <spdlog/spdlog.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/ssl.hpp>
#include <fstream>
#include <optional>
#include <sstream>

#include "dns/mx_resolver.hpp"
#include "relayd/async_call.hpp"
#include "relayd/config.hpp"
#include "relayd/scheduler.hpp"
#include "smtp/client_session.hpp"

namespace relayd {
namespace {

namespace ssl = asio::ssl;
using steady = std::chrono::steady_clock;
using error_code = boost::system::error_code;
constexpr auto linger = std::chrono::seconds(2);
constexpr auto quit_timeout = std::chrono::seconds(10);

double seconds_since(steady::time_point t) {
  return std::chrono::duration<double>(steady::now() - t).count();
}

bool is_loopback_host(const std::string& host) {
  if (host == "localhost") return true;
  error_code ec;
  auto a = asio::ip::make_address(host, ec);
  return !ec && a.is_loopback();
}

const char* command_of(smtp::client_phase p) {
  switch (p) {
    case smtp::client_phase::greeting: return "the greeting";
    case smtp::client_phase::ehlo: return "EHLO";
    case smtp::client_phase::helo: return "HELO";
    case smtp::client_phase::starttls: return "STARTTLS";
    case smtp::client_phase::auth: return "AUTH";
    case smtp::client_phase::mail: return "MAIL FROM";
    case smtp::client_phase::rcpt: return "RCPT TO";
    case smtp::client_phase::data: return "DATA";
    case smtp::client_phase::data_body:
    case smtp::client_phase::dot: return "end of DATA";
    default: return "the dialogue";
  }
}

// A TCP connection that may turn into TLS, with a deadline on every operation.
class outbound {
 public:
  outbound(asio::io_context& io, ssl::context& ctx) : stream_(io, ctx), timer_(io) {}
  ~outbound() { close(); }

  awaitable<error_code> connect(const tcp::endpoint& ep, std::chrono::seconds timeout) {
    arm(timeout);
    auto [ec] = co_await socket().async_connect(ep, use_tuple);
    co_return disarm(ec);
  }
  awaitable<std::pair<error_code, std::size_t>> read_some(char* buf, std::size_t n,
                                                          std::chrono::seconds timeout) {
    arm(timeout);
    error_code ec;
    std::size_t got = 0;
    if (tls_) {
      std::tie(ec, got) = co_await stream_.async_read_some(asio::buffer(buf, n), use_tuple);
    } else {
      std::tie(ec, got) = co_await socket().async_read_some(asio::buffer(buf, n), use_tuple);
    }
    co_return std::pair{disarm(ec), got};
  }
  awaitable<error_code> write(std::string_view data, std::chrono::seconds timeout) {
    arm(timeout);
    error_code ec;
    if (tls_) {
      std::tie(ec, std::ignore) = co_await asio::async_write(stream_, asio::buffer(data), use_tuple);
    } else {
      std::tie(ec, std::ignore) = co_await asio::async_write(socket(), asio::buffer(data), use_tuple);
    }
    co_return disarm(ec);
  }
  // SNI and, when `verify_name` is set, certificate name verification.
  awaitable<error_code> handshake(const std::string& server_name, bool verify_name,
                                  std::chrono::seconds timeout) {
    error_code not_ip;
    asio::ip::make_address(server_name, not_ip);
    if (!server_name.empty() && not_ip)
      SSL_set_tlsext_host_name(stream_.native_handle(), server_name.c_str());
    if (verify_name) {
      // OpenSSL checks the name during the chain verification, so a mismatch
      // is reported as such (X509_V_ERR_HOSTNAME_MISMATCH / IP_ADDRESS_MISMATCH).
      SSL* ssl = stream_.native_handle();
      if (not_ip)
        SSL_set1_host(ssl, server_name.c_str());
      else
        X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), server_name.c_str());
    }
    arm(timeout);
    auto [ec] = co_await stream_.async_handshake(ssl::stream_base::client, use_tuple);
    if (!ec) tls_ = true;
    ec = disarm(ec);
    tls_error_.clear();
    if (ec) {
      // What an operator needs: the verification result when the chain or the
      // name was refused, else OpenSSL's reason.
      const long v = SSL_get_verify_result(stream_.native_handle());
      if (v != X509_V_OK)
        tls_error_ = std::string("certificate verification failed: ") +
                     X509_verify_cert_error_string(v);
      else
        tls_error_ = timed_out_ ? "timed out" : ec.message();
    }
    co_return ec;
  }
  const std::string& tls_error() const { return tls_error_; }
  void close() {
    error_code ec;
    timer_.cancel();
    socket().shutdown(tcp::socket::shutdown_both, ec);
    socket().close(ec);
  }
  tcp::socket& socket() { return stream_.next_layer(); }
  bool timed_out() const { return timed_out_; }

 private:
  void arm(std::chrono::seconds timeout) {
    timed_out_ = false;
    timer_.expires_after(timeout);
    timer_.async_wait([this](error_code ec) {
      if (ec) return;
      timed_out_ = true;
      error_code ignored;
      socket().cancel(ignored);
    });
  }
  error_code disarm(error_code ec) {
    timer_.cancel();
    if (timed_out_) return asio::error::timed_out;
    return ec;
  }

  ssl::stream<tcp::socket> stream_;
  asio::steady_timer timer_;
  bool tls_ = false;
  bool timed_out_ = false;
  std::string tls_error_;  // why the last handshake failed
};

enum class setup_result { ready, failed, tls_failed };

}  // namespace

struct delivery_agent::impl {
  impl(asio::io_context& io_, const config& cfg_, scheduler& sched_, dns::mx_resolver& dns_)
      : io(io_),
        cfg(cfg_),
        sched(sched_),
        dns(dns_),
        tls_any(ssl::context::tls_client),
        tls_verify(ssl::context::tls_client) {
    for (auto* ctx : {&tls_any, &tls_verify}) {
      SSL_CTX_set_min_proto_version(ctx->native_handle(), TLS1_2_VERSION);
      ctx->set_options(ssl::context::default_workarounds | ssl::context::no_compression);
    }
    tls_any.set_verify_mode(ssl::verify_none);
    tls_verify.set_default_verify_paths();
    tls_verify.set_verify_mode(ssl::verify_peer);
    if (!cfg.delivery.relayhost_user.empty()) {
      std::ifstream f(cfg.delivery.relayhost_password_file);
      if (!f)
        throw std::runtime_error("delivery.relayhost_password_file: cannot read " +
                                 cfg.delivery.relayhost_password_file);
      std::getline(f, relay_password);
      while (!relay_password.empty() &&
             (relay_password.back() == '\r' || relay_password.back() == '\n'))
        relay_password.pop_back();
    }
  }

  awaitable<void> run(destination& d);
  awaitable<dns::mx_result> resolve(const destination& d);
  awaitable<smtp::client_session::event> pump(outbound& c, smtp::client_session& s,
                                              std::string& in, std::chrono::seconds timeout);
  awaitable<setup_result> set_up(outbound& c, smtp::client_session& s, std::string& in,
                                 const std::string& host_name);
  smtp::client_options session_options(const std::string& host_name, bool try_tls) const;
  recipient_outcome outcome_of(const smtp::recipient_result& r, const std::string& relay) const;

  asio::io_context& io;
  const config& cfg;
  scheduler& sched;
  dns::mx_resolver& dns;
  ssl::context tls_any;     // none/may/encrypt: encryption without authentication
  ssl::context tls_verify;  // verify: system CAs and the host name
  std::string relay_password;
};

delivery_agent::delivery_agent(asio::io_context& io, const config& cfg, scheduler& sched,
                               dns::mx_resolver& dns)
    : impl_(std::make_unique<impl>(io, cfg, sched, dns)) {}

delivery_agent::~delivery_agent() = default;

void delivery_agent::start_connection(destination& d) {
  asio::co_spawn(impl_->io, impl_->run(d), [](std::exception_ptr e) {
    if (!e) return;
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& ex) {
      spdlog::critical("delivery worker died: {}", ex.what());
    }
  });
}

awaitable<dns::mx_result> delivery_agent::impl::resolve(const destination& d) {
  if (cfg.delivery.relayhost) {
    const auto& host = cfg.delivery.relayhost->host;
    co_return co_await from_callback<void(dns::mx_result)>(
        [&](auto done) { dns.resolve_host(host, std::move(done)); });
  }
  co_return co_await from_callback<void(dns::mx_result)>(
      [&](auto done) { dns.resolve_mx(d.key.name, std::move(done)); });
}

smtp::client_options delivery_agent::impl::session_options(const std::string& host_name,
                                                            bool try_tls) const {
  smtp::client_options o;
  o.helo_name = cfg.hostname;
  const auto policy = cfg.delivery.tls;
  o.want_tls = try_tls && policy != tls_policy::none;
  o.require_tls = policy == tls_policy::encrypt || policy == tls_policy::verify;
  if (cfg.delivery.relayhost && !cfg.delivery.relayhost_user.empty()) {
    o.auth_user = cfg.delivery.relayhost_user;
    o.auth_password = relay_password;
    o.allow_plaintext_auth = is_loopback_host(host_name);
    if (!o.allow_plaintext_auth) {
      o.want_tls = true;
      o.require_tls = true;
    }
  }
  return o;
}

awaitable<smtp::client_session::event> delivery_agent::impl::pump(outbound& c,
                                                                  smtp::client_session& s,
                                                                  std::string& in,
                                                                  std::chrono::seconds timeout) {
  std::array<char, 16384> buf;
  for (;;) {
    while (!s.output().empty()) {
      if (auto ec = co_await c.write(s.output(), timeout)) {
        co_return s.connection_lost(ec == asio::error::timed_out ? "timeout" : ec.message());
      }
      s.clear_output();
    }
    if (!in.empty()) {
      auto st = s.feed(in);
      in.erase(0, st.consumed);
      if (st.what != smtp::client_session::event::need_more) co_return st.what;
      if (!s.output().empty()) continue;
    }
    auto [ec, n] = co_await c.read_some(buf.data(), buf.size(), timeout);
    if (ec) {
      co_return s.connection_lost(ec == asio::error::timed_out  ? "timeout"
                                  : ec == asio::error::eof      ? "connection closed"
                                                                : ec.message());
    }
    in.append(buf.data(), n);
  }
}

awaitable<setup_result> delivery_agent::impl::set_up(outbound& c, smtp::client_session& s,
                                                     std::string& in,
                                                     const std::string& host_name) {
  const auto timeout = cfg.delivery.command_timeout;
  for (;;) {
    auto ev = co_await pump(c, s, in, timeout);
    switch (ev) {
      case smtp::client_session::event::ready: co_return setup_result::ready;
      case smtp::client_session::event::start_tls: {
        const bool verify = cfg.delivery.tls == tls_policy::verify;
        if (auto ec = co_await c.handshake(host_name, verify, cfg.delivery.connect_timeout)) {
          spdlog::warn("TLS handshake with {} failed: {}", host_name, ec.message());
          co_return setup_result::tls_failed;
        }
        in.clear();
        s.tls_established();
        continue;
      }
      default: co_return setup_result::failed;
    }
  }
}

recipient_outcome delivery_agent::impl::outcome_of(const smtp::recipient_result& r,
                                                   const std::string& relay) const {
  recipient_outcome o;
  o.what = r.status == smtp::delivery_status::delivered   ? outcome_kind::delivered
           : r.status == smtp::delivery_status::permanent ? outcome_kind::failed
                                                          : outcome_kind::deferred;
  o.code = r.from_server ? static_cast<std::uint16_t>(r.response.code) : 0;
  o.status = smtp::dsn_status(r.response);
  o.remote_host = relay;
  o.description = r.from_server ? fmt::format("host {} said: {} (in reply to {})", relay,
                                              r.response.to_string(), command_of(r.in_reply_to))
                                : fmt::format("{}: {}", relay, r.response.to_string());
  if (o.what == outcome_kind::failed) o.reason = "rejected";
  return o;
}

awaitable<void> delivery_agent::impl::run(destination& d) {
  attempt_timing timing;
  const auto started = steady::now();
  const bool smarthost = cfg.delivery.relayhost.has_value();
  const std::uint16_t port = smarthost ? cfg.delivery.relayhost->port : cfg.delivery.port;

  // Gives up on this connection: the scheduler decides what happens to the jobs.
  auto give_up = [&](recipient_outcome why, bool permanent) {
    if (permanent)
      sched.no_route(d, why);
    else
      sched.unreachable(d, why);
    --d.connecting;
    sched.connection_done(d);
  };

  dns::mx_result mx = co_await resolve(d);
  timing.dns = seconds_since(started);
  if (mx.what != dns::outcome::ok) {
    recipient_outcome why;
    why.description = mx.detail;
    // A relayhost that does not resolve is our configuration or our DNS, not
    // the recipient's domain: the mail waits for it instead of bouncing.
    const bool permanent = dns::permanent(mx.what) && !smarthost;
    if (smarthost) {
      why.description = fmt::format("relayhost {}: {}", cfg.delivery.relayhost->to_string(),
                                    mx.detail);
      spdlog::error("delivery: {}; mail stays queued", why.description);
    }
    why.status = !permanent ? "4.4.3" : mx.what == dns::outcome::null_mx ? "5.1.10" : "5.1.2";
    why.reason = "no_route";
    give_up(std::move(why), permanent);
    co_return;
  }

  const auto connect_started = steady::now();
  recipient_outcome problem;
  problem.status = "4.4.1";
  problem.description = "no mail host answered";
  std::unique_ptr<outbound> conn;
  std::unique_ptr<smtp::client_session> session;
  std::string in, relay, host_name;
  bool local_fault = false, throttled = false;

  for (const auto& host : mx.hosts) {
    for (const auto& addr : host.addresses) {
      error_code aec;
      auto ip = asio::ip::make_address(addr, aec);
      if (aec) continue;
      relay = fmt::format("{}[{}]:{}", host.name, addr, port);
      bool try_tls = cfg.delivery.tls != tls_policy::none;
      for (int pass = 0; pass < 2 && !session; ++pass) {
        auto& ctx = cfg.delivery.tls == tls_policy::verify ? tls_verify : tls_any;
        conn = std::make_unique<outbound>(io, ctx);
        if (auto ec = co_await conn->connect(tcp::endpoint(ip, port), cfg.delivery.connect_timeout)) {
          problem.description = fmt::format("connect to {}: {}", relay,
                                            ec == asio::error::timed_out ? "timeout" : ec.message());
          break;
        }
        in.clear();
        auto s = std::make_unique<smtp::client_session>(session_options(host.name, try_tls));
        auto r = co_await set_up(*conn, *s, in, host.name);
        if (r == setup_result::ready) {
          session = std::move(s);
          host_name = host.name;
          break;
        }
        if (r == setup_result::tls_failed) {
          problem.description = fmt::format("TLS handshake with {} failed: {}", relay,
                                            conn->tls_error());
          problem.status = "4.7.5";
          // tls = may: try the same host again in plaintext.
          if (cfg.delivery.tls == tls_policy::may && !s->authenticated() && pass == 0) {
            try_tls = false;
            continue;
          }
          break;
        }
        const auto& f = s->failure();
        problem.code = f.from_server ? static_cast<std::uint16_t>(f.response.code) : 0;
        problem.status = smtp::dsn_status(f.response);
        problem.remote_host = relay;
        problem.description =
            f.from_server ? fmt::format("host {} said: {} (in reply to {})", relay,
                                        f.response.to_string(), command_of(f.phase))
                          : fmt::format("{}: {}", relay, f.response.to_string());
        local_fault = f.local_fault;
        // A 421 greeting or EHLO: this host is busy; the next MX may not be.
        throttled = throttled || f.destination_throttled;
        break;
      }
      if (session || local_fault) break;
    }
    if (session || local_fault) break;
  }
  timing.connect = seconds_since(connect_started);

  if (!session) {
    if (local_fault) {
      spdlog::error("delivery to {}: our own configuration is refused: {}", d.key.name,
                    problem.description);
    }
    // A permanent failure while setting up (e.g. 554 greeting) still only
    // defers: another host or a later attempt may do better.
    if (problem.status.starts_with("5")) problem.status = "4" + problem.status.substr(1);
    if (throttled && !local_fault) {
      sched.throttle(d, problem);
      --d.connecting;
      sched.connection_done(d);
      co_return;
    }
    give_up(std::move(problem), false);
    co_return;
  }

  --d.connecting;
  auto& s = *session;
  while (s.phase() == smtp::client_phase::ready) {
    auto j = sched.next_job(d);
    if (!j) {
      // Linger for more jobs. A connection woken for a job that another one
      // took meanwhile lingers on (until the same deadline) instead of closing.
      asio::steady_timer idle(io);
      idle.expires_after(linger);
      while (!j && !sched.stopping() && steady::now() < idle.expiry()) {
        d.idle.push_back(&idle);
        co_await idle.async_wait(use_tuple);
        if (auto it = std::find(d.idle.begin(), d.idle.end(), &idle); it != d.idle.end())
          d.idle.erase(it);  // the deadline passed
        else
          --d.waking;  // woken by the scheduler
        j = sched.next_job(d);
      }
      if (!j) break;
    }
    const auto& msg = *j->message;
    auto body = sched.spool().body(msg.id);
    if (!body) {  // deleted (relayctl -d) since it was dispatched
      sched.complete(d, std::move(*j), {}, relay, timing);
      continue;
    }
    smtp::outgoing_message m;
    m.sender = msg.sender;
    for (auto i : j->recipients) m.recipients.push_back(msg.recipients[i].address);
    m.body = *body;
    m.size = body->size();
    m.body_8bit = msg.flags & queue::flag_eight_bit;
    m.smtputf8 = msg.flags & queue::flag_smtputf8;

    const auto transfer_started = steady::now();
    auto ev = s.send(m);
    if (ev == smtp::client_session::event::need_more)
      ev = co_await pump(*conn, s, in, cfg.delivery.command_timeout);
    timing.transfer = seconds_since(transfer_started);
    if (ev != smtp::client_session::event::transaction_done) {
      // The session failed without a transaction result (should not happen):
      // everything stays pending and is retried.
      recipient_outcome o;
      o.status = "4.4.2";
      o.description = fmt::format("lost connection with {}", relay);
      std::vector<recipient_outcome> outs;
      for (auto i : j->recipients) {
        o.index = i;
        outs.push_back(o);
      }
      sched.complete(d, std::move(*j), std::move(outs), relay, timing);
      break;
    }
    auto result = s.take_result();
    std::vector<recipient_outcome> outs;
    recipient_outcome throttle_reason;
    for (std::size_t k = 0; k < result.recipients.size() && k < j->recipients.size(); ++k) {
      auto o = outcome_of(result.recipients[k], relay);
      o.index = j->recipients[k];
      if (result.destination_throttled && o.what == outcome_kind::deferred) throttle_reason = o;
      outs.push_back(std::move(o));
    }
    sched.complete(d, std::move(*j), std::move(outs), relay, timing);
    if (result.destination_throttled) {
      sched.throttle(d, throttle_reason);
      break;
    }
    if (result.connection_closed) break;
    timing.dns = timing.connect = 0;  // reused connection: no set-up cost
  }

  if (s.phase() == smtp::client_phase::ready) {
    s.quit();
    co_await pump(*conn, s, in, quit_timeout);
  }
  conn->close();
  sched.connection_done(d);
}

}  // namespace relayd
