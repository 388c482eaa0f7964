// The relayd daemon: opens the spool, binds the listeners and the control
// socket, serves until SIGTERM/SIGINT, then stops gracefully (no new
// connections, transactions in flight finished, spool closed). Returns the
// process exit code; start-up failures are logged with their cause and give 1.
// `cfg` is the daemon's running configuration: SIGHUP and `relayctl reload`
// read `config_path` again and swap it (relayd/daemon_reload.hpp).
#pragma once

#include <string>

#include "relayd/config.hpp"

namespace relayd {

int run_daemon(config cfg, const std::string& config_path);

}  // namespace relayd
