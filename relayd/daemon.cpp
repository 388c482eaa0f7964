// The daemon's wiring: opens the spool, builds the scheduler, the delivery
// agent, the control socket and the metrics endpoint on the main I/O thread
// and the inbound listeners on their own (relayd/inbound_thread.hpp), switches
// to the configured `user`, handles SIGHUP and `relayctl reload` (the whole
// configuration, relayd/daemon_reload.hpp) and SIGTERM/SIGINT (graceful stop),
// and stops in the order written down below.
// Start-up failures are logged and give 1.
#include "relayd/daemon.hpp"

#include <spdlog/spdlog.h>

#include <chrono>
#include <functional>
#include <memory>

#include "dns/mx_resolver.hpp"
#include "queue/spool.hpp"
#include "queue/spool_diag.hpp"
#include "relayd/control_server.hpp"
#include "relayd/daemon_reload.hpp"
#include "relayd/dead_retention.hpp"
#include "relayd/delivery_agent.hpp"
#include "relayd/delivery_scheduler.hpp"
#include "relayd/dkim_dns_monitor.hpp"
#include "relayd/dkim_sign.hpp"
#include "relayd/events_log.hpp"
#include "relayd/inbound_maildrop.hpp"
#include "relayd/inbound_listener.hpp"
#include "relayd/inbound_thread.hpp"
#include "relayd/local_aliases.hpp"
#include "relayd/metrics.hpp"
#include "relayd/metrics_census.hpp"
#include "relayd/metrics_http.hpp"
#include "relayd/net.hpp"
#include "relayd/privileges.hpp"
#include "relayd/tls_rpt_service.hpp"

namespace relayd {
namespace {

constexpr auto shutdown_grace = std::chrono::seconds(30);

}  // namespace

// `cfg` is the one configuration every part reads (by reference, on the two
// I/O threads); reload_config() swaps its value on the main one while the
// inbound thread is paused.
int run_daemon(config cfg, const std::string& config_path) {
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

  alias_source aliases(cfg);  // [local] aliases: new sessions take its table; reload swaps it
  if (auto loaded = aliases.load(); loaded) {
    spdlog::info("{}", *loaded);
  } else {
    spdlog::critical("local.aliases: {}", loaded.error());
    return 1;
  }

  asio::io_context io(1);
  // The listeners and sessions run here; built before everything that posts
  // to it (the DKIM signer's answers), so it goes after them.
  inbound_thread inbound;
  // [[dkim]] keys, read before the privilege drop; a bad key stops the start.
  // After `io`: its signing threads are joined before `io` goes, so an answer
  // in flight never posts to a destroyed io_context.
  dkim_service dkim(cfg);
  if (auto loaded = dkim.load(); loaded) {
    if (dkim.enabled()) spdlog::info("{}", *loaded);
  } else {
    spdlog::critical("{}", loaded.error());
    return 1;
  }
  std::unique_ptr<dns::mx_resolver> resolver;
  try {
    dns::resolver_options ro;
    for (const auto& ep : cfg.delivery.dns_servers) ro.servers.push_back(ep.to_string());
    ro.dnssec = cfg.delivery.dane;
    resolver = std::make_unique<dns::mx_resolver>(io, std::move(ro));
  } catch (const std::exception& e) {
    spdlog::critical("DNS resolver: {}", e.what());
    return 1;
  }
  metrics registry;
  // [events]: before the scheduler, which points at it; its writer thread is
  // joined when it goes (after the scheduler).
  event_log events(io, cfg, *spool, &registry);
  // The scheduler and the agent refer to each other (jobs one way, results the
  // other); both live until io.run() has returned, so neither outlives the other
  // while a coroutine runs.
  scheduler sched(io, cfg, *spool, &registry);
  if (events.enabled()) sched.set_events(&events);
  delivery_agent agent(io, cfg, sched, *resolver);
  inbound_listener server(inbound.io(), io, cfg, *spool, sched, registry);
  control_server control(io, cfg, *spool);
  control.set_scheduler(&sched);
  server.set_aliases(aliases);
  server.set_dkim(dkim);
  control.set_aliases(aliases);
  // [delivery] tls_rpt (RFC 8460): the agent's MX sessions are counted per day
  // under the spool; started after the privilege drop (its files belong to
  // relayd's user), stopped once the deliveries are done and before the spool closes.
  std::unique_ptr<tls_rpt_service> tls_reports;
  if (cfg.delivery.tls_rpt) {
    tls_reports = std::make_unique<tls_rpt_service>(io, tls_rpt_settings(cfg), *spool, sched,
                                                    *resolver);
    agent.set_tls_reports(tls_reports.get());
    control.set_tls_reports(tls_reports.get());
  }
  // [[dkim]] selectors' DNS records: at start, every dkim_check_interval, on
  // SIGHUP and relayctl dkim check; require_dns keys sign only on a match.
  dkim_dns_monitor dkim_dns(io, cfg, *resolver, &registry, cfg.dkim_check_interval);
  control.set_dkim_monitor(dkim_dns);
  dkim.set_dns_gate(dkim_dns.gate());
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
  const bool maildrop_ok = prepare_maildrop(cfg, *user);  // needs root to set its group
  if (!user->name.empty() && !drop_privileges(cfg, *user)) return 1;
  if (std::string why; !events.start(why)) {  // after the drop: reopen() works as the same user
    spdlog::critical("{}", why);
    return 1;
  }
  maildrop_importer maildrop(io, cfg, *spool, sched, registry, aliases);
  maildrop.set_dkim(dkim);
  if (maildrop_ok) maildrop.start();
  queue_census_loop census(io, cfg, *spool, sched, registry);
  census.start();
  dead_retention retention(io, cfg.queue.dead_retention, *spool);
  retention.start();
  dkim_dns.start();
  if (tls_reports) tls_reports->start();

  // The shutdown order (SIGTERM/SIGINT; the code below does it in this order):
  //  1. The queue census, the dead-spool retention, the DKIM DNS checks and the
  //     maildrop import stop; the listeners close (no new connections; the
  //     [local] socket file is removed; this step runs on the inbound thread);
  //     idle sessions get 421 4.3.2, sessions in a transaction finish it; the
  //     scheduler stops handing out jobs and waits for the agents in flight.
  //  2. When both the inbound side (its "idle" is posted to `io`) and the
  //     deliveries are done (whichever is last), the TLS report counts are
  //     written and its timer stopped; the control socket, the metrics
  //     endpoint, the DNS resolver, the grace timer and the signal waits are
  //     cancelled: io.run() runs out of work.
  //     A second signal, or shutdown_grace passing, calls io.stop() instead.
  //  3. io.run() returns; inbound.stop() stops the inbound thread (idle after
  //     step 2; after io.stop(), between two of its handlers): no coroutine
  //     runs again (the TLS report service is stopped now if step 2 did not
  //     run). spool.reset() then lets the writer finish the operations it
  //     holds (their `done` callbacks post to `io` or the inbound io_context,
  //     neither run again) and closes LMDB.
  //  4. The locals go in reverse order: signals, retention, census, metrics endpoint,
  //     control, listener (joins the AUTH worker), agent, scheduler, registry,
  //     resolver, DKIM signer (joins its threads); the inbound io_context;
  //     then `io`; each destroys the coroutine frames left by io.stop()
  //     without resuming them (they own what their destructors touch).
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
        census.stop();
        events.stop();
        retention.stop();
        dkim_dns.stop();
        maildrop.stop();
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
          if (tls_reports) tls_reports->stop();
          control.stop();
          if (metrics_http) metrics_http->stop();
          resolver->cancel();
          grace.cancel();
          boost::system::error_code ignored;
          signals.cancel(ignored);
          hup.cancel(ignored);
        };
        asio::post(inbound.io(), [&server, &io, one_done] {
          server.stop([&io, one_done] { asio::post(io, one_done); });
        });
        sched.stop(one_done);
      };
  signals.async_wait(on_signal);
  // SIGHUP and `relayctl reload` re-read the whole configuration and the files
  // it names (relayd/daemon_reload.hpp); the relayhost credentials kept open
  // from before the privilege drop are re-read through their descriptors.
  reload_targets reload{cfg, config_path, sched, agent, server, aliases, dkim, registry};
  // A good reload also checks the (possibly rotated) DKIM keys against DNS now.
  // The sessions read what it changes: the inbound thread waits meanwhile.
  auto reload_all = [&](std::string_view trigger) {
    std::expected<std::string, std::string> r;
    inbound.paused([&] { r = reload_config(reload, trigger); });
    events.reopen();  // the event file, renamed by logrotate
    if (r && dkim.enabled()) dkim_dns.check_now(nullptr);
    return r;
  };
  control.set_reloader([&reload_all] { return reload_all("reload"); });
  std::function<void(boost::system::error_code, int)> on_hup = [&](boost::system::error_code ec,
                                                                   int) {
    if (ec) return;
    spdlog::info("SIGHUP: reloading {}", config_path);
    (void)reload_all("SIGHUP");
    hup.async_wait(on_hup);
  };
  hup.async_wait(on_hup);
  sched.start(agent);
  spdlog::info("relayd started: hostname {}, delivery {}", cfg.hostname,
               cfg.delivery.relayhost ? "via relayhost " + cfg.delivery.relayhost->to_string()
                                      : std::string("by MX"));
  inbound.start();
  io.run();
  inbound.stop();
  if (tls_reports) tls_reports->stop();
  spool.reset();  // finishes queued spool operations, then closes LMDB
  spdlog::info("relayd stopped");
  return 0;
}

}  // namespace relayd
