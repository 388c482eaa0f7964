// A configuration reload (SIGHUP, relayctl reload), on the I/O thread: reads the
// file again, checks everything it names (TLS certificate, AUTH users, aliases,
// DKIM keys, route password files), and only when all of it loads swaps the
// daemon's configuration and tells the parts that keep derived state (the
// scheduler, the delivery agent, the listeners, the aliases, the DKIM signer,
// the log level). A bad file changes nothing: the running configuration stays,
// the reason is logged ("FILE:LINE:..." for a syntax error, "FILE: KEY: ..."
// otherwise) and relayd_config_last_reload_successful drops to 0. Keys only a
// restart can change (config_reload.hpp) keep their running values and are
// logged as needing a restart.
//
// Atomicity: every reader of the configuration runs on the I/O thread (the
// other threads get immutable shared_ptr snapshots: the DKIM keys, the AUTH
// users), and the swap is one assignment there, between two coroutine steps:
// no handler sees half of the old file and half of the new one.
#pragma once

#include <expected>
#include <string>
#include <string_view>

#include "relayd/config.hpp"

namespace relayd {

class scheduler;
class delivery_agent;
class inbound_listener;
class alias_source;
class dkim_service;
class metrics;

struct reload_targets {
  config& live;  // run_daemon's configuration, read by reference everywhere
  const std::string& path;
  scheduler& sched;
  delivery_agent& agent;
  inbound_listener& server;
  alias_source& aliases;
  dkim_service& dkim;
  metrics& registry;
};

// Success: a one-line summary (also logged), which may name keys that need a
// restart. Failure: why; nothing changed.
std::expected<std::string, std::string> reload_config(reload_targets& t, std::string_view trigger);

}  // namespace relayd
