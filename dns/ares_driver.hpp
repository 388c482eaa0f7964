// One c-ares channel driven by an Asio io_context: c-ares' sockets are watched
// with posix::stream_descriptor waits (never owned: released before c-ares closes
// them) and its retransmission timeouts with a steady_timer. No blocking call.
// Completion handlers run inside c-ares (possibly inside query() itself, during
// cancel(), or with ARES_EDESTRUCTION during destruction) and must not destroy
// the driver. Construction fails with std::runtime_error (a start-up error).
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace boost::asio {
class io_context;
}

namespace dns::detail {

struct driver_options {
  std::vector<std::string> servers;  // c-ares CSV entries; empty: /etc/resolv.conf
  std::chrono::milliseconds timeout{5000};
  int tries = 3;
};

class ares_driver {
 public:
  // status is an ARES_* code; abuf/alen the reply when there is one (also for
  // NXDOMAIN and NODATA, so the SOA can be read), else nullptr/0.
  using handler = std::function<void(int status, const unsigned char* abuf, int alen)>;

  ares_driver(boost::asio::io_context& io, const driver_options& options);
  ~ares_driver();
  ares_driver(const ares_driver&) = delete;
  ares_driver& operator=(const ares_driver&) = delete;

  // A class IN query for `name` exactly (no search list). The handler runs once.
  // `ask_ad`: the query carries the AD bit (RFC 6840 5.7), so a validating
  // resolver reports in the reply's AD bit whether it validated the answer;
  // statuses are the same as without it.
  void query(const std::string& name, int type, handler done, bool ask_ad = false);
  // Every outstanding handler runs now with ARES_ECANCELLED.
  void cancel();

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace dns::detail
