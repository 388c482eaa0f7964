// Dead-spool retention: purges dead entries older than [queue] dead_retention
// ("0s": never) at start and then every tenth of it (at least 1 s, at most 1 h).
// Spool upkeep, not a control concern. A failed purge is logged and retried at
// the next turn; stop() (or destruction) ends the loop.
#pragma once

#include <chrono>
#include <memory>

#include "queue/spool.hpp"

namespace boost::asio {
class io_context;
}

namespace relayd {

class dead_retention {
 public:
  dead_retention(boost::asio::io_context& io, std::chrono::seconds retention, queue::spool& spool);
  ~dead_retention();
  dead_retention(const dead_retention&) = delete;
  dead_retention& operator=(const dead_retention&) = delete;
  void start();
  void stop();

 private:
  struct impl;
  std::shared_ptr<impl> impl_;
};

}  // namespace relayd
