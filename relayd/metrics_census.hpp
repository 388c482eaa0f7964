// The queue gauges (messages and recipients by state, oldest message, spool
// bytes) from a periodic scan of the spool in batches, so other work runs
// between them. The next scan comes after 5 s, or 10 times as long as the last
// one took, so a huge queue never keeps the I/O thread more than ~10% busy.
// Spool reads cannot fail here; a stop ends the loop at its next step.
#pragma once

#include <memory>

#include "relayd/services_fwd.hpp"

namespace relayd {

class queue_census_loop {
 public:
  // Every argument outlives this object (run_daemon()'s locals).
  queue_census_loop(boost::asio::io_context& io, const config& cfg, queue::spool& spool,
                    scheduler& sched, metrics& stats);
  ~queue_census_loop();
  void start();
  void stop();  // the loop ends at its next step; the timer wait is cut short

  struct state;  // shared by this object and the coroutine (defined in the .cpp)

 private:
  std::shared_ptr<state> state_;
};

}  // namespace relayd
