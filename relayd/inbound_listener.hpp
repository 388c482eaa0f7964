// The inbound SMTP listeners ([smtp] listen, submission, smtps, and the
// [local] socket for local submission, removed again at stop): binds them,
// accepts, applies the connection limits (a refused client gets one 421 and is
// closed), starts a session per connection, reloads the TLS certificate and
// the AUTH users on SIGHUP for new connections, and stops gracefully. start()
// fails (false, with a critical log line naming the key) when a listener cannot
// be bound or the TLS/users files do not load. Runs on the inbound thread
// (relayd/inbound_thread.hpp): start() before it runs, stop() posted to it,
// reload() while it is paused.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "relayd/services_fwd.hpp"

namespace relayd {

class alias_source;
class dkim_service;

class inbound_listener {
 public:
  // Every argument outlives this object (run_daemon()'s locals). `io` is the
  // inbound thread's; `delivery_io` runs the scheduler, which each queued
  // message is posted to (with its events).
  inbound_listener(boost::asio::io_context& io, boost::asio::io_context& delivery_io,
                   const config& cfg, queue::spool& spool, scheduler& sched, metrics& stats);
  ~inbound_listener();

  // Loads the TLS context and the AUTH users, then binds every listener.
  bool start();
  // A reload (the config holds the new values): a new TLS context and user
  // table, connection limits and data-memory limit for new connections; open
  // ones keep theirs. A file that does not load leaves the previous one in use.
  // `log_prefix` starts its log lines ("SIGHUP: ").
  void reload(const std::string& log_prefix);
  // Graceful stop: no new connections; idle sessions get 421, sessions in a
  // transaction finish it. `on_idle` runs once the last connection is gone.
  void stop(std::function<void()> on_idle);
  // The aliases new sessions apply ([local]); `a` outlives this object.
  void set_aliases(const alias_source& a);
  // The DKIM signer of accepted messages; `d` outlives this object.
  void set_dkim(const dkim_service& d);

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace relayd
