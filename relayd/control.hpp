// The control socket: a Unix stream socket (mode 0660) speaking JSON lines, the
// back end of relayctl. One request line per connection:
//   {"cmd":"list"}                  -> one message object per line, then {"ok":true,...}
//   {"cmd":"show","id":ID}          -> {"ok":true,"message":{...},"content_length":N}\n + N raw bytes
//   {"cmd":"delete","ids":[...]}    -> {"ok":true,"deleted":N}   ("all":true deletes every message)
//   {"cmd":"flush"}                 -> {"ok":true,"rescheduled":N}  every deferred message now
//   {"cmd":"requeue"|"hold"|"release","ids":[...]|"all":true} -> {"ok":true,"count":N}
// Failures answer {"ok":false,"error":"..."}; a bad request never affects the daemon.
#pragma once

#include <expected>
#include <memory>
#include <string>

#include "queue/spool.hpp"
#include "relayd/config.hpp"
#include "relayd/net.hpp"

namespace relayd {

class scheduler;

class control_server {
 public:
  control_server(asio::io_context& io, const config& cfg, queue::spool& spool);
  ~control_server();
  // Binds the socket; fails if another relayd answers on it.
  std::expected<void, std::string> start();
  void stop();
  // Lets flush/requeue/hold/release wake the scheduler and list show "in flight".
  void set_scheduler(scheduler* s) { scheduler_ = s; }

 private:
  awaitable<void> accept_loop();
  awaitable<void> serve(asio::local::stream_protocol::socket sock);

  asio::io_context& io_;
  const config& cfg_;
  queue::spool& spool_;
  asio::local::stream_protocol::acceptor acceptor_;
  scheduler* scheduler_ = nullptr;
};

}  // namespace relayd
