// The durable spool: an LMDB environment holding envelope records and message
// bodies in separate databases. One writer thread owns every write transaction
// and commits many operations at once with a synced commit (group commit), so an
// enqueue's completion (and the 250 that follows it) comes only after the message
// is on disk. Reads use short read transactions from any thread.
//
// Fails by value: a full map that cannot grow, free disk below min_free_disk or
// max_messages reached give status::full (the caller answers 452 4.3.1); other
// LMDB errors give status::error. Undecodable records found at open are moved
// to a quarantine database and counted, never fatal.
#pragma once

#include <chrono>
#include <cstdint>
#include <expected>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "queue/record.hpp"

namespace queue {

namespace detail {
class spool_core;
}
struct spool_access;

struct spool_options {
  std::filesystem::path dir;   // created (mode 0711: searchable, not listable) if missing
  std::uint64_t max_size = 0;  // largest the map may grow to; 0: the disk decides
  std::uint64_t min_free_disk = 100ull << 20;
  std::uint64_t max_messages = 0;  // 0: no limit
  std::uint64_t initial_map_size = 64ull << 20;
  // How long a delivery's results (update_recipients, an outbox acknowledgement,
  // an MTA-STS record) wait for an enqueue to share its commit (and its flush)
  // before they are committed alone. Their answers never wait for that flush.
  std::chrono::microseconds lazy_window{2000};
};

enum class status { ok, full, error, not_found };

struct result {
  status code = status::ok;
  std::string detail;  // human-readable reason when code != ok
};

struct open_report {
  std::uint64_t messages = 0;  // envelope records that decoded
  std::uint64_t recipients_pending = 0;
  std::uint64_t quarantined = 0;  // records moved aside because they did not decode
  std::uint64_t bytes = 0;        // sum of message sizes
  std::uint64_t held = 0;         // messages with flag_held
  std::uint64_t scheduled = 0;    // entries in the schedule index after open
  bool schedule_rebuilt = false;  // the index disagreed with the records and was rebuilt
  std::uint64_t dead = 0;         // entries in the dead spool
};

// When a dead-spool entry failed: the latest last attempt of its failed
// recipients, or arrival_us when none of them was ever attempted.
std::int64_t failed_at(const envelope_record& r);

class spool {
 public:
  // Opens (creating) the spool for writing. One process at a time: while a
  // process has it open, another is refused with one line naming it ("spool
  // DIR is in use by relayd pid N"); the lock ends with that process.
  static std::expected<std::unique_ptr<spool>, std::string> open(const spool_options& options);
  ~spool();  // stops the writer after finishing queued operations

  // A fresh queue ID: 16 uppercase hex digits, strictly increasing in time order,
  // unique across restarts. Thread-safe.
  std::string new_id();

  // Stores envelope + body in one synced transaction (shared with other
  // operations). `done` runs on the writer thread after the commit, or after the
  // failure; it must be quick (post to your own executor).
  // `events` (JSON texts) go to the event outbox in the same transaction.
  void enqueue(envelope_record env, std::string body, std::function<void(result)> done,
               std::vector<std::string> events = {});
  // Deletes the messages (an empty list: every message). `done` gets how many
  // were deleted; ok if at least one was, not_found otherwise.
  void remove(std::vector<std::string> ids, std::function<void(result, std::size_t)> done);

  // ---- Drop files (relayd/inbound_maildrop) -----------------------------
  // enqueue() that also records `drop_name` -> the message's ID in the `drops`
  // database, in the same transaction: a drop file's import is committed at
  // most once, whatever crashes between this commit and the file's removal.
  // A name already recorded (or not 1 to max_drop_name octets) stores nothing
  // and gives status::error.
  static constexpr std::size_t max_drop_name = 255;
  void enqueue_drop(std::string drop_name, envelope_record env, std::string body,
                    std::function<void(result)> done, std::vector<std::string> events = {});
  // The queue ID the drop file `drop_name` was imported as, if it is recorded.
  std::optional<std::string> drop_imported(std::string_view drop_name) const;
  // Up to `limit` recorded names, in byte order.
  std::vector<std::string> drop_names(std::size_t limit) const;
  // Deletes recorded names (call once their files are gone). `done` gets how
  // many were recorded; ok also for none.
  void forget_drops(std::vector<std::string> names, std::function<void(result, std::size_t)> done);

  // ---- MTA-STS policies (relayd/delivery_mta_sts) -----------------------
  // The record cached for a policy domain (lower case, 1 to 255 octets), if any.
  std::optional<std::string> mta_sts_record(std::string_view domain) const;
  // Writes the domain's record (an empty one deletes it) in the writer's next
  // transaction; `done` runs on the writer thread as for enqueue().
  void store_mta_sts(std::string domain, std::string record, std::function<void(result)> done);
  // ---- Event outbox (relayd/events_webhook) -----------------------------
  // Events stored with enqueue() / update_recipients() wait in the `events`
  // database, in commit order, until ack_outbox() deletes them: a crash or a
  // restart loses none (one committed with its change is never missing).
  struct outbox_entry {
    std::uint64_t seq = 0;  // grows with every event stored
    std::string text;
  };
  // The oldest `limit` events.
  std::vector<outbox_entry> outbox(std::size_t limit) const;
  std::uint64_t outbox_count() const;
  // The first `limit` octets of a queued message (its header, for the
  // Message-ID an event names), without copying the rest.
  std::optional<std::string> body_head(std::string_view id, std::size_t limit) const;
  // Stores events that go with no change of the queue (a destination
  // suspended or resumed); `done` gets how many.
  void append_outbox(std::vector<std::string> events, std::function<void(result, std::size_t)> done);
  // Deletes the events with seq <= upto; `done` gets how many (ok, also for none).
  void ack_outbox(std::uint64_t upto, std::function<void(result, std::size_t)> done);

  // ---- Scheduling --------------------------------------------------------
  // Every message that has a pending recipient and is not held has exactly one
  // entry in the `schedule` database, keyed (due_us, id), where due_us is the
  // smallest next_attempt_us of its pending recipients. enqueue() creates it;
  // the index is rebuilt from the envelope records at open, so after a crash
  // it can never disagree with them (and everything pending is due again).
  struct due_entry {
    std::int64_t due_us = 0;
    std::string id;
    bool operator==(const due_entry&) const = default;
  };
  // Up to `limit` entries with due_us <= until_us, in (due_us, id) order,
  // strictly after `after` (nullopt: from the start).
  std::vector<due_entry> due(const std::optional<due_entry>& after, std::int64_t until_us,
                             std::size_t limit) const;
  // The earliest due_us strictly greater than `after_us`, if any.
  std::optional<std::int64_t> next_due_after(std::int64_t after_us) const;

  // What became of a message after update_recipients().
  enum class completion {
    pending,    // some recipient is still pending: rescheduled
    delivered,  // every recipient delivered: the message was removed
    dead,       // none pending, some failed: moved to the dead spool
  };
  struct recipient_update {
    std::size_t index = 0;  // position in envelope_record::recipients
    recipient value;        // the new state; value.address must equal the stored one
  };
  // Applies the updates in one synced transaction and re-derives the schedule
  // entry. When no recipient is pending any more the message leaves the queue:
  // removed if all were delivered, otherwise moved (record + body) to the
  // `dead` database under the same ID. Also sets `flags_set` bits on the
  // message (e.g. flag_delay_warned). not_found if the message is gone.
  // `events` go to the event outbox in the same transaction (not when the
  // update does not apply).
  void update_recipients(std::string id, std::vector<recipient_update> updates,
                         std::uint32_t flags_set, std::function<void(result, completion)> done,
                         std::vector<std::string> events = {});
  // Sets next_attempt_us of every pending recipient to `due_us` for the given
  // messages (empty list: every message that is not held); held ones are
  // skipped. `done` gets how many messages were rescheduled.
  void reschedule(std::vector<std::string> ids, std::int64_t due_us,
                  std::function<void(result, std::size_t)> done);
  // Hold (held = true: flag_held set, schedule entry removed) or release
  // (flag cleared, entry restored, due now). Empty list: every message.
  void set_held(std::vector<std::string> ids, bool held,
                std::function<void(result, std::size_t)> done);

  // ---- Dead spool (records whose recipients failed; read side) ------------
  std::optional<envelope_record> get_dead(std::string_view id) const;
  std::optional<std::string> dead_body(std::string_view id) const;
  std::string scan_dead(std::string_view after, std::size_t limit,
                        const std::function<void(const envelope_record&)>& visit) const;
  std::uint64_t dead_count() const;

  // Read side (any thread; short read transactions, never held across I/O).
  std::optional<envelope_record> get(std::string_view id) const;
  std::optional<std::string> body(std::string_view id) const;
  // Visits records in ID (= arrival) order starting after `after` ("" = from the
  // start), at most `limit` of them. Returns the last ID visited ("" when none).
  std::string scan(std::string_view after, std::size_t limit,
                   const std::function<void(const envelope_record&)>& visit) const;
  std::uint64_t message_count() const;
  std::uint64_t used_bytes() const;  // pages in use × page size
  const open_report& report() const;

  // Deletes dead-spool entries (record + body; an empty list: all of them).
  // `done` gets how many were deleted; ok if at least one was, not_found
  // otherwise. remove() never touches the dead spool.
  void purge_dead(std::vector<std::string> ids, std::function<void(result, std::size_t)> done);
  // Puts dead-spool entries back into the queue (an empty list: all of them),
  // under the same ID, record and body, due at `now_us`. Each failed recipient
  // becomes pending with fresh attempts (attempts, first/last attempt and
  // reason cleared; its last reply, code, status and remote host stay as
  // history); any other recipient is dropped. flag_held and flag_delay_warned
  // are cleared and arrival_us becomes `now_us`, so the lifetime (and the
  // delay warning) start again. `done` gets how many were replayed: ok with
  // any count for every entry; for named IDs ok if one was, not_found if none
  // is in the dead spool, error if those found could not be replayed (record
  // does not decode, body missing, no failed recipient; they stay dead). When
  // the ID is still queued (some recipients were deferred), its failed
  // recipients join that queued message again.
  // max_messages does not apply: replay is an operator's decision.
  void replay_dead(std::vector<std::string> ids, std::int64_t now_us,
                   std::function<void(result, std::size_t)> done);
  // Deletes the dead-spool entries whose failed_at() is before `cutoff_us`
  // (entries that do not decode are left for purge_dead()). `done` gets how
  // many were deleted (ok, also for none).
  void purge_dead_older_than(std::int64_t cutoff_us, std::function<void(result, std::size_t)> done);
  // reschedule(), set_held(), replay_dead() and purge_dead_older_than() go
  // through the queue or the dead spool in transactions of a bounded number of
  // entries, and let the operations that are waiting (enqueues, delivery
  // results) run between two of them: a pass over a huge queue never holds up
  // a 250. What arrives during a pass may or may not be covered by it.

 private:
  friend struct spool_access;  // diagnostics and test hooks (spool_core.hpp)
  spool();
  std::unique_ptr<detail::spool_core> core_;
};

}  // namespace queue
