// The daemon's event loop: inbound SMTP listeners with one coroutine per
// connection (a thin pump around smtp::server_session), connection limits
// (total, per client, per-client rate), idle timeouts plus deadlines for a whole
// command line and a whole DATA body (slowloris), STARTTLS and implicit TLS,
// the switch to the configured `user` once everything is open, AUTH checked on
// a worker thread with growing delays after failures, the control socket, SIGHUP (reloads the
// TLS certificate and the AUTH users for new connections) and graceful shutdown
// on SIGTERM/SIGINT. A message is acknowledged only after the spool's synced
// commit completes.
#include "relayd/daemon.hpp"

#include <spdlog/spdlog.h>
#include <grp.h>
#include <pwd.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cassert>
#include <chrono>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <list>
#include <unordered_map>

#include "queue/spool.hpp"
#include "queue/spool_diag.hpp"
#include "relayd/async_call.hpp"
#include "relayd/auth_users.hpp"
#include "relayd/control.hpp"
#include "relayd/delivery_agent.hpp"
#include "relayd/metrics.hpp"
#include "relayd/metrics_http.hpp"
#include "relayd/scheduler.hpp"
#include "dns/mx_resolver.hpp"
#include "relayd/net.hpp"
#include "relayd/tls_server.hpp"
#include <boost/asio/ssl.hpp>
#include <boost/asio/thread_pool.hpp>
#include <openssl/crypto.h>
#include "smtp/server_session.hpp"

namespace relayd {
namespace {

namespace ssl = asio::ssl;
using steady = std::chrono::steady_clock;
constexpr auto final_write_timeout = std::chrono::seconds(10);
constexpr auto shutdown_grace = std::chrono::seconds(30);
constexpr auto handshake_timeout = std::chrono::seconds(30);  // or idle_timeout if shorter
// The n-th failed AUTH of a connection is answered after n times this; the
// max_auth_failures-th also ends the connection (421 4.7.0).
constexpr auto auth_failure_delay = std::chrono::seconds(1);
constexpr std::size_t max_auth_failures = 3;

// What a listener is for: [smtp] listen, submission or smtps.
enum class listener_kind { smtp, submission, smtps };

const char* to_string(listener_kind k) {
  switch (k) {
    case listener_kind::smtp: return "smtp";
    case listener_kind::submission: return "submission";
    case listener_kind::smtps: return "smtps";
  }
  return "?";
}

bool is_loopback(const std::string& ip) {
  boost::system::error_code ec;
  const auto a = asio::ip::make_address(ip, ec);
  return !ec && a.is_loopback();
}

// Client text (a user name) as it may go into the log: printable ASCII, at most 64.
std::string printable(std::string_view s) {
  std::string out;
  for (unsigned char c : s.substr(0, 64)) out += c >= 0x20 && c < 0x7f ? static_cast<char>(c) : '?';
  if (s.size() > 64) out += "...";
  return out;
}

std::int64_t now_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// "127.0.0.1" for IPv4 and IPv4-mapped IPv6 peers, "::1" for IPv6.
std::string peer_ip(const tcp::endpoint& ep) {
  auto a = ep.address();
  if (a.is_v6() && a.to_v6().is_v4_mapped())
    return asio::ip::make_address_v4(asio::ip::v4_mapped, a.to_v6()).to_string();
  return a.to_string();
}

std::string peer_text(const std::string& ip, std::uint16_t port) {
  return ip.find(':') == std::string::npos ? fmt::format("{}:{}", ip, port)
                                           : fmt::format("[{}]:{}", ip, port);
}

// One inbound connection: the socket (moved into a TLS stream by the handshake)
// plus what the watchdog and shutdown need.
struct connection {
  connection(tcp::socket s, std::string ip_, std::uint16_t port_)
      : sock(std::move(s)), timer(sock.get_executor()), ip(std::move(ip_)), port(port_) {}

  tcp::socket& socket() { return tls ? tls->next_layer() : sock; }

  awaitable<std::pair<boost::system::error_code, std::size_t>> read_some(asio::mutable_buffer b) {
    boost::system::error_code ec;
    std::size_t n = 0;
    if (tls) {
      std::tie(ec, n) = co_await tls->async_read_some(b, use_tuple);
    } else {
      std::tie(ec, n) = co_await sock.async_read_some(b, use_tuple);
    }
    co_return std::pair{ec, n};
  }
  awaitable<boost::system::error_code> write(std::string_view data) {
    boost::system::error_code ec;
    if (tls) {
      std::tie(ec, std::ignore) = co_await asio::async_write(*tls, asio::buffer(data), use_tuple);
    } else {
      std::tie(ec, std::ignore) = co_await asio::async_write(sock, asio::buffer(data), use_tuple);
    }
    co_return ec;
  }
  // The server side of the TLS handshake with `ctx`; the socket moves into the stream.
  awaitable<boost::system::error_code> handshake(ssl::context& ctx) {
    tls = std::make_unique<ssl::stream<tcp::socket>>(std::move(sock), ctx);
    auto [ec] = co_await tls->async_handshake(ssl::stream_base::server, use_tuple);
    co_return ec;
  }

  // Sets the deadline for the next read or write.
  // A later deadline is picked up when the watchdog wakes at the old one; an
  // earlier one must cut its wait short.
  void arm(steady::duration d) {
    deadline = steady::now() + d;
    timed_out = false;
    if (deadline < timer.expiry()) timer.expires_at(deadline);
  }

  tcp::socket sock;
  std::unique_ptr<ssl::stream<tcp::socket>> tls;
  asio::steady_timer timer;
  std::string ip;
  std::uint16_t port;
  std::string listener;  // the [smtp] listen entry, for relayd_smtp_connections
  listener_kind kind = listener_kind::smtp;
  steady::time_point deadline = steady::time_point::max();
  bool reading = false;
  bool timed_out = false;
  bool stop_requested = false;
  bool done = false;
};

class inbound_server {
 public:
  inbound_server(asio::io_context& io, const config& cfg, queue::spool& spool, scheduler& sched,
                 metrics& m)
      : io_(io), cfg_(cfg), spool_(spool), scheduler_(sched), metrics_(m) {}

  // Loads the TLS context and the AUTH users (start-up errors name the key),
  // then binds every listener.
  bool start() {
    if (!cfg_.smtp.submission.empty() && cfg_.auth.users.empty()) {
      spdlog::critical("smtp.submission: needs auth.users (AUTH is mandatory on submission)");
      return false;
    }
    if (!cfg_.smtp.submission.empty() && cfg_.tls.cert.empty()) {
      spdlog::critical("smtp.submission: needs tls.cert and tls.key (AUTH only after STARTTLS)");
      return false;
    }
    if (!cfg_.smtp.smtps.empty() && cfg_.tls.cert.empty()) {
      spdlog::critical("smtp.smtps: needs tls.cert and tls.key (implicit TLS)");
      return false;
    }
    if (!load_tls("") || !load_users("")) return false;
    data_memory_limit_ = cfg_.smtp.max_data_memory;
    if (data_memory_limit_ == 0) {
      const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGESIZE);
      const auto ram = static_cast<std::uint64_t>(pages) * static_cast<std::uint64_t>(page);
      data_memory_limit_ = pages > 0 && page > 0 ? ram / 4 : std::uint64_t{1} << 30;
    }
    spdlog::info("message content in memory: at most {} bytes (smtp.max_data_memory)",
                 data_memory_limit_);
    if (cfg_.auth.allow_plaintext_loopback && !users_)
      spdlog::warn("auth.allow_plaintext_loopback is set but auth.users is empty: no AUTH");
    for (const auto& ep : cfg_.smtp.listen) {
      if (!listen(ep, listener_kind::smtp)) return false;
    }
    for (const auto& ep : cfg_.smtp.submission) {
      if (!listen(ep, listener_kind::submission)) return false;
    }
    for (const auto& ep : cfg_.smtp.smtps) {
      if (!listen(ep, listener_kind::smtps)) return false;
    }
    return true;
  }

  // SIGHUP: a new TLS context and user table for new connections; open ones keep
  // theirs. A file that does not load leaves the previous one in use.
  void reload() {
    load_tls("SIGHUP: ");
    load_users("SIGHUP: ");
  }

  // Graceful stop: no new connections; idle sessions get 421, sessions in a
  // transaction finish it. `on_idle` runs once the last connection is gone.
  void stop(std::function<void()> on_idle) {
    stopping_ = true;
    on_idle_ = std::move(on_idle);
    for (auto& a : acceptors_) {
      boost::system::error_code ec;
      a.close(ec);
    }
    for (auto& c : connections_) {
      c->stop_requested = true;
      if (c->reading) {
        boost::system::error_code ec;
        c->socket().cancel(ec);
      }
    }
    maybe_idle();
  }

 private:
  // At start-up (`when` empty) a failure is fatal; on reload it keeps the old one.
  bool load_tls(const char* when) {
    if (cfg_.tls.cert.empty()) return true;
    auto loaded = load_server_tls(cfg_.tls.cert, cfg_.tls.key);
    if (!loaded) {
      if (*when == '\0') {
        spdlog::critical("{}", loaded.error());
      } else {
        spdlog::error("{}{}; keeping the previous certificate", when, loaded.error());
      }
      return false;
    }
    tls_ = std::move(loaded->context);
    spdlog::info("{}TLS certificate {}: {}, valid until {}", when, cfg_.tls.cert, loaded->subject,
                 loaded->not_after);
    if (loaded->expired) spdlog::warn("TLS certificate {} has expired", cfg_.tls.cert);
    return true;
  }

  bool load_users(const char* when) {
    if (cfg_.auth.users.empty()) return true;
    auto loaded = auth_users::load(cfg_.auth.users);
    if (!loaded) {
      if (*when == '\0') {
        spdlog::critical("auth.users: {}", loaded.error());
      } else {
        spdlog::error("{}auth.users: {}; keeping the previous users", when, loaded.error());
      }
      return false;
    }
    spdlog::info("{}auth users {}: {} users", when, cfg_.auth.users, loaded->size());
    users_ = std::make_shared<const auth_users>(std::move(*loaded));
    return true;
  }

  bool listen(const endpoint& ep, listener_kind kind) {
    boost::system::error_code ec;
    auto addrs = tcp::resolver(io_).resolve(ep.host, std::to_string(ep.port),
                                            tcp::resolver::numeric_service, ec);
    if (ec) {
      spdlog::critical("cannot resolve listener {}: {}", ep.to_string(), ec.message());
      return false;
    }
    for (const auto& entry : addrs) {
      auto acc = open_listener(io_, entry.endpoint(), ec);
      if (ec) {
        spdlog::critical("cannot listen on {}: {}", ep.to_string(), ec.message());
        return false;
      }
      auto local = acc.local_endpoint();
      spdlog::info("listening on {} ({})", peer_text(peer_ip(local), local.port()),
                   to_string(kind));
      acceptors_.push_back(std::move(acc));
      metrics_.add_listener(ep.to_string());
      asio::co_spawn(io_, accept_loop(acceptors_.back(), ep.to_string(), kind), asio::detached);
    }
    return true;
  }

  awaitable<void> accept_loop(tcp::acceptor& acc, std::string listener, listener_kind kind) {
    asio::steady_timer backoff(io_);
    while (!stopping_) {
      tcp::endpoint remote;  // filled by accept(2) itself: no getpeername(2)
      auto [ec, sock] = co_await acc.async_accept(remote, use_tuple);
      if (stopping_) co_return;
      if (ec) {
        // EMFILE and friends: say so, breathe, keep serving the others.
        spdlog::error("accept: {}", ec.message());
        backoff.expires_after(std::chrono::milliseconds(100));
        co_await backoff.async_wait(use_tuple);
        continue;
      }
      std::string ip = peer_ip(remote);
      if (!rate_allows(ip)) {
        asio::co_spawn(io_, refuse(std::move(sock), ip, remote.port(), kind, refusal::rate),
                       asio::detached);
        continue;
      }
      auto& per_client = per_client_[ip];
      if (connections_.size() >= cfg_.smtp.max_connections ||
          per_client >= cfg_.smtp.max_connections_per_client) {
        if (per_client == 0) per_client_.erase(ip);
        asio::co_spawn(io_, refuse(std::move(sock), ip, remote.port(), kind), asio::detached);
        continue;
      }
      ++per_client;
      auto c = std::make_shared<connection>(std::move(sock), ip, remote.port());
      c->listener = listener;
      c->kind = kind;
      metrics_.connection_opened(listener);
      connections_.push_back(c);
      auto it = std::prev(connections_.end());
      asio::co_spawn(io_, watchdog(c), asio::detached);
      asio::co_spawn(io_, serve(c), [this, it](std::exception_ptr e) {
        if (e) {
          try {
            std::rethrow_exception(e);
          } catch (const std::exception& ex) {
            spdlog::error("session {}: {}", peer_text((*it)->ip, (*it)->port), ex.what());
          }
        }
        finish(it);
      });
    }
  }

  // smtp.max_connection_rate_per_client: connections (refused ones too) per
  // minute per client address, as a sliding window estimated from this and the
  // previous minute's counts. One small entry per address seen in the last two
  // minutes, swept once a minute and capped at max_rate_entries (beyond that,
  // new addresses are not limited until the next sweep).
  struct rate_entry {
    steady::time_point window_start;
    std::uint64_t count = 0;
    std::uint64_t previous = 0;
  };
  static constexpr std::size_t max_rate_entries = 100000;
  static constexpr auto rate_window = std::chrono::minutes(1);

  bool rate_allows(const std::string& ip) {
    const std::uint64_t limit = cfg_.smtp.max_connection_rate_per_client;
    if (limit == 0) return true;
    const auto now = steady::now();
    if (now - last_rate_sweep_ >= rate_window) {
      std::erase_if(rates_,
                    [&](const auto& kv) { return now - kv.second.window_start >= 2 * rate_window; });
      last_rate_sweep_ = now;
    }
    auto it = rates_.find(ip);
    if (it == rates_.end()) {
      if (rates_.size() >= max_rate_entries) return true;
      it = rates_.emplace(ip, rate_entry{now, 0, 0}).first;
    }
    rate_entry& e = it->second;
    if (now - e.window_start >= 2 * rate_window) {
      e = rate_entry{now, 0, 0};
    } else if (now - e.window_start >= rate_window) {
      e = rate_entry{e.window_start + rate_window, 0, e.count};
    }
    ++e.count;
    const double into = std::chrono::duration<double>(now - e.window_start) / rate_window;
    const double estimate =
        static_cast<double>(e.previous) * (1.0 - into) + static_cast<double>(e.count);
    return estimate <= static_cast<double>(limit);
  }

  enum class refusal { connections, rate };

  // Over a connection limit: one 421 and close, with a short write timeout. An
  // implicit-TLS client could not read a plaintext 421: it is only closed.
  awaitable<void> refuse(tcp::socket sock, std::string ip, std::uint16_t port,
                         listener_kind kind, refusal why = refusal::connections) {
    ++refusing_;
    metrics_.smtp_rejection(421);
    spdlog::warn("reject: connect from {}: 421 4.7.0 {}", peer_text(ip, port),
                 why == refusal::rate ? "connection rate over smtp.max_connection_rate_per_client"
                                      : "too many connections");
    static const std::string too_many = "421 4.7.0 Too many connections, try again later\r\n";
    static const std::string too_fast =
        "421 4.7.0 Too many connections from you, slow down\r\n";
    const std::string& msg = why == refusal::rate ? too_fast : too_many;
    asio::steady_timer t(io_);
    t.expires_after(std::chrono::seconds(5));
    t.async_wait([&sock](boost::system::error_code ec) {
      if (!ec) sock.close(ec);
    });
    if (kind != listener_kind::smtps)
      co_await asio::async_write(sock, asio::buffer(msg), use_tuple);
    t.cancel();
    boost::system::error_code ec;
    sock.shutdown(tcp::socket::shutdown_both, ec);
    sock.close(ec);
    --refusing_;
    maybe_idle();
  }

  awaitable<void> watchdog(std::shared_ptr<connection> c) {
    while (!c->done) {
      auto now = steady::now();
      if (c->deadline <= now) {
        c->timed_out = true;
        c->deadline = now + final_write_timeout;
        boost::system::error_code ec;
        c->socket().cancel(ec);
      }
      c->timer.expires_at(c->deadline);
      co_await c->timer.async_wait(use_tuple);
    }
  }

  smtp::session_options session_options() {
    smtp::session_options o;
    o.hostname = cfg_.hostname;
    o.max_message_size = cfg_.smtp.max_message_size;
    o.max_recipients = cfg_.smtp.max_recipients;
    o.max_errors = cfg_.smtp.max_errors;
    o.max_header_size = cfg_.smtp.max_header_size;
    o.new_id = [this] { return spool_.new_id(); };
    o.now = [] { return static_cast<std::int64_t>(std::time(nullptr)); };
    return o;
  }

  awaitable<void> serve(std::shared_ptr<connection> c) {
    const auto who = peer_text(c->ip, c->port);
    spdlog::info("connect from {} ({})", who, to_string(c->kind));
    // This connection's TLS context and users: a reload does not change them.
    const std::shared_ptr<ssl::context> tls = tls_;
    const std::shared_ptr<const auth_users> users = users_;
    const auto idle = std::chrono::duration_cast<steady::duration>(cfg_.smtp.idle_timeout);
    const auto handshake_limit = std::min<steady::duration>(idle, handshake_timeout);

    if (c->kind == listener_kind::smtps) {
      assert(tls && "smtps listeners need [tls]: checked at start");
      c->arm(handshake_limit);
      if (!co_await start_tls(*c, *tls, who)) co_return;
    }

    smtp::client_info client;
    client.ip = c->ip;
    client.relay_allowed = std::any_of(cfg_.smtp.mynetworks.begin(), cfg_.smtp.mynetworks.end(),
                                       [&](const cidr& n) { return n.contains(c->ip); });
    auto options = session_options();
    options.on_reject = [this, &who](const smtp::reply& r, std::string_view command) {
      metrics_.smtp_rejection(r.code);
      if (command.empty())
        spdlog::info("reject: from {}: {}", who, r.to_string());
      else
        spdlog::info("reject: from {}: {}; command={}", who, r.to_string(),
                     command.substr(0, 80));
    };
    options.starttls = tls != nullptr && c->kind != listener_kind::smtps;
    options.tls_active = c->kind == listener_kind::smtps;
    options.auth = users != nullptr;
    options.auth_without_tls = cfg_.auth.allow_plaintext_loopback && is_loopback(c->ip);
    options.auth_required = c->kind == listener_kind::submission;
    options.max_auth_failures = max_auth_failures;
    smtp::server_session session(std::move(options), client);
    session.start();

    // The replies to one read are written before the next read, so a client that
    // pipelines without reading replies stops being read (its writes time out).
    // Input is fed in slices and the output written once it passes a high-water
    // mark: pipelined EHLOs answered with a long hostname are ~50 times their
    // size, and one whole read's worth of replies would be ~400 KiB.
    constexpr std::size_t feed_slice = 512;
    constexpr std::size_t output_high_water = 16 * 1024;
    std::array<char, 8192> buf;
    // This session's share of data_memory_: the body being read, then the
    // message until the spool has answered for it. Shared ownership: a frame
    // destroyed with the io_context may outlive the server.
    struct memory_share {
      std::shared_ptr<std::uint64_t> total;
      std::uint64_t held = 0;
      void set(std::uint64_t n) {
        *total = *total - held + n;
        held = n;
      }
      ~memory_share() { *total -= held; }
    } share{data_memory_};
    // RFC 5321 4.5.3.2: a command line must be complete within idle_timeout of
    // its first byte, a DATA body within data_timeout of the 354, however
    // slowly the bytes trickle in.
    const auto data_limit = std::chrono::duration_cast<steady::duration>(cfg_.smtp.data_timeout);
    std::uint64_t phase_generation = session.progress().generation;
    steady::time_point phase_start = steady::now();
    auto timeout_kind = smtp::server_session::timeout_kind::idle;
    bool closing = false;
    bool dead = false;  // the connection broke (write error, failed handshake)
    for (;;) {
      // The session may have closed outside feed() (the 421 after too many AUTH
      // failures): its last replies are written and nothing more is read.
      closing = closing || session.closed();
      if (!session.output().empty()) {
        c->arm(closing ? final_write_timeout : idle);
        if (auto ec = co_await c->write(session.output()); ec) break;
        session.clear_output();
      }
      if (closing) break;
      if (c->stop_requested && !session.in_transaction()) {
        closing = session.shutdown();
        if (closing) continue;
      }
      {
        const auto now = steady::now();
        const auto p = session.progress();
        if (p.generation != phase_generation) {
          phase_generation = p.generation;
          phase_start = now;
        }
        auto limit = idle;
        timeout_kind = smtp::server_session::timeout_kind::idle;
        using pending = smtp::server_session::pending_input;
        if (p.what != pending::none) {
          const bool data = p.what == pending::data;
          const auto phase_left = phase_start + (data ? data_limit : idle) - now;
          if (phase_left < limit) {
            limit = std::max<steady::duration>(phase_left, steady::duration::zero());
            timeout_kind = data ? smtp::server_session::timeout_kind::data
                                : smtp::server_session::timeout_kind::command;
          }
        }
        c->arm(limit);
      }
      c->reading = true;
      auto [ec, n] = co_await c->read_some(asio::buffer(buf));
      c->reading = false;
      if (ec) {
        if (ec == asio::error::operation_aborted && c->timed_out) {
          spdlog::info("timeout: {}{}", who,
                       timeout_kind == smtp::server_session::timeout_kind::data ? " (DATA body)"
                       : timeout_kind == smtp::server_session::timeout_kind::command
                           ? " (command line)"
                           : "");
          session.timeout(timeout_kind);
          closing = true;
          continue;
        }
        if (ec == asio::error::operation_aborted && c->stop_requested) continue;
        break;  // EOF, reset
      }
      std::string_view in(buf.data(), n);
      while (!in.empty() && !closing && !dead) {
        auto st = session.feed(in.substr(0, feed_slice));
        in.remove_prefix(st.consumed);
        share.set(session.buffered());
        if (st.what == smtp::server_session::event::need_more && share.held > 0 &&
            *data_memory_ > data_memory_limit_) {
          // Over the budget: the body that is growing goes, whoever holds the rest.
          spdlog::warn(
              "{}: message content in memory is {} bytes, over smtp.max_data_memory "
              "({}): this message is refused",
              who, *data_memory_, data_memory_limit_);
          session.refuse_message({452, "4.3.1", "Insufficient system storage, try again later"});
          share.set(session.buffered());
        }
        switch (st.what) {
          case smtp::server_session::event::need_more:
            break;
          case smtp::server_session::event::close:
            closing = true;
            break;
          case smtp::server_session::event::message:
            co_await spool_message(session, c->ip);
            share.set(session.buffered());  // the spool has answered: its copy is gone
            break;
          case smtp::server_session::event::auth:
            co_await check_credentials(*c, session, users, who);
            break;
          case smtp::server_session::event::starttls:
            // Whatever came with STARTTLS is plaintext the client must not be able
            // to slip into the TLS session (CVE-2011-0411): dropped unread.
            if (!in.empty())
              spdlog::warn("starttls: from {}: {} bytes pipelined after STARTTLS discarded", who,
                           in.size());
            in = {};
            c->arm(final_write_timeout);
            if (auto ec = co_await c->write(session.output()); ec) {
              dead = true;
              break;
            }
            session.clear_output();
            c->arm(handshake_limit);
            if (!co_await start_tls(*c, *tls, who)) {
              dead = true;
              break;
            }
            session.tls_started();
            break;
        }
        if (!closing && !dead && session.output().size() >= output_high_water) {
          c->arm(idle);
          if (auto ec = co_await c->write(session.output()); ec) {
            dead = true;
            break;
          }
          session.clear_output();
        }
      }
      if (dead) break;
    }
    if (session.authenticated_user().empty())
      spdlog::info("disconnect from {} messages={}", who, session.messages_accepted());
    else
      spdlog::info("disconnect from {} messages={} sasl_username={}", who,
                   session.messages_accepted(), printable(session.authenticated_user()));
  }

  // The server handshake, logged; false when it failed (the caller closes).
  awaitable<bool> start_tls(connection& c, ssl::context& ctx, const std::string& who) {
    auto ec = co_await c.handshake(ctx);
    if (ec) {
      spdlog::info("TLS handshake from {} failed: {}", who,
                   c.timed_out ? std::string("timeout") : ec.message());
      co_return false;
    }
    SSL* s = c.tls->native_handle();
    spdlog::info("TLS from {}: {} {}", who, SSL_get_version(s), SSL_get_cipher_name(s));
    co_return true;
  }

  // Checks the session's AUTH credentials on the worker thread (crypt(3) is slow
  // on purpose), delays a failure by n seconds for the n-th one, then answers.
  awaitable<void> check_credentials(connection& c, smtp::server_session& session,
                                    std::shared_ptr<const auth_users> users,
                                    const std::string& who) {
    const std::string user = session.auth_user();
    bool ok = false;
    if (users && !user.empty()) {
      std::string password = session.auth_password();
      ok = co_await from_callback<void(bool)>([&](auto done) {
        asio::post(auth_pool_, [users, user, password = std::move(password),
                                done = std::move(done)]() mutable {
          const bool match = users->verify(user, password);
          OPENSSL_cleanse(password.data(), password.size());
          done(match);
        });
      });
    }
    if (ok) {
      spdlog::info("auth: from {}: sasl_username={}", who, printable(user));
    } else {
      const auto failures = session.auth_failures() + 1;
      spdlog::warn("auth failed: from {}: sasl_username={} (failure {} of {})", who,
                   printable(user), failures, max_auth_failures);
      const auto delay = auth_failure_delay * failures;
      c.arm(std::chrono::duration_cast<steady::duration>(cfg_.smtp.idle_timeout) + delay);
      asio::steady_timer t(io_);
      t.expires_after(delay);
      co_await t.async_wait(use_tuple);
    }
    session.auth_result(ok);
  }

  // Spools the session's pending message and answers it: 250 only after commit.
  awaitable<void> spool_message(smtp::server_session& session, const std::string& ip) {
    const std::string sasl = printable(session.authenticated_user());
    const auto& env = session.message_envelope();
    queue::envelope_record rec;
    rec.id = session.message_id();
    rec.arrival_us = now_us();
    rec.sender = env.sender;
    rec.client_ip = ip;
    rec.helo = env.helo;
    if (env.body == smtp::body_type::eight_bit_mime) rec.flags |= queue::flag_eight_bit;
    if (env.smtputf8) rec.flags |= queue::flag_smtputf8;
    for (const auto& r : env.recipients)
      rec.recipients.push_back(queue::recipient{.address = r, .next_attempt_us = rec.arrival_us});
    std::string body = session.take_message();
    rec.size = body.size();
    const std::size_t nrcpt = rec.recipients.size(), size = rec.size;
    const std::string sender = rec.sender, id = rec.id;
    const std::int64_t arrival = rec.arrival_us;

    auto r = co_await from_callback<void(queue::result)>([&](auto done) {
      spool_.enqueue(std::move(rec), std::move(body), std::move(done));
    });
    if (r.code == queue::status::ok) {
      if (sasl.empty())
        spdlog::info("{}: from=<{}>, size={}, nrcpt={}, client={}", id, sender, size, nrcpt, ip);
      else
        spdlog::info("{}: from=<{}>, size={}, nrcpt={}, client={}, sasl_username={}", id, sender,
                     size, nrcpt, ip, sasl);
      session.message_queued();
      metrics_.message_received();
      scheduler_.notify_enqueued(arrival);
      co_return;
    }
    smtp::reply reply{452, "4.3.1", "Insufficient system storage"};
    if (r.code != queue::status::full) reply = {451, "4.3.0", "Local error in processing"};
    spdlog::error("{}: not queued: {} ({}); client={}", id, reply.to_string(), r.detail, ip);
    session.message_failed(reply);
  }

  void finish(std::list<std::shared_ptr<connection>>::iterator it) {
    auto c = *it;
    c->done = true;
    c->timer.cancel();
    boost::system::error_code ec;
    c->socket().close(ec);
    auto pc = per_client_.find(c->ip);
    if (pc != per_client_.end() && --pc->second == 0) per_client_.erase(pc);
    metrics_.connection_closed(c->listener);
    connections_.erase(it);
    maybe_idle();
  }

  void maybe_idle() {
    if (stopping_ && connections_.empty() && refusing_ == 0 && on_idle_) {
      auto f = std::move(on_idle_);
      on_idle_ = nullptr;
      f();
    }
  }

  asio::io_context& io_;
  const config& cfg_;
  queue::spool& spool_;
  scheduler& scheduler_;
  metrics& metrics_;
  std::list<tcp::acceptor> acceptors_;
  std::list<std::shared_ptr<connection>> connections_;
  std::unordered_map<std::string, std::size_t> per_client_;
  std::unordered_map<std::string, rate_entry> rates_;
  steady::time_point last_rate_sweep_ = steady::now();
  std::shared_ptr<ssl::context> tls_;              // [tls]: for new connections
  std::shared_ptr<const auth_users> users_;        // [auth] users: for new connections
  asio::thread_pool auth_pool_{1};                 // runs crypt(3) off the I/O thread
  std::size_t refusing_ = 0;
  std::uint64_t data_memory_limit_ = 0;  // smtp.max_data_memory, or a quarter of RAM
  // Message content the sessions hold now (see memory_share in serve()).
  std::shared_ptr<std::uint64_t> data_memory_ = std::make_shared<std::uint64_t>(0);
  bool stopping_ = false;
  std::function<void()> on_idle_;
};

// The queue gauges from a scan of the spool in batches (other work runs between
// them). The next scan comes after 5 s, or 10 times as long as this one took,
// so a huge queue never keeps the I/O thread more than ~10% busy.
awaitable<void> update_queue_gauges(asio::steady_timer& timer, const bool& stopping,
                                    const config& cfg, queue::spool& spool, scheduler& sched,
                                    metrics& m) {
  constexpr std::size_t batch = 1000;
  while (!stopping) {
    const auto started = steady::now();
    queue_census census(now_us());
    std::string after;
    for (;;) {
      std::size_t seen = 0;
      after = spool.scan(after, batch, [&](const queue::envelope_record& r) {
        ++seen;
        census.add(r);
      });
      if (seen < batch || stopping) break;
      co_await asio::post(timer.get_executor(), asio::use_awaitable);
    }
    if (stopping) co_return;
    census.gauges.dead = spool.dead_count();
    census.gauges.spool_bytes = spool.used_bytes();
    census.gauges.spool_max_bytes = effective_spool_max(
        cfg.spool, census.gauges.spool_bytes, cfg.queue.max_spool_size, cfg.queue.min_free_disk);
    m.set_queue_gauges(census.gauges);
    m.set_in_flight(sched.in_flight_count());
    timer.expires_after(std::max<steady::duration>(std::chrono::seconds(5),
                                                   10 * (steady::now() - started)));
    co_await timer.async_wait(use_tuple);
  }
}

// Enough descriptors for every connection plus the spool, sockets and logs.
void raise_fd_limit(std::uint64_t want) {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return;
  if (rl.rlim_cur >= want) return;
  rlim_t target = std::min<rlim_t>(want, rl.rlim_max);
  rl.rlim_cur = target;
  if (setrlimit(RLIMIT_NOFILE, &rl) != 0 || target < want)
    spdlog::warn("open-file limit is {}, below the {} that max_connections needs", target, want);
}

// The account named by the top-level `user` key.
struct run_as {
  std::string name;
  uid_t uid = 0;
  gid_t gid = 0;
};

// Looks `user` up before anything is opened. nullopt with a critical log line
// when the start-up must fail; an empty name (or already being that user) gives
// an account with an empty name: nothing to switch.
std::optional<run_as> resolve_user(const config& cfg) {
  if (cfg.user.empty()) return run_as{};
  errno = 0;
  const passwd* pw = ::getpwnam(cfg.user.c_str());
  if (pw == nullptr) {
    spdlog::critical("user: unknown user \"{}\"{}", cfg.user,
                     errno != 0 ? std::string(": ") + std::strerror(errno) : std::string());
    return std::nullopt;
  }
  run_as who{cfg.user, pw->pw_uid, pw->pw_gid};
  if (::geteuid() == 0) return who;
  if (::geteuid() == who.uid) return run_as{};
  spdlog::critical("user: relayd runs as uid {}, not root: it cannot switch to user \"{}\"",
                   ::geteuid(), cfg.user);
  return std::nullopt;
}

// Hands the spool (directory and files) and the control socket to `who`, then
// drops root for good: setgroups, setgid, setuid, and checks that root cannot be
// regained. Listeners are bound and files open by now. false: start-up fails.
bool drop_privileges(const config& cfg, const run_as& who) {
  namespace fs = std::filesystem;
  auto give = [&](const fs::path& p) {
    if (::lchown(p.c_str(), who.uid, who.gid) == 0) return true;
    spdlog::critical("user: chown {} to {}: {}", p.string(), who.name, std::strerror(errno));
    return false;
  };
  if (!give(cfg.spool)) return false;
  std::error_code ec;
  for (fs::recursive_directory_iterator it(cfg.spool, ec), end; !ec && it != end; it.increment(ec))
    if (!give(it->path())) return false;
  if (ec) {
    spdlog::critical("user: reading spool {}: {}", cfg.spool, ec.message());
    return false;
  }
  if (!give(cfg.control.socket)) return false;
  if (::chmod(cfg.control.socket.c_str(), 0660) != 0) {
    spdlog::critical("user: chmod {}: {}", cfg.control.socket, std::strerror(errno));
    return false;
  }
  if (::setgroups(1, &who.gid) != 0 || ::setgid(who.gid) != 0 || ::setuid(who.uid) != 0) {
    spdlog::critical("user: cannot switch to user {} (uid {}, gid {}): {}", who.name, who.uid,
                     who.gid, std::strerror(errno));
    return false;
  }
  if (::getuid() != who.uid || ::geteuid() != who.uid || ::getgid() != who.gid ||
      ::getegid() != who.gid || (who.uid != 0 && (::setuid(0) == 0 || ::seteuid(0) == 0))) {
    spdlog::critical("user: switching to user {} did not drop root", who.name);
    return false;
  }
  spdlog::info("running as user {} (uid {}, gid {})", who.name, who.uid, who.gid);
  return true;
}

}  // namespace

int run_daemon(const config& cfg) {
  raise_fd_limit(cfg.smtp.max_connections * 2 + 256);
  const auto user = resolve_user(cfg);
  if (!user) return 1;

  queue::spool_options so;
  so.dir = cfg.spool;
  so.max_size = cfg.queue.max_spool_size;
  so.min_free_disk = cfg.queue.min_free_disk;
  so.max_messages = cfg.queue.max_messages;
  auto opened = queue::spool::open(so);
  if (!opened) {
    spdlog::critical("spool {}: {}", cfg.spool, opened.error());
    return 1;
  }
  auto spool = std::move(*opened);
  const auto& rep = spool->report();
  spdlog::info("spool {}: {} messages ({} bytes), {} recipients pending, {} records set aside",
               cfg.spool, rep.messages, rep.bytes, rep.recipients_pending, rep.quarantined);
  for (const auto& q : queue::quarantined_at_open(*spool))
    spdlog::error("spool: record {} set aside: {}", q.id, q.reason);

  asio::io_context io(1);
  std::unique_ptr<dns::mx_resolver> resolver;
  try {
    dns::resolver_options ro;
    for (const auto& ep : cfg.delivery.dns_servers) ro.servers.push_back(ep.to_string());
    resolver = std::make_unique<dns::mx_resolver>(io, std::move(ro));
  } catch (const std::exception& e) {
    spdlog::critical("DNS resolver: {}", e.what());
    return 1;
  }
  metrics registry;
  scheduler sched(io, cfg, *spool);
  sched.set_metrics(&registry);
  delivery_agent agent(io, cfg, sched, *resolver);
  sched.set_agent(&agent);
  inbound_server server(io, cfg, *spool, sched, registry);
  control_server control(io, cfg, *spool);
  control.set_scheduler(&sched);
  if (!server.start()) return 1;
  if (auto ok = control.start(); !ok) {
    spdlog::critical("control socket: {}", ok.error());
    return 1;
  }
  std::unique_ptr<metrics_server> metrics_http;
  if (cfg.metrics.listen) {
    metrics_http = std::make_unique<metrics_server>(io, *cfg.metrics.listen,
                                                    [&registry] { return registry.render(); });
    if (auto ok = metrics_http->start(); !ok) {
      spdlog::critical("metrics.listen {}", ok.error());
      return 1;
    }
  }
  if (!user->name.empty() && !drop_privileges(cfg, *user)) return 1;
  asio::steady_timer gauge_timer(io);
  bool stopping = false;
  asio::co_spawn(io, update_queue_gauges(gauge_timer, stopping, cfg, *spool, sched, registry),
                 asio::detached);

  asio::signal_set signals(io, SIGTERM, SIGINT);
  asio::signal_set hup(io, SIGHUP);
  asio::steady_timer grace(io);
  int signals_seen = 0;
  std::function<void(boost::system::error_code, int)> on_signal =
      [&](boost::system::error_code ec, int sig) {
        if (ec) return;
        if (++signals_seen > 1) {
          spdlog::warn("second signal: stopping now");
          io.stop();
          return;
        }
        spdlog::info("signal {}: stopping (finishing transactions in flight)", sig);
        stopping = true;
        gauge_timer.cancel();
        signals.async_wait(on_signal);
        grace.expires_after(shutdown_grace);
        grace.async_wait([&](boost::system::error_code e) {
          if (!e) {
            spdlog::warn("shutdown grace period over: closing remaining sessions");
            io.stop();
          }
        });
        // Inbound sessions and deliveries wind down side by side; the last
        // one to finish closes the rest.
        auto remaining = std::make_shared<int>(2);
        auto one_done = [&, remaining] {
          if (--*remaining > 0) return;
          control.stop();
          if (metrics_http) metrics_http->stop();
          resolver->cancel();
          grace.cancel();
          boost::system::error_code ignored;
          signals.cancel(ignored);
          hup.cancel(ignored);
        };
        server.stop(one_done);
        sched.stop(one_done);
      };
  signals.async_wait(on_signal);
  // SIGHUP reloads the TLS certificate and the AUTH users (not the config file).
  std::function<void(boost::system::error_code, int)> on_hup = [&](boost::system::error_code ec,
                                                                   int) {
    if (ec) return;
    spdlog::info("SIGHUP: reloading the TLS certificate and the AUTH users");
    server.reload();
    hup.async_wait(on_hup);
  };
  hup.async_wait(on_hup);
  sched.start();
  spdlog::info("relayd started: hostname {}, delivery {}", cfg.hostname,
               cfg.delivery.relayhost ? "via relayhost " + cfg.delivery.relayhost->to_string()
                                      : std::string("by MX"));
  io.run();
  spool.reset();  // finishes queued spool operations, then closes LMDB
  spdlog::info("relayd stopped");
  return 0;
}

}  // namespace relayd
