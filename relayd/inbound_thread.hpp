// The inbound side's own I/O thread ("inbound" in top -H, ps -L and perf): the
// listeners and the SMTP sessions run on its io_context, while the scheduler,
// the delivery agents, the control socket and the metrics endpoint stay on the
// main I/O thread. Receiving and delivering then use two CPUs instead of
// taking turns on one (docs/threads.md says what crosses between them and how).
// paused() lets the main thread change what sessions read (a reload) while
// this thread runs no handler. Nothing here fails: a thread that cannot start
// throws std::system_error from start(), which stops the daemon's start-up.
#pragma once

#include <functional>
#include <memory>

#include "relayd/services_fwd.hpp"

namespace relayd {

class inbound_thread {
 public:
  inbound_thread();
  ~inbound_thread();  // stop()
  inbound_thread(const inbound_thread&) = delete;
  inbound_thread& operator=(const inbound_thread&) = delete;

  // Where the inbound side's objects are built; it keeps work (runs until
  // stop()), so it outlives a moment with no connection.
  boost::asio::io_context& io();
  // Runs io() on the thread. Once.
  void start();
  // Runs `f` on the calling thread while the inbound thread is parked between
  // two handlers; `f` may change what sessions read (the configuration, the
  // TLS context, the aliases, the DKIM keys). Before start() or after stop(),
  // `f` just runs. Not from the inbound thread itself.
  void paused(const std::function<void()>& f);
  // Stops io() after the handler it runs and joins the thread: no inbound
  // coroutine runs again (those left are destroyed with io(), unresumed).
  void stop();

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace relayd
