// The control socket: a Unix stream socket (mode 0660) speaking JSON lines, the
// back end of relayctl. One request line per connection:
//   {"cmd":"list"}                  -> one message object per line, then {"ok":true,...}
//   {"cmd":"show","id":ID}          -> {"ok":true,"message":{...},"content_length":N}\n + N raw bytes
//   {"cmd":"delete","ids":[...]}    -> {"ok":true,"deleted":N}   ("all":true deletes every message)
//   {"cmd":"flush"}                 -> {"ok":true,"rescheduled":N}  every deferred message now
//   {"cmd":"requeue"|"hold"|"release","ids":[...]|"all":true} -> {"ok":true,"count":N}
//   {"cmd":"dead_list"}             -> one dead-entry object per line, then
//                                      {"ok":true,"entries":N,"bytes":B}
//   {"cmd":"dead_show","id":ID}     -> {"ok":true,"entry":{...},"content_length":N}\n + N raw bytes
//   {"cmd":"dead_replay"|"dead_purge","ids":[...]|"all":true} -> {"ok":true,"count":N}
//   {"cmd":"stats"}                 -> {"ok":true,"stats":{active, deferred, held, dead, ...}}
// A dead entry: id, size, arrival, sender, failed_at and its failed recipients
// [{address, reason, reply_code, status, last_reply, remote_host, attempts,
// first_attempt, last_attempt}] (times in Unix seconds, 0: never).
// Failures answer {"ok":false,"error":"..."}; a bad request never affects the daemon.
// The server also purges dead entries older than [queue] dead_retention ("0s":
// never) at start and every dead_retention/10 (at least 1 s, at most 1 h).
#pragma once

#include <boost/json/fwd.hpp>
#include <expected>
#include <memory>
#include <string>
#include <string_view>

#include "queue/spool.hpp"
#include "relayd/config.hpp"
#include "relayd/net.hpp"

namespace relayd {

class scheduler;

class control_server {
 public:
  control_server(asio::io_context& io, const config& cfg, queue::spool& spool);
  ~control_server();
  // Binds the socket and starts the dead-spool retention task; fails if
  // another relayd answers on the socket.
  std::expected<void, std::string> start();
  void stop();
  // Lets flush/requeue/hold/release wake the scheduler and list show "in flight".
  void set_scheduler(scheduler* s) { scheduler_ = s; }

 private:
  awaitable<void> accept_loop();
  awaitable<void> serve(asio::local::stream_protocol::socket sock);
  awaitable<void> purge_loop();
  // The answer to one request line, written to `sock` (list requests stream
  // their lines before it).
  awaitable<std::string> dead_list(asio::local::stream_protocol::socket& sock);
  awaitable<std::string> stats();
  awaitable<std::string> dead_action(std::string_view cmd, const boost::json::object& req);

  asio::io_context& io_;
  const config& cfg_;
  queue::spool& spool_;
  asio::local::stream_protocol::acceptor acceptor_;
  asio::steady_timer purge_timer_;
  bool stopped_ = false;
  scheduler* scheduler_ = nullptr;
};

}  // namespace relayd
