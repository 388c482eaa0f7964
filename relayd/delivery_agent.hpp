// The delivery agent: one coroutine per outbound connection to a destination.
// It resolves the destination (MX with c-ares, or the relayhost), connects to
// the hosts in preference order, speaks smtp::client_session over plain TCP or
// STARTTLS, and delivers the destination's waiting jobs one after another on
// the same connection. Every step has a timeout. Outcomes go to the scheduler.
#pragma once

#include <memory>

#include "relayd/delivery_port.hpp"
#include "relayd/net.hpp"

namespace dns {
class mx_resolver;
}

namespace relayd {

struct config;
struct destination;
class scheduler;

class delivery_agent final : public delivery_port {
 public:
  delivery_agent(asio::io_context& io, const config& cfg, scheduler& sched, dns::mx_resolver& dns);
  ~delivery_agent();
  // Starts one connection worker for `d` (the scheduler counts it in d.active).
  void start_connection(destination& d);

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace relayd
