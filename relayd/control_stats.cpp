// The stats command of the control socket: the census of metrics.hpp (the same
// states as relayd_queue_messages), counted over the queue in batches with short
// read transactions, yielding to the I/O thread between batches. Cannot fail.
#include <array>
#include <boost/json.hpp>

#include "queue/clock.hpp"
#include "relayd/control_handlers.hpp"
#include "relayd/metrics.hpp"
#include "relayd/delivery_scheduler.hpp"

namespace relayd {
namespace json = boost::json;
namespace proto = control_protocol;
namespace key = control_protocol::key;

namespace {

awaitable<std::string> stats(control_context& ctx, const proto::request&, const line_writer&) {
  constexpr std::size_t batch = 1000;
  queue_census census(queue::wall_clock_us());
  std::uint64_t messages = 0, bytes = 0;
  std::string after;
  for (;;) {
    std::size_t seen = 0;
    after = ctx.spool.scan(after, batch, [&](const queue::envelope_record& r) {
      ++seen;
      ++messages;
      bytes += r.size;
      census.add(r);
    });
    if (seen < batch) break;
    co_await asio::post(ctx.io.get_executor(), asio::use_awaitable);
  }
  auto& g = census.gauges;
  const auto& cfg = ctx.cfg;
  g.dead = ctx.spool.dead_count();
  g.spool_bytes = ctx.spool.used_bytes();
  g.spool_max_bytes = effective_spool_max(cfg.spool, g.spool_bytes, cfg.queue.max_spool_size,
                                          cfg.queue.min_free_disk);
  json::object st{
      {key::active, g.active},
      {key::deferred, g.deferred},
      {key::held, g.held},
      {key::dead, g.dead},
      {key::messages, messages},
      {key::message_bytes, bytes},
      {key::in_flight, ctx.sched ? ctx.sched->in_flight_count() : std::size_t{0}},
      {key::oldest_age_seconds, static_cast<std::int64_t>(g.oldest_age_seconds)},
      {key::spool_bytes, g.spool_bytes},
      {key::spool_max_bytes, g.spool_max_bytes},
  };
  co_return proto::ok_line({{key::stats, std::move(st)}});
}

constexpr std::array<control_command, 1> commands{{{proto::verb::stats, stats}}};

}  // namespace

std::span<const control_command> control_stats_commands() { return commands; }

}  // namespace relayd
