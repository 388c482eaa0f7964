// The control socket: a Unix stream socket (mode 0660) speaking JSON lines, the
// back end of relayctl (protocol in control_protocol.hpp). One request line per
// connection, answered through a verb -> handler table (control_handlers.hpp).
// A bad request gets {"ok":false,"error":...} and never affects the daemon.
#pragma once

#include <expected>
#include <functional>
#include <memory>
#include <string>

#include "queue/spool.hpp"
#include "relayd/config.hpp"

namespace boost::asio {
class io_context;
}

namespace relayd {

class scheduler;
class alias_source;
class dkim_dns_monitor;
class tls_rpt_service;

class control_server {
 public:
  control_server(boost::asio::io_context& io, const config& cfg, queue::spool& spool);
  ~control_server();
  control_server(const control_server&) = delete;
  control_server& operator=(const control_server&) = delete;
  // Binds the socket; fails if another relayd answers on it.
  std::expected<void, std::string> start();
  // Closes the socket; requests being answered finish.
  void stop();
  // Lets flush/requeue/hold/release wake the scheduler and list show "in flight".
  void set_scheduler(scheduler* s);
  // Lets aliases_reload reload [local] aliases; `a` outlives this object.
  void set_aliases(alias_source& a);
  // Lets dkim_check run a DNS round of [[dkim]] selectors; `m` outlives this object.
  void set_dkim_monitor(dkim_dns_monitor& m);
  // Lets tls_rpt_send send a day's TLS reports; `r` outlives this object.
  void set_tls_reports(tls_rpt_service* r);
  // Lets `reload` re-read the configuration (run_daemon's reload_config).
  void set_reloader(std::function<std::expected<std::string, std::string>()> r);

 private:
  struct impl;
  std::shared_ptr<impl> impl_;
};

}  // namespace relayd
