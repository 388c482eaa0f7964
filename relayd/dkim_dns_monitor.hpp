// Whether each [[dkim]] selector's DNS record publishes its configured key: the
// daemon looks every SELECTOR._domainkey.DOMAIN TXT up with its own resolver
// ([delivery] dns_servers) at start and every `interval` (dkim_check_interval,
// 6 h; at most 5 min while an entry with require_dns does not match, so a record
// published late is picked up soon), compares it with the key file
// (dkim_record.hpp), exports relayd_dkim_key_dns_match and answers
// dkim_dns_ok() and gate() for the signer's require_dns. `relayctl dkim check`
// and SIGHUP run a round now (control_dkim.cpp, daemon.cpp). A temporary DNS
// failure (SERVFAIL, timeout) is shown but keeps the previous verdict, so a
// resolver outage does not stop signing.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "relayd/config.hpp"
#include "relayd/dkim_record.hpp"
#include "relayd/dkim_sign.hpp"  // dkim_dns_gate
#include "relayd/services_fwd.hpp"

namespace dns {
class mx_resolver;
}

namespace relayd {

// One entry's last check.
struct dkim_dns_status {
  config::dkim_entry entry;
  dkim::check_result result;
  bool match = false;  // what dkim_dns_ok() answers: result ok, or ok before a dns_error
  std::string public_key;  // p= of the key file compared ("" when unreadable)
};

class dkim_dns_monitor {
 public:
  using done_fn = std::function<void(std::vector<dkim_dns_status>)>;

  // Every argument outlives this object (run_daemon()'s locals); `stats` may be null.
  dkim_dns_monitor(boost::asio::io_context& io, const config& cfg, dns::mx_resolver& dns,
                   metrics* stats, std::chrono::seconds interval = std::chrono::hours(6));
  ~dkim_dns_monitor();
  dkim_dns_monitor(const dkim_dns_monitor&) = delete;
  dkim_dns_monitor& operator=(const dkim_dns_monitor&) = delete;

  void start();  // a round now, then one every interval; nothing when no [[dkim]]
  void stop();   // no new round; the timer wait is cut short

  // Checks every entry now (I/O thread); `done` runs on the I/O thread with one
  // status per [[dkim]] entry, in configuration order, after the verdicts,
  // the metric and dkim_dns_ok() have been updated.
  void check_now(done_fn done);

  // Thread-safe (the signer's workers call it): true while the last verdict for
  // this domain and selector is a match; false before the first round, for a
  // selector that is not configured, and after missing/mismatch/revoked/
  // malformed/key_unreadable. Domains compare case-insensitively.
  bool dkim_dns_ok(std::string_view domain, std::string_view selector) const;

  // The signer's require_dns question (dkim_sign.hpp): "" when the last verdict
  // is a match for this very public key; else "not checked yet", the state
  // ("missing", "mismatch", "revoked", ...), or "checked for another key" (the
  // key file changed since the round). Keeps the state alive: usable after this
  // object is gone, from any thread.
  dkim_dns_gate gate() const;

  struct state;  // shared with the rounds and the timer loop (defined in the .cpp)

 private:
  std::shared_ptr<state> state_;
};

}  // namespace relayd
