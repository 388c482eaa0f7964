// The tls_rpt_send command of the control socket (relayctl tls-rpt send DAY):
// has the TLS report service (tls_rpt_service.hpp) send the reports of one UTC
// day now and answers what it did, one line per policy domain, as "summary".
// A day that is not YYYY-MM-DD, or a daemon without [delivery] tls_rpt, gets
// an error line.
#include <array>
#include <boost/json.hpp>

#include "relayd/async_call.hpp"
#include "relayd/control_handlers.hpp"
#include "relayd/tls_rpt_service.hpp"

namespace relayd {
namespace proto = control_protocol;
namespace key = control_protocol::key;

namespace {

awaitable<std::string> tls_rpt_send(control_context& ctx, const proto::request& req,
                                    const line_writer&) {
  if (ctx.tls_reports == nullptr)
    co_return proto::error_line("TLS reporting is off ([delivery] tls_rpt = false)");
  const auto day = parse_day_name(req.id);
  if (!day) co_return proto::error_line("\"" + req.id + "\" is not a day (YYYY-MM-DD)");
  // The service is run_daemon()'s local and outlives every request.
  auto summary = co_await from_callback<void(std::string)>(
      [s = ctx.tls_reports, d = *day](auto done) { s->send(d, std::move(done)); });
  co_return proto::ok_line({{key::summary, summary}});
}

constexpr std::array<control_command, 1> commands{{{proto::verb::tls_rpt_send, tls_rpt_send}}};

}  // namespace

std::span<const control_command> control_tls_rpt_commands() {
  return commands;
}

}  // namespace relayd
