// The dkim_check command of the control socket (relayctl dkim check): runs a
// DNS round of every [[dkim]] selector with the daemon's resolver now
// (dkim_dns_monitor), then answers one JSON line per entry (domain, selector,
// key, record, state, reason, dns_match) and {"ok":true,"entries":N}. The
// round also updates the metric and what require_dns sees. No [[dkim]] entry:
// zero lines; a monitor that was never set: an error line.
#include <array>
#include <boost/json.hpp>

#include "relayd/async_call.hpp"
#include "relayd/control_handlers.hpp"
#include "relayd/dkim_dns_monitor.hpp"

namespace relayd {
namespace proto = control_protocol;
namespace key = control_protocol::key;

namespace {

awaitable<std::string> dkim_check(control_context& ctx, const proto::request&,
                                  const line_writer& write_lines) {
  if (ctx.dkim == nullptr) co_return proto::error_line("DKIM checks are not available");
  // The monitor is run_daemon()'s local and outlives every request (see daemon.cpp).
  auto statuses = co_await from_callback<void(std::vector<dkim_dns_status>)>(
      [m = ctx.dkim](auto done) { m->check_now(std::move(done)); });
  std::string lines;
  for (const auto& s : statuses) {
    std::string record = dkim::record_name(s.entry.domain, s.entry.selector);
    record.pop_back();
    boost::json::object o{{key::domain, s.entry.domain},
                          {key::selector, s.entry.selector},
                          {key::key_file, s.entry.key},
                          {key::record, record},
                          {key::state, dkim::to_string(s.result.state)},
                          {key::reason, s.result.reason},
                          {key::dns_match, s.match}};
    lines += boost::json::serialize(o);
    lines += '\n';
  }
  if (!lines.empty() && !co_await write_lines(lines)) co_return std::string();
  co_return proto::ok_line({{key::entries, statuses.size()}});
}

constexpr std::array<control_command, 1> commands{{{proto::verb::dkim_check, dkim_check}}};

}  // namespace

std::span<const control_command> control_dkim_commands() {
  return commands;
}

}  // namespace relayd
