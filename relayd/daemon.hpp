// The relayd daemon: opens the spool, binds the listeners and the control
// socket, serves until SIGTERM/SIGINT, then stops gracefully (no new
// connections, transactions in flight finished, spool closed). Returns the
// process exit code; start-up failures are logged with their cause and give 1.
#pragma once

#include "relayd/config.hpp"

namespace relayd {

int run_daemon(const config& cfg);

}  // namespace relayd
