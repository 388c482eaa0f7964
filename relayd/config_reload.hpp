// What a configuration reload (SIGHUP, relayctl reload) installs, decided without
// I/O: the freshly read file, except the keys that only a restart can change
// (the listeners and sockets bound at start, the spool and what opens it, the
// user switched to, the DNS resolver and the OAuth2 token source built at
// start). Those keep their running values and are named, so the daemon can log
// that they need a restart. daemon_reload.cpp does the I/O around it.
#pragma once

#include <expected>
#include <string>
#include <vector>

#include "relayd/config.hpp"

namespace relayd {

struct reload_plan {
  config next;                              // what the daemon runs with from now on
  std::vector<std::string> restart_needed;  // changed keys that keep their running value
  std::vector<std::string> changed;         // sections whose new values take effect now
  bool retry_changed = false;               // queue.min_backoff or max_backoff changed
};

// `running`: the configuration in use; `fresh`: the file as just read. Fails
// (and nothing changes) when the new file cannot work with the listeners that
// stay open: smtp.submission or smtp.smtps without tls.cert, submission
// without auth.users.
std::expected<reload_plan, std::string> plan_reload(const config& running, config fresh);

}  // namespace relayd
