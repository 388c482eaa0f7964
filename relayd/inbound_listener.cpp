// Listeners, accept, limits and refusal, TLS/users reload (see inbound_listener.hpp).
// The local submission socket is one more listener here: its own connection
// count (max_connections), the same data budget, session pump and graceful stop.
// The coroutines spawned here take `impl&`: the impl lives as long as the
// inbound_listener, a local of run_daemon() that outlives io.run(), and a frame
// left when io.run() returns is destroyed without being resumed. Everything
// else they use they own (the acceptor and the connection by shared_ptr).
#include "relayd/inbound_listener.hpp"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cstdint>
#include <list>

#include <boost/asio/ssl/context.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/beast/core/tcp_stream.hpp>

#include "relayd/auth_users.hpp"
#include "relayd/config.hpp"
#include "relayd/inbound_connection.hpp"
#include "relayd/inbound_limits.hpp"
#include "relayd/inbound_local.hpp"
#include "relayd/inbound_session.hpp"
#include "relayd/metrics.hpp"
#include "relayd/net.hpp"
#include "relayd/tls_server.hpp"
#include "smtp/replies.hpp"

namespace relayd {
namespace {

constexpr auto refusal_write_timeout = std::chrono::seconds(5);
using local_acceptor = asio::local::stream_protocol::acceptor;
// The key of every local connection in local_limits: the socket has one count.
const std::string local_client = "local";

// "127.0.0.1" for IPv4 and IPv4-mapped IPv6 peers, "::1" for IPv6.
std::string peer_ip(const tcp::endpoint& ep) {
  auto a = ep.address();
  if (a.is_v6() && a.to_v6().is_v4_mapped())
    return asio::ip::make_address_v4(asio::ip::v4_mapped, a.to_v6()).to_string();
  return a.to_string();
}

std::uint64_t data_memory_limit(const config& cfg) {
  if (cfg.smtp.max_data_memory != 0) return cfg.smtp.max_data_memory;
  const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGESIZE);
  const auto ram = static_cast<std::uint64_t>(pages) * static_cast<std::uint64_t>(page);
  return pages > 0 && page > 0 ? ram / 4 : std::uint64_t{1} << 30;
}

}  // namespace

struct inbound_listener::impl {
  impl(asio::io_context& io_, asio::io_context& delivery_io, const config& cfg_,
       queue::spool& spool_, scheduler& sched_, metrics& stats_)
      : io(io_),
        cfg(cfg_),
        stats(stats_),
        services{cfg_, spool_, sched_, delivery_io, stats_, auth_pool},
        limits({.max_connections = cfg_.smtp.max_connections,
                .max_connections_per_client = cfg_.smtp.max_connections_per_client,
                .max_rate_per_client = cfg_.smtp.max_connection_rate_per_client}),
        local_limits({.max_connections = cfg_.smtp.max_connections,
                      .max_connections_per_client = cfg_.smtp.max_connections}) {}

  bool load_tls(const char* when);
  bool load_users(const char* when);
  bool listen(const endpoint& ep, listener_kind kind);
  awaitable<void> accept_loop(std::shared_ptr<tcp::acceptor> acc, std::string listener,
                              listener_kind kind);
  bool listen_local();
  awaitable<void> accept_local(std::shared_ptr<local_acceptor> acc, std::string listener);
  void spawn_session(std::shared_ptr<inbound_connection> c, awaitable<void> session,
                     const std::string& listener, const std::string& who, inbound_limits& counted,
                     std::string client);
  template <typename Socket>
  awaitable<void> refuse(Socket sock, std::string who, bool plaintext,
                         inbound_limits::verdict why);
  void finish(std::list<std::shared_ptr<inbound_connection>>::iterator it,
              const std::string& listener, inbound_limits& counted, const std::string& client);
  void maybe_idle();

  asio::io_context& io;
  const config& cfg;
  metrics& stats;
  asio::thread_pool auth_pool{1};  // runs crypt(3) off the I/O thread; joined last
  inbound_services services;
  inbound_limits limits;
  inbound_limits local_limits;  // [local] socket: max_connections on its own count
  std::list<std::shared_ptr<tcp::acceptor>> acceptors;
  std::shared_ptr<local_acceptor> local;  // [local] socket, when configured
  std::list<std::shared_ptr<inbound_connection>> connections;
  std::shared_ptr<asio::ssl::context> tls;        // [tls]: for new connections
  std::shared_ptr<const auth_users> users;        // [auth] users: for new connections
  std::shared_ptr<data_budget> memory = std::make_shared<data_budget>();
  std::size_t refusing = 0;
  bool stopping = false;
  std::function<void()> on_idle;
};

inbound_listener::inbound_listener(asio::io_context& io, asio::io_context& delivery_io,
                                   const config& cfg, queue::spool& spool, scheduler& sched,
                                   metrics& stats)
    : impl_(std::make_unique<impl>(io, delivery_io, cfg, spool, sched, stats)) {}

// A start-up that failed after the listeners were bound leaves no socket file.
inbound_listener::~inbound_listener() {
  if (impl_->local && impl_->local->is_open()) remove_local_socket(impl_->cfg);
}

bool inbound_listener::start() {
  impl& m = *impl_;
  const config& cfg = m.cfg;
  if (!cfg.smtp.submission.empty() && cfg.auth.users.empty()) {
    spdlog::critical("smtp.submission: needs auth.users (AUTH is mandatory on submission)");
    return false;
  }
  if (!cfg.smtp.submission.empty() && cfg.tls.cert.empty()) {
    spdlog::critical("smtp.submission: needs tls.cert and tls.key (AUTH only after STARTTLS)");
    return false;
  }
  if (!cfg.smtp.smtps.empty() && cfg.tls.cert.empty()) {
    spdlog::critical("smtp.smtps: needs tls.cert and tls.key (implicit TLS)");
    return false;
  }
  if (!m.load_tls("") || !m.load_users("")) return false;
  m.memory->limit = data_memory_limit(cfg);
  spdlog::info("message content in memory: at most {} bytes (smtp.max_data_memory)",
               m.memory->limit);
  if (cfg.auth.allow_plaintext_loopback && !m.users)
    spdlog::warn("auth.allow_plaintext_loopback is set but auth.users is empty: no AUTH");
  for (const auto& ep : cfg.smtp.listen)
    if (!m.listen(ep, listener_kind::smtp)) return false;
  for (const auto& ep : cfg.smtp.submission)
    if (!m.listen(ep, listener_kind::submission)) return false;
  for (const auto& ep : cfg.smtp.smtps)
    if (!m.listen(ep, listener_kind::smtps)) return false;
  return cfg.local.socket.empty() || m.listen_local();
}

void inbound_listener::reload(const std::string& log_prefix) {
  impl& m = *impl_;
  const config& cfg = m.cfg;
  if (cfg.tls.cert.empty()) m.tls.reset();  // no STARTTLS for new connections
  if (cfg.auth.users.empty()) m.users.reset();
  m.load_tls(log_prefix.c_str());
  m.load_users(log_prefix.c_str());
  m.limits.reconfigure({.max_connections = cfg.smtp.max_connections,
                        .max_connections_per_client = cfg.smtp.max_connections_per_client,
                        .max_rate_per_client = cfg.smtp.max_connection_rate_per_client});
  m.local_limits.reconfigure({.max_connections = cfg.smtp.max_connections,
                              .max_connections_per_client = cfg.smtp.max_connections});
  m.memory->limit = data_memory_limit(cfg);
}

void inbound_listener::set_aliases(const alias_source& a) { impl_->services.aliases = &a; }
void inbound_listener::set_dkim(const dkim_service& d) { impl_->services.dkim = &d; }

void inbound_listener::stop(std::function<void()> on_idle) {
  impl& m = *impl_;
  m.stopping = true;
  m.on_idle = std::move(on_idle);
  for (auto& a : m.acceptors) {
    boost::system::error_code ec;
    a->close(ec);
  }
  if (m.local) {
    boost::system::error_code ec;
    m.local->close(ec);
    remove_local_socket(m.cfg);
  }
  for (auto& c : m.connections) {
    c->stop_requested = true;
    c->interrupt_read();
  }
  m.maybe_idle();
}

// At start-up (`when` empty) a failure is fatal; on reload it keeps the old one.
bool inbound_listener::impl::load_tls(const char* when) {
  if (cfg.tls.cert.empty()) return true;
  auto loaded = load_server_tls(cfg.tls.cert, cfg.tls.key);
  if (!loaded) {
    if (*when == '\0')
      spdlog::critical("{}", loaded.error());
    else
      spdlog::error("{}{}; keeping the previous certificate", when, loaded.error());
    return false;
  }
  tls = std::move(loaded->context);
  spdlog::info("{}TLS certificate {}: {}, valid until {}", when, cfg.tls.cert, loaded->subject,
               loaded->not_after);
  if (loaded->expired) spdlog::warn("TLS certificate {} has expired", cfg.tls.cert);
  return true;
}

bool inbound_listener::impl::load_users(const char* when) {
  if (cfg.auth.users.empty()) return true;
  auto loaded = auth_users::load(cfg.auth.users);
  if (!loaded) {
    if (*when == '\0')
      spdlog::critical("auth.users: {}", loaded.error());
    else
      spdlog::error("{}auth.users: {}; keeping the previous users", when, loaded.error());
    return false;
  }
  spdlog::info("{}auth users {}: {} users", when, cfg.auth.users, loaded->size());
  users = std::make_shared<const auth_users>(std::move(*loaded));
  return true;
}

bool inbound_listener::impl::listen(const endpoint& ep, listener_kind kind) {
  boost::system::error_code ec;
  auto addrs = tcp::resolver(io).resolve(ep.host, std::to_string(ep.port),
                                         tcp::resolver::numeric_service, ec);
  if (ec) {
    spdlog::critical("cannot resolve listener {}: {}", ep.to_string(), ec.message());
    return false;
  }
  for (const auto& entry : addrs) {
    auto acc = std::make_shared<tcp::acceptor>(open_listener(io, entry.endpoint(), ec));
    if (ec) {
      spdlog::critical("cannot listen on {}: {}", ep.to_string(), ec.message());
      return false;
    }
    auto local = acc->local_endpoint();
    spdlog::info("listening on {} ({})", peer_text(peer_ip(local), local.port()),
                 to_string(kind));
    acceptors.push_back(acc);
    stats.add_listener(ep.to_string());
    asio::co_spawn(io, accept_loop(std::move(acc), ep.to_string(), kind), asio::detached);
  }
  return true;
}

awaitable<void> inbound_listener::impl::accept_loop(std::shared_ptr<tcp::acceptor> acc,
                                                    std::string listener, listener_kind kind) {
  asio::steady_timer backoff(io);
  while (!stopping) {
    tcp::endpoint remote;  // filled by accept(2) itself: no getpeername(2)
    auto [ec, sock] = co_await acc->async_accept(remote, use_tuple);
    if (stopping) co_return;
    if (ec) {
      // EMFILE and friends: say so, breathe, keep serving the others.
      spdlog::error("accept: {}", ec.message());
      backoff.expires_after(std::chrono::milliseconds(100));
      co_await backoff.async_wait(use_tuple);
      continue;
    }
    std::string ip = peer_ip(remote);
    const auto verdict = limits.admit(ip, std::chrono::steady_clock::now());
    if (verdict != inbound_limits::verdict::accepted) {
      asio::co_spawn(io,
                     refuse(std::move(sock), peer_text(ip, remote.port()),
                            kind != listener_kind::smtps, verdict),
                     asio::detached);
      continue;
    }
    auto c = std::make_shared<inbound_connection>(std::move(sock), ip, remote.port());
    auto session = serve_session(services, c, kind, tls, users, memory);
    spawn_session(std::move(c), std::move(session), listener, peer_text(ip, remote.port()),
                  limits, ip);
  }
}

// [local] socket: bound before privileges are dropped (run_daemon starts the
// listeners first), served by the same session pump as TCP.
bool inbound_listener::impl::listen_local() {
  auto fd = open_local_socket(cfg);
  if (!fd) {
    spdlog::critical("{}", fd.error());
    return false;
  }
  boost::system::error_code ec;
  local = std::make_shared<local_acceptor>(io);
  local->assign(asio::local::stream_protocol(), *fd, ec);
  if (ec) {
    ::close(*fd);
    spdlog::critical("local.socket: {}: {}", cfg.local.socket, ec.message());
    return false;
  }
  const std::string listener = "unix:" + cfg.local.socket;
  spdlog::info("listening on {} (local submission)", cfg.local.socket);
  stats.add_listener(listener);
  asio::co_spawn(io, accept_local(local, listener), asio::detached);
  return true;
}

awaitable<void> inbound_listener::impl::accept_local(std::shared_ptr<local_acceptor> acc,
                                                     std::string listener) {
  asio::steady_timer backoff(io);
  while (!stopping) {
    auto [ec, sock] = co_await acc->async_accept(use_tuple);
    if (stopping) co_return;
    if (ec) {
      spdlog::error("accept on {}: {}", cfg.local.socket, ec.message());
      backoff.expires_after(std::chrono::milliseconds(100));
      co_await backoff.async_wait(use_tuple);
      continue;
    }
    auto who = peer_identity(sock.native_handle());
    if (!who) {
      spdlog::error("local submission: {}; connection closed", who.error());
      continue;  // `sock` closes with this iteration
    }
    const std::string text = identity_text(*who);
    const auto verdict = local_limits.admit(local_client, std::chrono::steady_clock::now());
    if (verdict != inbound_limits::verdict::accepted) {
      asio::co_spawn(io, refuse(std::move(sock), text, true, verdict), asio::detached);
      continue;
    }
    auto c = std::make_shared<inbound_connection>(std::move(sock));
    auto session =
        serve_session(services, c, listener_kind::local, nullptr, nullptr, memory, std::move(*who));
    spawn_session(std::move(c), std::move(session), listener, text, local_limits, local_client);
  }
}

// Runs `session` for `c` (counted in `counted` under `client`) until it ends.
void inbound_listener::impl::spawn_session(std::shared_ptr<inbound_connection> c,
                                           awaitable<void> session, const std::string& listener,
                                           const std::string& who, inbound_limits& counted,
                                           std::string client) {
  stats.connection_opened(listener);
  connections.push_back(std::move(c));
  auto it = std::prev(connections.end());
  asio::co_spawn(io, std::move(session),
                 [this, it, listener, who, &counted, client](std::exception_ptr e) {
                   if (e) {
                     try {
                       std::rethrow_exception(e);
                     } catch (const std::exception& ex) {
                       spdlog::error("session {}: {}", who, ex.what());
                     }
                   }
                   finish(it, listener, counted, client);
                 });
}

// Over a connection limit: one 421 and close, within refusal_write_timeout. An
// implicit-TLS client could not read a plaintext 421 (`plaintext` false): it
// is only closed. The stream is this frame's own; its deadline ends with it.
template <typename Socket>
awaitable<void> inbound_listener::impl::refuse(Socket sock, std::string who, bool plaintext,
                                               inbound_limits::verdict why) {
  ++refusing;
  const bool too_fast = why == inbound_limits::verdict::too_fast;
  const smtp::reply reply = too_fast ? smtp::replies::too_many_connections_from_client()
                                     : smtp::replies::too_many_connections();
  stats.smtp_rejection(reply.code);
  spdlog::warn("reject: connect from {}: {} {} {}", who, reply.code, reply.enhanced,
               too_fast ? "connection rate over smtp.max_connection_rate_per_client"
                        : "too many connections");
  {
    boost::beast::basic_stream<typename Socket::protocol_type> stream(std::move(sock));
    if (plaintext) {
      stream.expires_after(refusal_write_timeout);
      const std::string wire = reply.encode();
      co_await asio::async_write(stream, asio::buffer(wire), use_tuple);
    }
    boost::system::error_code ec;
    stream.socket().shutdown(Socket::shutdown_both, ec);
    stream.close();
  }
  --refusing;
  maybe_idle();
}

void inbound_listener::impl::finish(std::list<std::shared_ptr<inbound_connection>>::iterator it,
                                    const std::string& listener, inbound_limits& counted,
                                    const std::string& client) {
  auto c = *it;
  c->close();
  counted.release(client);
  stats.connection_closed(listener);
  connections.erase(it);
  maybe_idle();
}

void inbound_listener::impl::maybe_idle() {
  if (stopping && connections.empty() && refusing == 0 && on_idle) {
    auto f = std::move(on_idle);
    on_idle = nullptr;
    f();
  }
}

}  // namespace relayd
