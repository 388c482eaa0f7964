// The aliases_reload command of the control socket (newaliases, relayctl
// aliases-reload): re-reads [local] aliases into the table new sessions take.
// A file that does not load is answered as an error and the daemon keeps the
// table it had; sessions already open keep theirs either way.
#include <spdlog/spdlog.h>

#include <array>
#include <boost/json.hpp>

#include "relayd/control_handlers.hpp"
#include "relayd/local_aliases.hpp"

namespace relayd {
namespace proto = control_protocol;
namespace key = control_protocol::key;

namespace {

awaitable<std::string> aliases_reload(control_context& ctx, const proto::request&,
                                      const line_writer&) {
  if (ctx.aliases == nullptr) co_return proto::error_line("aliases are not in use");
  auto loaded = ctx.aliases->load();
  if (!loaded) {
    spdlog::error("aliases reload: {} (the previous aliases stay in use)", loaded.error());
    co_return proto::error_line(loaded.error());
  }
  spdlog::info("aliases reload: {}", *loaded);
  co_return proto::ok_line({{key::aliases, ctx.aliases->current()->size()}});
}

constexpr std::array<control_command, 1> commands{{{proto::verb::aliases_reload, aliases_reload}}};

}  // namespace

std::span<const control_command> control_aliases_commands() { return commands; }

}  // namespace relayd
