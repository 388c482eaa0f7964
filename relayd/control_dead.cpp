// The dead-spool commands of the control socket: dead_list, dead_show,
// dead_replay, dead_purge. Listing goes through the dead spool in batches with
// short read transactions; replay and purge are awaited spool writes, and a
// replay wakes the scheduler. A spool failure is answered as an error line.
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <array>
#include <boost/json.hpp>

#include "queue/clock.hpp"
#include "relayd/async_call.hpp"
#include "relayd/control_handlers.hpp"
#include "relayd/delivery_scheduler.hpp"
#include "relayd/queue_filter.hpp"

namespace relayd {
namespace json = boost::json;
namespace proto = control_protocol;
namespace key = control_protocol::key;
namespace verb = control_protocol::verb;

void add_outcome_facts(json::object& o, const queue::recipient& rc) {
  if (rc.cause == queue::outcome_cause::unknown) return;
  o[key::cause] = queue::to_string(rc.cause);
  if (rc.in_reply_to != queue::smtp_command::none) o[key::in_reply_to] = queue::to_string(rc.in_reply_to);
  if (!rc.reply_text.empty()) o[key::reply_text] = rc.reply_text;
}

std::string entries_text(std::size_t n) {
  return fmt::format("{} entr{}", n, n == 1 ? "y" : "ies");
}

namespace {

constexpr std::size_t list_batch = 1000;

// A dead-spool entry as relayctl dead list --json prints it (control_protocol.hpp):
// its failed recipients only (entries of earlier versions also kept delivered ones).
json::object dead_json(const queue::envelope_record& r) {
  json::array rcpts;
  for (const auto& rc : r.recipients) {
    if (rc.state != queue::rcpt_state::failed) continue;
    json::object o{
        {key::address, rc.address},
        {key::reason, rc.reason.empty() ? std::string("unknown") : rc.reason},
        {key::reply_code, rc.reply_code},
        {key::status, rc.status},
        {key::last_reply, rc.last_reply},
        {key::remote_host, rc.remote_host},
        {key::attempts, rc.attempts},
        {key::first_attempt, unix_seconds(rc.first_attempt_us)},
        {key::last_attempt, unix_seconds(rc.last_attempt_us)},
    };
    add_outcome_facts(o, rc);
    rcpts.push_back(std::move(o));
  }
  return json::object{
      {key::id, r.id},
      {key::size, r.size},
      {key::arrival, unix_seconds(r.arrival_us)},
      {key::sender, r.sender},
      {key::failed_at, unix_seconds(queue::failed_at(r))},
      {key::recipients, std::move(rcpts)},
  };
}

awaitable<std::string> dead_list(control_context& ctx, const proto::request& req,
                                 const line_writer& write) {
  const queue_matcher match(req.filter, queue::wall_clock_us());
  std::string after, out;
  std::uint64_t count = 0, bytes = 0;
  for (;;) {
    out.clear();
    std::size_t visited = 0;
    after = ctx.spool.scan_dead(after, list_batch, [&](const queue::envelope_record& r) {
      ++visited;
      if (!match.matches(r, true)) return;
      ++count;
      bytes += r.size;
      out += json::serialize(dead_json(r));
      out += '\n';
    });
    if (visited < list_batch) {
      if (!out.empty() && !co_await write(out)) co_return std::string();
      break;
    }
    if (!co_await send_batch(ctx, write, out)) co_return std::string();
  }
  co_return proto::ok_line({{key::entries, count}, {key::bytes, bytes}});
}

awaitable<std::string> dead_show(control_context& ctx, const proto::request& req,
                                 const line_writer&) {
  auto rec = ctx.spool.get_dead(req.id);
  auto body = rec ? ctx.spool.dead_body(req.id) : std::nullopt;
  if (!rec || !body) co_return proto::error_line(req.id + ": no such dead-spool entry");
  auto e = dead_json(*rec);
  e[key::client_ip] = rec->client_ip;
  e[key::helo] = rec->helo;
  co_return proto::ok_line({{key::entry, std::move(e)}, {key::content_length, body->size()}}) +
      *body;
}

// dead_replay / dead_purge.
awaitable<std::string> dead_action(control_context& ctx, const proto::request& req,
                                   const line_writer&) {
  const bool replay = req.verb == verb::dead_replay;
  auto out = co_await act_on_selection(ctx, req,
                                       replay ? bulk_action::dead_replay : bulk_action::dead_purge);
  const bool named = req.which && !req.which->all;
  if (named && out.exists == 0)
    co_return proto::error_line(req.which->ids.size() == 1
                                    ? req.which->ids[0] + ": no such dead-spool entry"
                                    : std::string("none of these dead-spool entries exists"));
  if (out.count != 0)
    spdlog::info("control: {} {} of the dead spool", replay ? "replayed" : "purged",
                 entries_text(out.count));
  // The scheduler may be asleep until a later due time: these are due now.
  if (replay && out.count != 0 && ctx.sched) ctx.sched->rescan(false);
  if (out.res.code != queue::status::ok && out.res.code != queue::status::not_found)
    co_return proto::error_line(
        fmt::format("{} failed: {}", replay ? "replay" : "purge", out.res.detail));
  co_return proto::ok_line({{key::count, out.count}});
}

constexpr std::array<control_command, 4> commands{{
    {verb::dead_list, dead_list},
    {verb::dead_show, dead_show},
    {verb::dead_replay, dead_action},
    {verb::dead_purge, dead_action},
}};

}  // namespace

std::span<const control_command> control_dead_commands() { return commands; }

}  // namespace relayd
