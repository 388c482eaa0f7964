// What a control command handler sees (internal to control_*.cpp): the daemon
// objects it may use, a way to stream lines ahead of the final reply, and the
// verb -> handler rows each command family contributes to the server's table.
// Handlers never throw for a bad request: they answer control_protocol::error_line().
#pragma once

#include <expected>
#include <functional>
#include <span>
#include <string>
#include <string_view>

#include "queue/spool.hpp"
#include "relayd/config.hpp"
#include "relayd/control_protocol.hpp"
#include "relayd/control_wait_registry.hpp"
#include "relayd/net.hpp"

namespace relayd {

class scheduler;
class alias_source;
class dkim_dns_monitor;
class tls_rpt_service;

struct control_context {
  asio::io_context& io;
  const config& cfg;
  queue::spool& spool;
  scheduler* sched;  // null until set_scheduler(): no wake-ups, nothing "in flight"
  // Outcomes for "wait", fed by the scheduler's observer (set_scheduler()).
  wait_registry waits{};
  alias_source* aliases = nullptr;  // null until set_aliases(): aliases_reload fails
  dkim_dns_monitor* dkim = nullptr;  // null until set_dkim_monitor(): dkim_check fails
  tls_rpt_service* tls_reports = nullptr;  // null without [delivery] tls_rpt: tls_rpt_send fails
  // The daemon's reload (daemon_reload.hpp); empty until set_reloader(): reload fails.
  std::function<std::expected<std::string, std::string>()> reload;
};

// Writes lines to the client ahead of the final reply; false once it has gone.
using line_writer = std::function<awaitable<bool>(std::string_view)>;

// The final reply (one line, for show also the raw content); "" when the client
// went away while lines were streamed.
using control_handler = awaitable<std::string> (*)(control_context&,
                                                    const control_protocol::request&,
                                                    const line_writer&);

struct control_command {
  std::string_view verb;  // a control_protocol::verb
  control_handler run;
};

// Each command family's rows (control_queue.cpp, control_dead.cpp, control_stats.cpp,
// control_wait.cpp).
std::span<const control_command> control_queue_commands();
std::span<const control_command> control_dead_commands();
std::span<const control_command> control_stats_commands();
std::span<const control_command> control_wait_commands();
std::span<const control_command> control_aliases_commands();
std::span<const control_command> control_dkim_commands();
std::span<const control_command> control_reload_commands();

// The bulk actions (control_select.cpp): what a request names (its IDs or every
// message, narrowed by its filter), changed in batches, each changed message
// logged as "ID: removed by relayctl (uid N)" and the like.
enum class bulk_action { remove, hold, release, requeue, flush, dead_replay, dead_purge };
struct selection_outcome {
  queue::result res;       // ok, or the failure that ended the pass
  std::size_t count = 0;   // messages (entries) changed
  std::size_t found = 0;   // messages that matched (changed or not)
  std::size_t exists = 0;  // named IDs that exist (filter or not); 0 without IDs
};
awaitable<selection_outcome> act_on_selection(control_context& ctx,
                                              const control_protocol::request& req,
                                              bulk_action a);

// A listing's batch of lines: written (false once the client has gone), or,
// when the filter matched nothing in it, a turn of the I/O thread for others.
awaitable<bool> send_batch(control_context& ctx, const line_writer& write, const std::string& lines);

std::span<const control_command> control_destinations_commands();
std::span<const control_command> control_report_commands();  // control_report.cpp
std::span<const control_command> control_tls_rpt_commands();

// Shared by the families: a Unix time in seconds, "1 entry" / "2 entries".
inline std::int64_t unix_seconds(std::int64_t us) { return us / 1'000'000; }
std::string entries_text(std::size_t n);
// A recipient's last outcome as typed facts (record version 3): cause,
// in_reply_to and reply_text, added to `o`; nothing for older records, whose
// last_reply sentence is all there is.
void add_outcome_facts(boost::json::object& o, const queue::recipient& rc);

}  // namespace relayd
