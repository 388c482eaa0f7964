// TLS reporting in the daemon (RFC 8460, `[delivery] tls_rpt = true`): the
// delivery path hands every outbound session's policy outcome to record()
// (I/O thread); the counts of each UTC day are kept per policy domain in
// memory and written every minute, and at stop, to one file per domain under
// `<spool>/tls-rpt/YYYY-MM-DD/` (temporary file, fsync, rename), by a thread
// of this service, so they survive restarts. Once a day ends, the next round
// (at start and every hour) looks up `_smtp._tls.DOMAIN` for each of its
// domains and sends its report to each destination of the record: a mail per
// mailto: (from `[delivery] tls_rpt_from`, queued like any other message), an
// HTTPS POST per https: URL (application/tlsrpt+gzip, certificate verified, a
// 2xx answer counts); once every destination has it, the day's files are
// removed. Until then each round tries those that failed (not the others),
// for up to two days after the day's end. A domain without a record (or with
// a bad one) gets no report; one whose lookup failed for now is tried again in
// the next round. `relayctl tls-rpt send [DAY]` sends a day now (today: a
// partial report, counts kept). Failures never stop delivery.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "relayd/services_fwd.hpp"
#include "relayd/tls_rpt.hpp"
#include "relayd/tls_rpt_day.hpp"

namespace dns {
class mx_resolver;
}

namespace relayd {

class tls_rpt_service {
 public:
  struct settings {
    std::string dir;           // <spool>/tls-rpt
    std::string from;          // the reporting address (From:, contact-info, envelope sender)
    std::string organization;  // organization-name
    std::string submitter;     // the submitter domain
    std::string hostname;      // for Message-IDs
    std::size_t max_domains_per_day = 10000;  // beyond: not counted, logged once per day
    std::chrono::seconds flush_interval{60};
  };

  // Every reference outlives this object (run_daemon()'s locals).
  tls_rpt_service(boost::asio::io_context& io, settings s, queue::spool& spool, scheduler& sched,
                  dns::mx_resolver& dns);
  ~tls_rpt_service();
  tls_rpt_service(const tls_rpt_service&) = delete;
  tls_rpt_service& operator=(const tls_rpt_service&) = delete;

  // Loads the stored days, starts the writer thread and the hourly round.
  void start();
  // Writes what is not yet stored and stops both; record() is then ignored.
  void stop();

  // One session's outcome, counted for today (UTC). I/O thread.
  void record(const tls_rpt::session& s);

  // Sends the reports of the UTC day starting at `day_start` now; `done` gets
  // one line per policy domain saying what happened. I/O thread.
  void send(std::int64_t day_start, std::function<void(std::string)> done);

  struct state;  // shared with the writer thread and the rounds (defined in the .cpp)

 private:
  std::shared_ptr<state> state_;
};

// The settings of [delivery] tls_rpt_from and tls_rpt_organization: the
// submitter is the from address's domain, and so is the organization-name
// unless set; the files go to <spool>/tls-rpt.
tls_rpt_service::settings tls_rpt_settings(const config& cfg);


}  // namespace relayd
