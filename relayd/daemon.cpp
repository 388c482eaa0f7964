// The daemon's event loop: inbound SMTP listeners with one coroutine per
// connection (a thin pump around smtp::server_session), connection limits,
// idle timeouts, the control socket and graceful shutdown on SIGTERM/SIGINT.
// A message is acknowledged only after the spool's synced commit completes.
#include "relayd/daemon.hpp"

#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <sys/time.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <ctime>
#include <list>
#include <unordered_map>

#include "queue/spool.hpp"
#include "queue/spool_diag.hpp"
#include "relayd/async_call.hpp"
#include "relayd/control.hpp"
#include "relayd/delivery_agent.hpp"
#include "relayd/metrics.hpp"
#include "relayd/metrics_http.hpp"
#include "relayd/scheduler.hpp"
#include "dns/mx_resolver.hpp"
#include "relayd/net.hpp"
#include <boost/asio/ip/v6_only.hpp>
#include "smtp/server_session.hpp"

namespace relayd {
namespace {

using steady = std::chrono::steady_clock;
constexpr auto final_write_timeout = std::chrono::seconds(10);
constexpr auto shutdown_grace = std::chrono::seconds(30);

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

// One inbound connection: the socket plus what the watchdog and shutdown need.
struct connection {
  connection(tcp::socket s, std::string ip_, std::uint16_t port_)
      : sock(std::move(s)), timer(sock.get_executor()), ip(std::move(ip_)), port(port_) {}

  // Sets the deadline for the next read or write.
  // A later deadline is picked up when the watchdog wakes at the old one; an
  // earlier one must cut its wait short.
  void arm(steady::duration d) {
    deadline = steady::now() + d;
    timed_out = false;
    if (deadline < timer.expiry()) timer.expires_at(deadline);
  }

  tcp::socket sock;
  asio::steady_timer timer;
  std::string ip;
  std::uint16_t port;
  std::string listener;  // the [smtp] listen entry, for relayd_smtp_connections
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

  bool start() {
    for (const auto& ep : cfg_.smtp.listen) {
      if (!listen(ep, "smtp")) return false;
    }
    return true;
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
        c->sock.cancel(ec);
      }
    }
    maybe_idle();
  }

 private:
  bool listen(const endpoint& ep, const char* kind) {
    boost::system::error_code ec;
    auto addrs = tcp::resolver(io_).resolve(ep.host, std::to_string(ep.port),
                                            tcp::resolver::numeric_service, ec);
    if (ec) {
      spdlog::critical("cannot resolve listener {}: {}", ep.to_string(), ec.message());
      return false;
    }
    for (const auto& entry : addrs) {
      tcp::acceptor acc(io_);
      auto e = entry.endpoint();
      acc.open(e.protocol(), ec);
      if (!ec) acc.set_option(tcp::acceptor::reuse_address(true), ec);
      if (!ec && e.address().is_v6()) acc.set_option(asio::ip::v6_only(true), ec);
      if (!ec) acc.bind(e, ec);
      if (!ec) acc.listen(asio::socket_base::max_listen_connections, ec);
      if (ec) {
        spdlog::critical("cannot listen on {}: {}", ep.to_string(), ec.message());
        return false;
      }
      auto local = acc.local_endpoint();
      spdlog::info("listening on {} ({})", peer_text(peer_ip(local), local.port()), kind);
      acceptors_.push_back(std::move(acc));
      metrics_.add_listener(ep.to_string());
      asio::co_spawn(io_, accept_loop(acceptors_.back(), ep.to_string()), asio::detached);
    }
    return true;
  }

  awaitable<void> accept_loop(tcp::acceptor& acc, std::string listener) {
    asio::steady_timer backoff(io_);
    while (!stopping_) {
      auto [ec, sock] = co_await acc.async_accept(use_tuple);
      if (stopping_) co_return;
      if (ec) {
        // EMFILE and friends: say so, breathe, keep serving the others.
        spdlog::error("accept: {}", ec.message());
        backoff.expires_after(std::chrono::milliseconds(100));
        co_await backoff.async_wait(use_tuple);
        continue;
      }
      boost::system::error_code pe;
      auto remote = sock.remote_endpoint(pe);
      if (pe) continue;
      std::string ip = peer_ip(remote);
      auto& per_client = per_client_[ip];
      if (connections_.size() >= cfg_.smtp.max_connections ||
          per_client >= cfg_.smtp.max_connections_per_client) {
        if (per_client == 0) per_client_.erase(ip);
        asio::co_spawn(io_, refuse(std::move(sock), ip, remote.port()), asio::detached);
        continue;
      }
      ++per_client;
      auto c = std::make_shared<connection>(std::move(sock), ip, remote.port());
      c->listener = listener;
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

  // Over a connection limit: one 421 and close, with a short write timeout.
  awaitable<void> refuse(tcp::socket sock, std::string ip, std::uint16_t port) {
    ++refusing_;
    metrics_.smtp_rejection(421);
    spdlog::warn("reject: connect from {}: 421 4.7.0 too many connections",
                 peer_text(ip, port));
    static const std::string msg =
        "421 4.7.0 Too many connections, try again later\r\n";
    asio::steady_timer t(io_);
    t.expires_after(std::chrono::seconds(5));
    t.async_wait([&sock](boost::system::error_code ec) {
      if (!ec) sock.close(ec);
    });
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
        c->sock.cancel(ec);
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
    o.new_id = [this] { return spool_.new_id(); };
    o.now = [] { return static_cast<std::int64_t>(std::time(nullptr)); };
    return o;
  }

  awaitable<void> serve(std::shared_ptr<connection> c) {
    const auto who = peer_text(c->ip, c->port);
    spdlog::info("connect from {}", who);
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
    smtp::server_session session(std::move(options), client);
    session.start();

    const auto idle = std::chrono::duration_cast<steady::duration>(cfg_.smtp.idle_timeout);
    std::array<char, 8192> buf;
    bool closing = false;
    for (;;) {
      if (!session.output().empty()) {
        c->arm(closing ? final_write_timeout : idle);
        auto [ec, n] = co_await asio::async_write(c->sock, asio::buffer(session.output()), use_tuple);
        if (ec) break;
        session.clear_output();
      }
      if (closing) break;
      if (c->stop_requested && !session.in_transaction()) {
        closing = session.shutdown();
        if (closing) continue;
      }
      c->arm(idle);
      c->reading = true;
      auto [ec, n] = co_await c->sock.async_read_some(asio::buffer(buf), use_tuple);
      c->reading = false;
      if (ec) {
        if (ec == asio::error::operation_aborted && c->timed_out) {
          spdlog::info("timeout: {}", who);
          session.timeout();
          closing = true;
          continue;
        }
        if (ec == asio::error::operation_aborted && c->stop_requested) continue;
        break;  // EOF, reset
      }
      std::string_view in(buf.data(), n);
      while (!in.empty() && !closing) {
        auto st = session.feed(in);
        in.remove_prefix(st.consumed);
        if (st.what == smtp::server_session::event::close) {
          closing = true;
        } else if (st.what == smtp::server_session::event::message) {
          co_await spool_message(session, c->ip);
        }
      }
    }
    spdlog::info("disconnect from {} messages={}", who, session.messages_accepted());
  }

  // Spools the session's pending message and answers it: 250 only after commit.
  awaitable<void> spool_message(smtp::server_session& session, const std::string& ip) {
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
      spdlog::info("{}: from=<{}>, size={}, nrcpt={}, client={}", id, sender, size, nrcpt, ip);
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
    c->sock.shutdown(tcp::socket::shutdown_both, ec);
    c->sock.close(ec);
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
  std::size_t refusing_ = 0;
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

}  // namespace

int run_daemon(const config& cfg) {
  if (!cfg.smtp.submission.empty() || !cfg.smtp.smtps.empty()) {
    spdlog::critical("smtp.submission and smtp.smtps need TLS and AUTH, which this build does "
                     "not have yet; remove them");
    return 1;
  }
  raise_fd_limit(cfg.smtp.max_connections * 2 + 256);

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
  // SIGHUP must not kill the daemon (the default action); nothing reloads yet.
  std::function<void(boost::system::error_code, int)> on_hup = [&](boost::system::error_code ec,
                                                                   int) {
    if (ec) return;
    spdlog::info("SIGHUP: nothing to reload in this version");
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
