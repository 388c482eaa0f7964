// The queue commands of the control socket: list, show, delete, flush, requeue,
// hold, release. Lists go through the spool in batches with short read
// transactions, so a huge queue never sits in memory at once; writes are awaited
// through from_callback. A spool failure is answered as an error line.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <boost/json.hpp>

#include "queue/clock.hpp"
#include "relayd/async_call.hpp"
#include "relayd/control_handlers.hpp"
#include "relayd/delivery_route.hpp"
#include "relayd/delivery_scheduler.hpp"
#include "relayd/metrics.hpp"

namespace relayd {
namespace json = boost::json;
namespace proto = control_protocol;
namespace key = control_protocol::key;
namespace verb = control_protocol::verb;

namespace {

constexpr std::size_t list_batch = 1000;

std::string_view rcpt_state_name(queue::rcpt_state s) {
  switch (s) {
    case queue::rcpt_state::pending: return proto::state::pending;
    case queue::rcpt_state::delivered: return proto::state::delivered;
    case queue::rcpt_state::failed: return proto::state::failed;
  }
  return "unknown";
}

bool in_flight(const control_context& ctx, const std::string& id) {
  return ctx.sched && ctx.sched->in_flight(id);
}

// NOTIFY= as the words of RFC 3461, in its order.
json::array notify_json(std::uint8_t bits) {
  json::array out;
  if (bits & smtp::notify_never) out.emplace_back("never");
  if (bits & smtp::notify_success) out.emplace_back("success");
  if (bits & smtp::notify_failure) out.emplace_back("failure");
  if (bits & smtp::notify_delay) out.emplace_back("delay");
  return out;
}

json::object submitter_json(const smtp::local_identity& who) {
  return json::object{
      {key::uid, who.uid},   {key::gid, who.gid},
      {key::pid, who.pid},   {key::user, who.user},
      {key::executable, who.executable},
      {key::unit, who.unit},
  };
}

// The message as relayctl -j prints it (DESIGN.md, relayctl). The DSN
// parameters and the submitter appear only when the record has them.
json::object message_json(const queue::envelope_record& r, const config& cfg, bool flying) {
  bool deferred = false;
  json::array rcpts;
  for (const auto& rc : r.recipients) {
    if (waits_deferred(rc)) deferred = true;
    json::object o{
        {key::address, rc.address},
        {key::state, rcpt_state_name(rc.state)},
        {key::attempts, rc.attempts},
        {key::last_reply, rc.last_reply},
        {key::next_attempt, unix_seconds(std::max(rc.next_attempt_us, r.arrival_us))},
        {key::expires, unix_seconds(r.arrival_us) + cfg.queue.max_lifetime.count()},
    };
    if (!cfg.routes.empty())  // with [[route]]: which one (relayctl -p, -j)
      o[key::route] = route_name(cfg, route_for(cfg.routes, r.sender, rc.address));
    add_outcome_facts(o, rc);
    if (rc.notify != 0) o[key::notify] = notify_json(rc.notify);
    if (!rc.orcpt.empty()) o[key::orcpt] = rc.orcpt;
    rcpts.push_back(std::move(o));
  }
  const std::string_view state = (r.flags & queue::flag_held) ? proto::state::held
                                 : deferred                   ? proto::state::deferred
                                                              : proto::state::active;
  json::object m{
      {key::id, r.id},
      {key::state, state},
      {key::size, r.size},
      {key::arrival, unix_seconds(r.arrival_us)},
      {key::sender, r.sender},
      {key::in_flight, flying},
      {key::recipients, std::move(rcpts)},
  };
  if (r.ret != smtp::dsn_ret::unspecified)
    m[key::ret] = r.ret == smtp::dsn_ret::full ? "full" : "hdrs";
  if (!r.envid.empty()) m[key::envid] = r.envid;
  if (r.local) m[key::submitter] = submitter_json(*r.local);
  return m;
}

awaitable<std::string> list(control_context& ctx, const proto::request&, const line_writer& write) {
  std::string after, out;
  std::uint64_t count = 0, bytes = 0;
  for (;;) {
    out.clear();
    std::size_t visited = 0;
    after = ctx.spool.scan(after, list_batch, [&](const queue::envelope_record& r) {
      ++visited;
      ++count;
      bytes += r.size;
      out += json::serialize(message_json(r, ctx.cfg, in_flight(ctx, r.id)));
      out += '\n';
    });
    if (visited == 0) break;
    if (!co_await write(out)) co_return std::string();
    if (visited < list_batch) break;
  }
  co_return proto::ok_line({{key::messages, count}, {key::bytes, bytes}});
}

awaitable<std::string> show(control_context& ctx, const proto::request& req, const line_writer&) {
  auto rec = ctx.spool.get(req.id);
  auto body = rec ? ctx.spool.body(req.id) : std::nullopt;
  if (!rec || !body) co_return proto::error_line(req.id + ": no such message");
  auto m = message_json(*rec, ctx.cfg, in_flight(ctx, rec->id));
  m[key::client_ip] = rec->client_ip;
  m[key::helo] = rec->helo;
  co_return proto::ok_line({{key::message, std::move(m)}, {key::content_length, body->size()}}) +
      *body;
}

// The answer to a write over `which`: a count, or which IDs were not found.
std::string counted_reply(const queue::result& res, std::size_t n, const proto::targets& which,
                          std::string_view count_key, std::string_view what) {
  if (res.code == queue::status::ok || (which.all && res.code == queue::status::not_found))
    return proto::ok_line({{count_key, n}});
  if (res.code == queue::status::not_found)
    return proto::error_line(which.ids.size() == 1 ? which.ids[0] + ": no such message"
                                                   : std::string("none of these messages exists"));
  return proto::error_line(fmt::format("{} failed: {}", what, res.detail));
}

awaitable<std::string> remove(control_context& ctx, const proto::request& req, const line_writer&) {
  const proto::targets& which = *req.which;
  auto [res, n] = co_await from_callback<void(queue::result, std::size_t)>(
      [&](auto done) { ctx.spool.remove(which.ids, std::move(done)); });
  if (res.code == queue::status::ok || (which.all && res.code == queue::status::not_found))
    spdlog::info("control: deleted {} message(s)", n);
  co_return counted_reply(res, n, which, key::deleted, "delete");
}

// flush (every message), requeue, hold, release.
awaitable<std::string> reschedule(control_context& ctx, const proto::request& req,
                                  const line_writer&) {
  const proto::targets which = req.which ? *req.which : proto::targets{true, {}};
  const std::string_view what = req.verb;
  const bool hold = what == verb::hold;
  auto [res, n] = co_await from_callback<void(queue::result, std::size_t)>([&](auto done) {
    if (hold || what == verb::release)
      ctx.spool.set_held(which.ids, hold, std::move(done));
    else
      ctx.spool.reschedule(which.ids, queue::wall_clock_us(), std::move(done));
  });
  if (res.code == queue::status::ok || (which.all && res.code == queue::status::not_found)) {
    spdlog::info("control: {} {} message(s)", what, n);
    if (ctx.sched && !hold) ctx.sched->rescan(what == verb::flush);
  }
  co_return counted_reply(res, n, which, key::count, what);
}

constexpr std::array<control_command, 7> commands{{
    {verb::list, list},
    {verb::show, show},
    {verb::remove, remove},
    {verb::flush, reschedule},
    {verb::requeue, reschedule},
    {verb::hold, reschedule},
    {verb::release, reschedule},
}};

}  // namespace

std::span<const control_command> control_queue_commands() { return commands; }

}  // namespace relayd
