// Where events go ([events] in the config): one JSON line per state change
// appended to `file` by a writer thread (a bounded queue, so the I/O thread
// never waits for the disk), and, with `webhook`, posted in batches (a JSON
// array, up to 100 events) from a durable outbox in the spool. The outbox rows
// are written in the transaction that commits the change (the callers pass
// outbox_lines() to the spool), so neither a restart, kill -9 nor a webhook
// outage loses one; a batch is deleted only after a 2xx answer, so delivery
// is at least once (event_id tells repeats apart), in commit order, one batch
// at a time. A failed POST is retried after 1 s, doubling up to 60 s.
// Fails by logging: a file that cannot be opened at start is a start-up error;
// a write error or a full writer queue drops lines for the file only (counted
// in relayd_events_dropped_total, logged once a minute); the outbox keeps all.
// Every committed event also goes to the record relayctl report counts
// (events_report_log.hpp), on by default and whatever `file` and `webhook` say.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "relayd/events_format.hpp"
#include "relayd/services_fwd.hpp"

namespace relayd {

// The events of one change, as they go out: JSON lines (the same text in the
// outbox, the file and the webhook's batches) only when they leave relayd (a
// file or a webhook), and the events themselves only for the report's record.
// With neither, it is empty and nothing was formatted.
struct event_batch {
  std::vector<std::string> lines;
  std::vector<event> for_report;
  bool empty() const { return lines.empty() && for_report.empty(); }
};

class event_log {
 public:
  // Every argument outlives this object (run_daemon()'s locals); `m` may be null.
  event_log(boost::asio::io_context& io, const config& cfg, queue::spool& spool, metrics* m);
  ~event_log();  // stops the writer thread after it wrote what it holds
  event_log(const event_log&) = delete;
  event_log& operator=(const event_log&) = delete;

  bool enabled() const;   // a file, a webhook or the report's record (report_days) is on
  bool exported() const;  // a file or a webhook is configured (events leave relayd)
  // Opens the file and starts the writer and the webhook sender. The error
  // names the key ("events.file: /x: Permission denied").
  bool start(std::string& error);
  void stop();    // the webhook sender stops at its next step (the outbox keeps the rest)
  void reopen();  // SIGHUP: the file is opened again (after logrotate moved it)

  // `events` as they go out (see event_batch): each line with a fresh
  // event_id and, where unset, the time now.
  event_batch batch(std::vector<event> events) const;
  // The "received" event of a message about to be queued (`message`: its
  // content, for the Message-ID; `sasl`: the AUTH user); empty when events
  // are off.
  event_batch received(const queue::envelope_record& r, std::string_view message,
                       std::string_view sasl = {}, std::string submitter = {}) const;
  // The hook for destination state changes (suspended, resumed): one event
  // with `destination` and `reason` (as its reply), no queue ID; to the outbox
  // (with a webhook), then to the file. Call on the I/O thread.
  void destination_event(event_type type, std::string destination, std::string reason);
  // What the spool should store in the outbox with the change: the lines when
  // a webhook is configured, else nothing.
  std::vector<std::string> outbox_lines(const event_batch& b) const;
  // The change these events tell is committed: they go to the file (in this
  // order) and the report, and the webhook sender looks at the outbox. Call on
  // the I/O thread.
  void committed(event_batch b);
  // `done` runs on the report's writer thread once every committed event is in
  // the report's record (at once when the report is off); any thread.
  void flush_report(std::function<void()> done);

  struct state;  // shared with the writer thread and the sender coroutine

 private:
  static void write_file(state& s, event_batch b);  // to the writer threads
  std::shared_ptr<state> s_;
};

}  // namespace relayd
