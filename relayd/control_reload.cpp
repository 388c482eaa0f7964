// The reload command of the control socket (relayctl reload): the same reload
// as SIGHUP (relayd/daemon_reload.hpp), answered with its outcome, so the
// operator sees at once whether the new file is in use.
#include <array>

#include "relayd/control_handlers.hpp"

namespace relayd {
namespace proto = control_protocol;
namespace key = control_protocol::key;

namespace {

awaitable<std::string> reload(control_context& ctx, const proto::request&, const line_writer&) {
  if (!ctx.reload) co_return proto::error_line("reload is not available yet");
  auto done = ctx.reload();
  if (!done) co_return proto::error_line(done.error());
  co_return proto::ok_line({{key::summary, *done}});
}

constexpr std::array<control_command, 1> commands{{{proto::verb::reload, reload}}};

}  // namespace

std::span<const control_command> control_reload_commands() { return commands; }

}  // namespace relayd
