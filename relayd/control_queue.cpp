// The queue commands of the control socket: list, shape, show, delete, flush,
// requeue, hold, release. Lists go through the spool in batches with short read
// transactions, so a huge queue never sits in memory at once; the actions go
// through act_on_selection (control_select.cpp). Both take a filter
// (queue_filter.hpp). A spool failure is answered as an error line.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <boost/json.hpp>

#include "queue/clock.hpp"
#include "relayd/async_call.hpp"
#include "relayd/control_handlers.hpp"
#include "relayd/delivery_route.hpp"
#include "relayd/delivery_scheduler.hpp"
#include "relayd/queue_filter.hpp"
#include "relayd/queue_shape.hpp"
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
// `sp`: where the object lives (list: a per-message arena, so a listing of
// 100,000 messages does not go through malloc for each field). `brief`: only
// what relayctl -p prints (the pending recipients' address, state, last reply
// and route). `sched` (when delivery runs): a pending recipient's destination,
// with the TLS policy and outcome of that destination's last session.
json::object message_json(const queue::envelope_record& r, const config& cfg,
                          const scheduler* sched, bool flying, json::storage_ptr sp = {},
                          bool brief = false) {
  bool deferred = false;
  json::array rcpts(sp);
  auto add_route = [&](json::object& o, const queue::recipient& rc) {
    if (!cfg.routes.empty())  // with [[route]]: which one (relayctl -p, -j)
      o[key::route] = route_name(cfg, route_for(cfg.routes, r.sender, rc.address));
  };
  for (const auto& rc : r.recipients) {
    if (waits_deferred(rc)) deferred = true;
    if (brief) {
      if (rc.state != queue::rcpt_state::pending) continue;
      json::object o({{key::address, rc.address},
                      {key::state, proto::state::pending},
                      {key::last_reply, rc.last_reply}},
                     sp);
      add_route(o, rc);
      rcpts.push_back(std::move(o));
      continue;
    }
    json::object o({
        {key::address, rc.address},
        {key::state, rcpt_state_name(rc.state)},
        {key::attempts, rc.attempts},
        {key::last_reply, rc.last_reply},
        {key::next_attempt, unix_seconds(std::max(rc.next_attempt_us, r.arrival_us))},
        {key::expires, unix_seconds(r.arrival_us) + cfg.queue.max_lifetime.count()},
    }, sp);
    add_route(o, rc);
    if (sched && rc.state == queue::rcpt_state::pending) {
      const std::string dest = sched->destination_of(r.sender, rc.address).id();
      if (const tls_status* t = sched->tls_status().find(dest)) {
        o[key::tls_policy] = t->policy;
        o[key::tls_outcome] = t->outcome;
      }
      o[key::destination] = dest;
    }
    add_outcome_facts(o, rc);
    if (rc.notify != 0) o[key::notify] = notify_json(rc.notify);
    if (!rc.orcpt.empty()) o[key::orcpt] = rc.orcpt;
    rcpts.push_back(std::move(o));
  }
  const std::string_view state = (r.flags & queue::flag_held) ? proto::state::held
                                 : deferred                   ? proto::state::deferred
                                                              : proto::state::active;
  json::object m({
      {key::id, r.id},
      {key::state, state},
      {key::size, r.size},
      {key::arrival, unix_seconds(r.arrival_us)},
      {key::sender, r.sender},
      {key::in_flight, flying},
      {key::recipients, std::move(rcpts)},
  }, sp);
  if (brief) return m;
  if (r.ret != smtp::dsn_ret::unspecified)
    m[key::ret] = r.ret == smtp::dsn_ret::full ? "full" : "hdrs";
  if (!r.envid.empty()) m[key::envid] = r.envid;
  if (r.local) m[key::submitter] = submitter_json(*r.local);
  return m;
}

awaitable<std::string> list(control_context& ctx, const proto::request& req,
                            const line_writer& write) {
  const queue_matcher match(req.filter, queue::wall_clock_us());
  std::string after, out;
  std::uint64_t count = 0, bytes = 0;
  json::serializer text;
  for (;;) {
    out.clear();
    std::size_t visited = 0;
    after = ctx.spool.scan(after, list_batch, [&](const queue::envelope_record& r) {
      ++visited;
      if (!match.matches(r)) return;
      ++count;
      bytes += r.size;
      unsigned char arena[8192];
      json::monotonic_resource mr(arena, sizeof arena);
      const json::object m =
          message_json(r, ctx.cfg, ctx.sched, in_flight(ctx, r.id), &mr, req.brief);
      text.reset(&m);
      while (!text.done()) {
        char chunk[4096];
        out += text.read(chunk, sizeof chunk);
      }
      out += '\n';
    });
    if (visited == 0) break;
    if (!co_await send_batch(ctx, write, out)) co_return std::string();
    if (visited < list_batch) break;
  }
  co_return proto::ok_line({{key::messages, count}, {key::bytes, bytes}});
}

awaitable<std::string> show(control_context& ctx, const proto::request& req, const line_writer&) {
  auto rec = ctx.spool.get(req.id);
  auto body = rec ? ctx.spool.body(req.id) : std::nullopt;
  if (!rec || !body) co_return proto::error_line(req.id + ": no such message");
  auto m = message_json(*rec, ctx.cfg, ctx.sched, in_flight(ctx, rec->id));
  m[key::client_ip] = rec->client_ip;
  m[key::helo] = rec->helo;
  co_return proto::ok_line({{key::message, std::move(m)}, {key::content_length, body->size()}}) +
      *body;
}

// The answer to a bulk action: a count, which IDs were not found, or the failure.
std::string counted_reply(const selection_outcome& out, const proto::request& req,
                          std::string_view count_key, std::string_view what) {
  const bool named = req.which && !req.which->all;
  if (named && out.exists == 0)
    return proto::error_line(req.which->ids.size() == 1 ? req.which->ids[0] + ": no such message"
                                                        : std::string("none of these messages exists"));
  if (out.res.code != queue::status::ok && out.res.code != queue::status::not_found)
    return proto::error_line(fmt::format("{} failed: {}", what, out.res.detail));
  return proto::ok_line({{count_key, out.count}});
}

awaitable<std::string> remove(control_context& ctx, const proto::request& req, const line_writer&) {
  auto out = co_await act_on_selection(ctx, req, bulk_action::remove);
  if (out.count != 0) spdlog::info("control: deleted {} message(s)", out.count);
  co_return counted_reply(out, req, key::deleted, "delete");
}

// flush (every message the filter matches), requeue, hold, release.
awaitable<std::string> reschedule(control_context& ctx, const proto::request& req,
                                  const line_writer&) {
  const std::string_view what = req.verb;
  const bulk_action a = what == verb::hold      ? bulk_action::hold
                        : what == verb::release ? bulk_action::release
                        : what == verb::flush   ? bulk_action::flush
                                                : bulk_action::requeue;
  auto out = co_await act_on_selection(ctx, req, a);
  spdlog::info("control: {} {} message(s)", what, out.count);
  if (out.count != 0 && ctx.sched && a != bulk_action::hold) ctx.sched->rescan(a == bulk_action::flush);
  co_return counted_reply(out, req, key::count, what);
}

// relayctl -p --shape: domain x age counts of the matching messages.
awaitable<std::string> shape(control_context& ctx, const proto::request& req, const line_writer&) {
  const std::int64_t now = queue::wall_clock_us();
  const queue_matcher match(req.filter, now);
  queue_shape table(now);
  std::uint64_t count = 0;
  std::string after;
  for (;;) {
    std::size_t visited = 0;
    after = ctx.spool.scan(after, list_batch, [&](const queue::envelope_record& r) {
      ++visited;
      if (!match.matches(r)) return;
      ++count;
      table.add(r);
    });
    if (visited < list_batch) break;
    co_await asio::post(ctx.io.get_executor(), asio::use_awaitable);
  }
  auto counts_json = [](const queue_shape::counts& c) {
    json::array a;
    for (auto n : c) a.emplace_back(n);
    return a;
  };
  json::array domains;
  for (const auto& row : table.top(req.top))
    domains.push_back(json::object{{key::domain, row.domain}, {key::counts, counts_json(row.by_age)}});
  co_return proto::ok_line({{key::messages, count},
                            {key::total, counts_json(table.total())},
                            {key::domains, std::move(domains)},
                            {key::domain_count, table.domain_count()}});
}

constexpr std::array<control_command, 8> commands{{
    {verb::list, list},
    {verb::shape, shape},
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
