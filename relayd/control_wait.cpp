// The control socket's "wait" command (sendmail --wait): answers once every
// recipient of a message is final, or when the request's timeout passes, or
// when relayd stops, with each recipient's state and last reply. Final outcomes
// come from the wait_registry (a delivered message has left the spool); while
// the message waits its truth is the spool record. The handler's timer is
// woken by the registry and also fires every few seconds, so a message deleted
// by relayctl -d ends the wait too. An unknown ID is an error reply.
#include <algorithm>
#include <array>
#include <boost/asio/steady_timer.hpp>
#include <boost/json.hpp>
#include <chrono>

#include "relayd/control_handlers.hpp"
#include "relayd/delivery_scheduler.hpp"

namespace relayd {
namespace {
namespace proto = control_protocol;
namespace key = proto::key;
namespace json = boost::json;
using std::chrono::steady_clock;

constexpr std::int64_t default_timeout_s = 300;
constexpr std::int64_t max_timeout_s = 7 * 86400;
constexpr auto recheck = std::chrono::seconds(5);

std::string_view state_name(const queue::recipient& rc, bool held) {
  switch (rc.state) {
    case queue::rcpt_state::delivered: return proto::state::delivered;
    case queue::rcpt_state::failed: return proto::state::failed;
    case queue::rcpt_state::pending: break;
  }
  if (held) return proto::state::held;
  return rc.attempts > 0 ? proto::state::deferred : proto::state::pending;
}

std::string answer(const std::string& id, std::span<const queue::recipient> rcpts, bool final,
                   bool held) {
  json::array list;
  for (const auto& rc : rcpts)
    list.push_back(json::object{{key::address, rc.address},
                                {key::state, state_name(rc, held)},
                                {key::last_reply, rc.last_reply}});
  return proto::ok_line({{key::id, id}, {key::final, final}, {key::recipients, std::move(list)}});
}

awaitable<std::string> wait_for(control_context& ctx, const proto::request& req,
                                const line_writer&) {
  const std::int64_t seconds =
      std::clamp(req.timeout_seconds ? req.timeout_seconds : default_timeout_s, std::int64_t{1},
                 max_timeout_s);
  const auto deadline = steady_clock::now() + std::chrono::seconds(seconds);
  // The timer lives in this frame; the registry holds a way to cancel it only
  // between watch() and the guard's unwatch(), both in this frame.
  asio::steady_timer timer(ctx.io);
  struct unwatch_on_exit {
    wait_registry& waits;
    std::uint64_t token;
    ~unwatch_on_exit() { waits.unwatch(token); }
  } guard{ctx.waits, ctx.waits.watch(req.id, [&timer] { timer.cancel(); })};

  for (;;) {
    if (const auto* done = ctx.waits.finished(req.id)) co_return answer(req.id, *done, true, false);
    auto live = ctx.spool.get(req.id);
    if (live) {
      if (ctx.waits.stopping() || steady_clock::now() >= deadline)
        co_return answer(req.id, live->recipients, false, (live->flags & queue::flag_held) != 0);
    } else if (!(ctx.sched && ctx.sched->in_flight(req.id))) {
      // Not queued, and no result about to be recorded: failed long ago (the
      // dead spool has it) or unknown.
      if (auto dead = ctx.spool.get_dead(req.id))
        co_return answer(req.id, dead->recipients, true, false);
      co_return proto::error_line("no message " + req.id +
                                  " in the queue (unknown, deleted, or finished too long ago)");
    } else if (ctx.waits.stopping()) {
      co_return proto::error_line("relayd is stopping");
    }
    // Removed from the spool but its result not yet recorded: the registry
    // hears of it in a moment (the spool's completion is on its way).
    const auto now = steady_clock::now();
    timer.expires_at(deadline > now ? std::min(deadline, now + recheck)
                                    : now + std::chrono::milliseconds(50));
    co_await timer.async_wait(use_tuple);
  }
}

constexpr std::array<control_command, 1> commands{{
    {proto::verb::wait, &wait_for},
}};

}  // namespace

std::span<const control_command> control_wait_commands() { return commands; }

}  // namespace relayd
