// The queue gauges loop (see metrics_census.hpp). The coroutine owns its timer
// and stop flag through a shared state, so it never refers into another frame;
// cfg, spool, scheduler and metrics are run_daemon()'s locals, alive whenever
// it runs (inside io.run()); a frame left after io.run() is never resumed.
#include "relayd/metrics_census.hpp"

#include <algorithm>
#include <chrono>
#include <map>
#include <string>

#include "queue/clock.hpp"
#include "queue/spool.hpp"
#include "relayd/config.hpp"
#include "relayd/metrics.hpp"
#include "relayd/net.hpp"
#include "relayd/delivery_scheduler.hpp"
#include "smtp/text.hpp"

namespace relayd {

struct queue_census_loop::state {
  state(asio::io_context& io_, const config& cfg_, queue::spool& spool_, scheduler& sched_,
        metrics& stats_)
      : io(io_), timer(io_), cfg(cfg_), spool(spool_), sched(sched_), stats(stats_) {}
  asio::io_context& io;
  asio::steady_timer timer;
  const config& cfg;
  queue::spool& spool;
  scheduler& sched;
  metrics& stats;
  bool stopping = false;
};

namespace {

// Pending recipients by recipient domain (lower case).
void count_destinations(const queue::envelope_record& r,
                        std::map<std::string, destination_count, std::less<>>& out) {
  for (const auto& rc : r.recipients) {
    if (rc.state != queue::rcpt_state::pending) continue;
    auto& c = out[smtp::text::lower(std::string(destination_domain(rc.address)))];
    ++c.queued;
    if (rc.attempts > 0) ++c.deferred;
  }
}

awaitable<void> census_loop(std::shared_ptr<queue_census_loop::state> s) {
  using steady = std::chrono::steady_clock;
  constexpr std::size_t batch = 1000;
  while (!s->stopping) {
    const auto started = steady::now();
    queue_census census(queue::wall_clock_us());
    std::map<std::string, destination_count, std::less<>> destinations;
    std::string after;
    for (;;) {
      std::size_t seen = 0;
      after = s->spool.scan(after, batch, [&](const queue::envelope_record& r) {
        ++seen;
        census.add(r);
        count_destinations(r, destinations);
      });
      if (seen < batch || s->stopping) break;
      co_await asio::post(s->io, asio::use_awaitable);
    }
    if (s->stopping) co_return;
    census.gauges.dead = s->spool.dead_count();
    census.gauges.spool_bytes = s->spool.used_bytes();
    census.gauges.spool_max_bytes =
        effective_spool_max(s->cfg.spool, census.gauges.spool_bytes, s->cfg.queue.max_spool_size,
                            s->cfg.queue.min_free_disk);
    s->stats.set_queue_gauges(census.gauges);
    s->stats.set_in_flight(s->sched.in_flight_count());
    s->stats.set_destination_gauges(destinations, s->cfg.metrics.destinations_top);
    s->timer.expires_after(
        std::max<steady::duration>(std::chrono::seconds(5), 10 * (steady::now() - started)));
    co_await s->timer.async_wait(use_tuple);
  }
}

}  // namespace

queue_census_loop::queue_census_loop(asio::io_context& io, const config& cfg, queue::spool& spool,
                                     scheduler& sched, metrics& stats)
    : state_(std::make_shared<state>(io, cfg, spool, sched, stats)) {}

queue_census_loop::~queue_census_loop() = default;

void queue_census_loop::start() {
  asio::co_spawn(state_->io, census_loop(state_), asio::detached);
}

void queue_census_loop::stop() {
  state_->stopping = true;
  state_->timer.cancel();
}

}  // namespace relayd
