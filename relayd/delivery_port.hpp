// The seam between the scheduler and what delivers its jobs (chasquid's Courier):
// the scheduler asks for connections through this interface only, so it never
// sees the concrete delivery_agent and its unit tests drive it with a fake.
// Pure: no Asio, no I/O. start_connection() cannot fail; a connection that fails
// says so through the scheduler (unreachable, no_route, throttle).
#pragma once

namespace relayd {

struct destination;

class delivery_port {
 public:
  // Starts one connection worker for `d`; the scheduler has already counted it
  // in d.active and d.connecting. The worker, on the I/O thread:
  //  - decrements d.connecting once, when it is ready for jobs or gives up;
  //  - takes jobs with scheduler::next_job(d) and reports every one with
  //    scheduler::complete() (or throttle / unreachable / no_route, which
  //    settle the waiting jobs for it);
  //  - ends with scheduler::connection_done(d), exactly once, and touches `d`
  //    no more: until then d.active pins the destination (delivery_scheduler.hpp).
  virtual void start_connection(destination& d) = 0;

 protected:
  ~delivery_port() = default;  // not owned through the port
};

}  // namespace relayd
