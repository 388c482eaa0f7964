// The delivery agent: one coroutine per outbound connection to a destination. It
// connects (delivery_connect), delivers the destination's waiting jobs one after
// another over the outbound stream and reports outcomes (delivery_outcome) to the
// scheduler. The constructor throws when a relayhost password or OAuth2 file cannot be read.
#pragma once

#include <expected>
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
class tls_rpt_service;

class delivery_agent final : public delivery_port {
 public:
  delivery_agent(asio::io_context& io, const config& cfg, scheduler& sched, dns::mx_resolver& dns);
  ~delivery_agent();
  // Starts one connection worker for `d` (the scheduler counts it in d.active).
  void start_connection(destination& d) override;
  // SIGHUP: re-reads the relayhost password or OAuth2 credential files.
  void reload_credentials();
  // A reload: the routes of `next` (connector::reconfigure); nothing changes on error.
  std::expected<void, std::string> reconfigure(const config& next);
  // [delivery] tls_rpt: where MX sessions' TLS outcomes go (connector::set_tls_reports).
  void set_tls_reports(tls_rpt_service* reports);

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace relayd
