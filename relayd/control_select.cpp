// The control socket's bulk actions (delete, hold, release, requeue, flush, dead
// replay and purge) over what a request names: its IDs or every message, narrowed
// by its filter (queue_filter.hpp). The queue is read in batches with short read
// transactions; each batch's matching IDs go to the spool as one awaited write,
// so a pass over a huge queue holds a bounded number of IDs and never stalls
// enqueues. Every message the action changed is logged on a line of its own
// ("ID: removed by relayctl (uid 0)"), as postsuper does. A spool failure ends
// the pass; what was done before it stays done and logged. Also send_batch(),
// which the filtered listings use so a batch that matched nothing still yields.
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "queue/clock.hpp"
#include "relayd/async_call.hpp"
#include "relayd/control_handlers.hpp"

namespace relayd {
namespace {

constexpr std::size_t select_batch = 1000;

bool dead_kind(bulk_action a) { return a == bulk_action::dead_replay || a == bulk_action::dead_purge; }

bool has_pending(const queue::envelope_record& r) {
  for (const auto& rc : r.recipients)
    if (rc.state == queue::rcpt_state::pending) return true;
  return false;
}

// Whether the action would change this record (a hold of a held message does not).
bool changes(bulk_action a, const queue::envelope_record& r) {
  const bool held = (r.flags & queue::flag_held) != 0;
  switch (a) {
    case bulk_action::hold: return !held;
    case bulk_action::release: return held;
    case bulk_action::requeue:
    case bulk_action::flush: return !held && has_pending(r);
    default: return true;
  }
}

// After a write that changed fewer messages than it was given: whether `id`
// now shows the action's effect (the others changed state in between).
bool took_effect(const control_context& ctx, bulk_action a, const std::string& id) {
  if (dead_kind(a)) return !ctx.spool.get_dead(id);
  auto r = ctx.spool.get(id);
  if (a == bulk_action::remove) return !r;
  if (!r) return false;
  const bool held = (r->flags & queue::flag_held) != 0;
  return a == bulk_action::hold ? held : !held;
}

std::string_view done_text(bulk_action a) {
  switch (a) {
    case bulk_action::remove: return "removed";
    case bulk_action::hold: return "placed on hold";
    case bulk_action::release: return "released from hold";
    case bulk_action::requeue: return "requeued";
    case bulk_action::flush: return "flushed";
    case bulk_action::dead_replay: return "replayed from the dead spool";
    case bulk_action::dead_purge: return "purged from the dead spool";
  }
  return "changed";
}

// One write of the action over `ids` (all named explicitly).
awaitable<std::pair<queue::result, std::size_t>> write(control_context& ctx, bulk_action a,
                                                       std::vector<std::string> ids) {
  auto [res, n] = co_await from_callback<void(queue::result, std::size_t)>([&](auto done) {
    auto& s = ctx.spool;
    switch (a) {
      case bulk_action::remove: s.remove(std::move(ids), std::move(done)); break;
      case bulk_action::hold: s.set_held(std::move(ids), true, std::move(done)); break;
      case bulk_action::release: s.set_held(std::move(ids), false, std::move(done)); break;
      case bulk_action::requeue:
      case bulk_action::flush:
        s.reschedule(std::move(ids), queue::wall_clock_us(), std::move(done));
        break;
      case bulk_action::dead_replay:
        s.replay_dead(std::move(ids), queue::wall_clock_us(), std::move(done));
        break;
      case bulk_action::dead_purge: s.purge_dead(std::move(ids), std::move(done)); break;
    }
  });
  co_return std::pair{std::move(res), n};
}

}  // namespace

awaitable<bool> send_batch(control_context& ctx, const line_writer& write, const std::string& lines) {
  if (!lines.empty()) co_return co_await write(lines);
  co_await asio::post(ctx.io.get_executor(), asio::use_awaitable);
  co_return true;
}

awaitable<selection_outcome> act_on_selection(control_context& ctx,
                                              const control_protocol::request& req,
                                              bulk_action a) {
  const bool dead = dead_kind(a);
  const control_protocol::targets which =
      req.which ? *req.which : control_protocol::targets{true, {}};
  const queue_matcher match(req.filter, queue::wall_clock_us());
  const std::string who =
      req.peer_uid >= 0 ? fmt::format(" by relayctl (uid {})", req.peer_uid) : " by relayctl";
  selection_outcome out;
  std::optional<queue::result> failed;  // the first failure (a replay pass goes on past it)

  // Applies the action to a batch and logs each message it changed.
  auto apply = [&](std::vector<std::string> ids) -> awaitable<bool> {
    if (ids.empty()) co_return true;
    auto [res, n] = co_await write(ctx, a, ids);
    const bool ok = res.code == queue::status::ok || res.code == queue::status::not_found;
    const bool all_done = ok && n == ids.size();
    for (const auto& id : ids)
      if (all_done || took_effect(ctx, a, id)) {
        spdlog::info("{}: {}{}", id, done_text(a), who);
        ++out.count;
      }
    if (ok) co_return true;
    if (a == bulk_action::dead_replay && which.all) {
      // Entries that cannot be replayed stay dead; the others are replayed.
      spdlog::warn("control: dead replay: {}", res.detail);
      co_return true;
    }
    failed = std::move(res);
    co_return false;
  };

  if (which.all) {
    std::string after;
    for (;;) {
      std::vector<std::string> ids;
      std::size_t visited = 0;
      auto visit = [&](const queue::envelope_record& r) {
        ++visited;
        if (!match.matches(r, dead)) return;
        ++out.found;
        if (changes(a, r)) ids.push_back(r.id);
      };
      after = dead ? ctx.spool.scan_dead(after, select_batch, visit)
                   : ctx.spool.scan(after, select_batch, visit);
      if (visited < select_batch) {
        co_await apply(std::move(ids));
        break;
      }
      // Other connections and sessions get the I/O thread between two batches.
      if (ids.empty()) co_await asio::post(ctx.io.get_executor(), asio::use_awaitable);
      if (!co_await apply(std::move(ids))) break;
    }
  } else {
    std::vector<std::string> ids;
    for (const auto& id : which.ids) {
      auto r = dead ? ctx.spool.get_dead(id) : ctx.spool.get(id);
      if (!r) continue;
      ++out.exists;
      if (!match.matches(*r, dead)) continue;
      ++out.found;
      if (changes(a, *r)) ids.push_back(id);
      if (ids.size() == select_batch && !co_await apply(std::exchange(ids, {}))) break;
    }
    if (!failed) co_await apply(std::move(ids));
  }
  if (failed) out.res = std::move(*failed);
  co_return out;
}

}  // namespace relayd
