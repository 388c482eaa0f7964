// sendmail --wait: after the daemon's 250, asks the control socket ("wait",
// relayd/control_wait.cpp) for the final outcome of every recipient and prints
// one line per recipient: to=<addr> status=delivered|failed|deferred|... reply="...".
// Exit status: 0 only when every recipient was delivered; 69 (EX_UNAVAILABLE)
// when any failed; 75 (EX_TEMPFAIL) when the timeout passed with recipients
// not final, or the control socket could not answer (one line on stderr).
#pragma once

#include <boost/json/object.hpp>
#include <chrono>
#include <string>
#include <vector>

namespace sendmail {

struct wait_report {
  std::vector<std::string> lines;  // one per recipient, without '\n'
  int exit_status = 75;
};

// The daemon's answer to "wait" (an {"ok":true,...} object) as lines and status.
wait_report read_wait_answer(const boost::json::object& answer);

// Connects, waits up to `timeout` (plus a margin for the answer), prints the
// lines on stdout; returns the exit status.
int wait_for_delivery(const std::string& control_socket, const std::string& queue_id,
                      std::chrono::seconds timeout);

}  // namespace sendmail
