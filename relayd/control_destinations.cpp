// The destinations, suspend and resume commands of the control socket
// (relayctl destinations [--json], relayctl suspend DEST [--for D], relayctl
// resume DEST): the scheduler's per-destination state (delivery_scheduler.hpp)
// joined with a count of the queued messages per destination, read from the
// spool in batches, and the TLS policy and outcome of each destination's last
// session (delivery_tls_status.hpp). resume makes the destination's queued mail due at once.
// A name that designates nothing is an error line; nothing here throws.
#include <spdlog/spdlog.h>

#include <array>
#include <boost/json.hpp>
#include <map>
#include <set>

#include "queue/clock.hpp"
#include "relayd/async_call.hpp"
#include "relayd/control_handlers.hpp"
#include "relayd/delivery_scheduler.hpp"
#include "relayd/metrics.hpp"

namespace relayd {
namespace json = boost::json;
namespace proto = control_protocol;
namespace key = control_protocol::key;

namespace {

constexpr std::size_t batch = 1000;

// Calls f(record, destination keys of its pending recipients) for every message
// that is not held, in batches that yield to the I/O thread between them.
template <typename F>
awaitable<void> each_queued(control_context& ctx, F f) {
  std::string after;
  for (;;) {
    std::size_t seen = 0;
    after = ctx.spool.scan(after, batch, [&](const queue::envelope_record& r) {
      ++seen;
      if (r.flags & queue::flag_held) return;
      std::set<std::string> ids;
      std::vector<destination_key> keys;
      for (const auto& rc : r.recipients) {
        if (rc.state != queue::rcpt_state::pending) continue;
        auto k = ctx.sched->destination_of(r.sender, rc.address);
        if (ids.insert(k.id()).second) keys.push_back(std::move(k));
      }
      f(r, keys);
    });
    if (seen < batch) break;
    co_await asio::post(ctx.io.get_executor(), asio::use_awaitable);
  }
}

awaitable<std::string> destinations(control_context& ctx, const proto::request&,
                                    const line_writer& write) {
  if (!ctx.sched) co_return proto::error_line("delivery is not running");
  struct counts {
    std::size_t queued = 0, in_flight = 0;
    destination_key key;
  };
  std::map<std::string, counts> by_id;
  co_await each_queued(ctx, [&](const queue::envelope_record& r,
                                const std::vector<destination_key>& keys) {
    const bool flying = ctx.sched->in_flight(r.id);
    for (const auto& k : keys) {
      auto& c = by_id[k.id()];
      c.key = k;
      ++c.queued;
      if (flying) ++c.in_flight;
    }
  });
  auto rows = ctx.sched->report();
  for (auto& [id, c] : by_id) {
    if (std::ranges::find(rows, id, &destination_report::name) != rows.end()) continue;
    // Queued, waiting for its next attempt; the scheduler holds nothing of it.
    destination_report r{.name = id, .state = "deferred"};
    const auto group = ctx.sched->group_name_of(c.key);
    if (group != id) r.policy = group;
    // Its policy's suspension (a row of its own) is its state too.
    for (const auto& g : rows)
      if (g.name == group && g.policy == group) {
        r.rate = g.rate;
        r.state = g.state == "idle" ? r.state : g.state;
        r.until_us = g.until_us;
        r.reason = g.reason;
        r.last_reply = g.last_reply;
      }
    rows.push_back(std::move(r));
  }
  // Known only by their last TLS session: idle, shown for their TLS policy and outcome.
  const auto& tls = ctx.sched->tls_status();
  std::set<std::string, std::less<>> listed;
  for (const auto& r : rows) listed.insert(r.name);
  for (const auto& [id, t] : tls.all())
    if (!listed.contains(id)) rows.push_back({.name = id, .state = "idle"});
  std::ranges::sort(rows, {}, &destination_report::name);
  std::string out;
  for (const auto& r : rows) {
    const auto c = by_id.find(r.name);
    json::object o{
        {key::destination, r.name},
        {key::policy, r.policy},
        {key::state, r.state},
        {key::rate, r.rate},
        {key::queued, c == by_id.end() ? 0 : c->second.queued},
        {key::in_flight, c == by_id.end() ? 0 : c->second.in_flight},
        {key::connections, r.connections},
        {key::until, r.until_us >= suspended_until_resume ? std::int64_t{-1}
                                                          : unix_seconds(r.until_us)},
        {key::reason, r.reason},
        {key::last_reply, r.last_reply},
    };
    const tls_status* t = tls.find(r.name);
    o[key::tls_policy] = t ? t->policy : "";
    o[key::tls_outcome] = t ? t->outcome : "";
    o[key::tls_at] = t ? t->at : 0;
    out += json::serialize(o);
    out += '\n';
  }
  if (!out.empty() && !co_await write(out)) co_return std::string();
  co_return proto::ok_line({{key::entries, rows.size()}});
}

awaitable<std::string> suspend(control_context& ctx, const proto::request& req,
                               const line_writer&) {
  if (!ctx.sched) co_return proto::error_line("delivery is not running");
  std::string error;
  const auto name = ctx.sched->suspend(req.id, req.timeout_seconds * 1'000'000, error);
  if (name.empty()) co_return proto::error_line(error);
  spdlog::info("control: destination {} suspended {}", name,
               req.timeout_seconds ? "for " + std::to_string(req.timeout_seconds) + "s"
                                   : std::string("until resumed"));
  co_return proto::ok_line({{key::destination, name}});
}

awaitable<std::string> resume(control_context& ctx, const proto::request& req,
                              const line_writer&) {
  if (!ctx.sched) co_return proto::error_line("delivery is not running");
  std::string error;
  const auto name = ctx.sched->resume(req.id, error);
  if (name.empty()) co_return proto::error_line(error);
  // Its queued mail waited for the suspension's end: due now.
  std::vector<std::string> ids;
  co_await each_queued(ctx, [&](const queue::envelope_record& r,
                                const std::vector<destination_key>& keys) {
    for (const auto& k : keys)
      if (ctx.sched->group_name_of(k) == name) {
        ids.push_back(r.id);
        return;
      }
  });
  std::size_t n = 0;
  if (!ids.empty()) {
    auto [res, count] = co_await from_callback<void(queue::result, std::size_t)>(
        [&](auto done) { ctx.spool.reschedule(ids, queue::wall_clock_us(), std::move(done)); });
    if (res.code != queue::status::ok && res.code != queue::status::not_found)
      co_return proto::error_line("resumed, but the queue could not be rescheduled: " + res.detail);
    n = count;
  }
  ctx.sched->rescan(false);
  spdlog::info("control: destination {} resumed, {} message(s) due now", name, n);
  co_return proto::ok_line({{key::destination, name}, {key::count, n}});
}

constexpr std::array<control_command, 3> commands{{
    {proto::verb::destinations, destinations},
    {proto::verb::suspend, suspend},
    {proto::verb::resume, resume},
}};

}  // namespace

std::span<const control_command> control_destinations_commands() { return commands; }

}  // namespace relayd
