// Internal to queue/: the spool's core (the one class behind spool.hpp), its
// operations and the helpers its files share. Included only by queue/spool*.cpp
// and by tests that need the core (through spool_access). Nothing here is a
// contract for other modules.
//
// On disk (environment in options.dir, named databases):
//   meta        "format" -> 1 byte layout version; "last_id" -> 8-byte BE high-water ID
//   envelope    8-byte BE queue ID -> encode(envelope_record)
//   body        8-byte BE queue ID -> the message octets
//   schedule    8-byte BE due_us (max(0, due)) + 8-byte BE queue ID -> empty: one
//               entry per message that is not held and has a pending recipient,
//               due_us = the smallest next_attempt_us of its pending recipients
//   dead        8-byte BE queue ID -> encode(envelope_record) with the failed
//               recipients of a message (written as soon as one fails, also
//               while others are still pending; entries written by earlier
//               versions may also hold the delivered ones, which replay drops)
//   dead_body   8-byte BE queue ID -> its message octets (bodies stay apart from
//               records, as in the live queue, so listing never reads them)
//   quarantine  original key + 'e' | 'b' | 'r' -> raw envelope, raw body, reason text
//   drops       drop file name -> 8-byte BE queue ID: written with the message
//               imported from that file (enqueue_drop), deleted once the file
//               is gone (forget_drops); created at open, so older spools gain
//               it without a format change
//   mta_sts     policy domain -> the MTA-STS policy cached for it (an opaque
//               record of relayd/delivery_mta_sts_policy.hpp, versioned there);
//               created at open like drops
//   events      8-byte BE sequence number -> one event's JSON text: the webhook's
//               outbox (relayd/events_webhook), written in the transaction of the
//               change the event tells (enqueue, update), deleted once posted
//               (ack_outbox); created at open like drops
// Next to data.mdb and lock.mdb, relayd.lock holds the PID of the process that
// has the spool open; it is flock()ed while the spool is open (one writer
// process per spool).
// Layout version 2 added schedule, dead and dead_body; a version 1 spool is
// upgraded in place at open (its index is built from the records).
// One writer thread takes every queued operation (up to a bound), applies them in
// one write transaction and commits; no `done` runs before that commit is on
// disk, meta page included (one flush per commit under load, see run()). MDB_MAP_FULL
// grows the map and retries; when it cannot grow, the batch is retried one
// operation at a time so only what does not fit fails (everything but enqueue may
// use a small reserve above max_size, so deleting and recording delivery results
// always work and a full queue can drain). Operations over every message
// (reschedule, hold, release) and dead-spool replay and purge by age work in
// transactions of a bounded number of messages, so a huge queue is never held
// in memory, and go back to the end of the line after each transaction, so a
// long pass never stalls enqueues.
// Committed data is never touched by a failure: a failed transaction is
// aborted as a whole.
#pragma once

#include <pthread.h>
#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <expected>
#include <filesystem>
#include <functional>
#include <limits>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <type_traits>
#include <variant>
#include <vector>

#include "queue/lmdb.hpp"
#include "queue/queue_id.hpp"
#include "queue/record.hpp"
#include "queue/schedule_key.hpp"
#include "queue/spool.hpp"
#include "queue/spool_diag.hpp"

namespace queue::detail {

inline constexpr unsigned max_dbs = 16;
inline constexpr unsigned max_readers = 1024;
inline constexpr std::size_t max_batch_ops = 4096;
inline constexpr std::size_t max_batch_bytes = 64u << 20;
// How long the writer stays idle after a lazy commit before it flushes that
// commit's meta page anyway (bounding what a power cut can undo).
inline constexpr std::chrono::milliseconds lazy_flush_after{1000};
inline constexpr std::uint64_t min_remove_reserve = 256u << 10;
inline constexpr std::uint64_t map_rounding = 1u << 20;
// One transaction of a bulk operation handles at most this many messages (or
// this many bytes of records, whichever comes first).
inline constexpr std::size_t bulk_chunk_messages = 1024;
inline constexpr std::size_t bulk_chunk_bytes = 4u << 20;

inline constexpr const char* db_meta = "meta";
inline constexpr const char* db_envelope = "envelope";
inline constexpr const char* db_body = "body";
inline constexpr const char* db_quarantine = "quarantine";
inline constexpr const char* db_schedule = "schedule";
inline constexpr const char* db_dead = "dead";
inline constexpr const char* db_dead_body = "dead_body";
inline constexpr const char* db_drops = "drops";
inline constexpr const char* db_mta_sts = "mta_sts";
inline constexpr const char* db_events = "events";
inline constexpr mode_t spool_dir_mode = 0711;  // searchable by others, not listable
inline constexpr const char* lock_file = "relayd.lock";  // see spool_core::lock_dir()
inline constexpr std::string_view meta_format = "format";
inline constexpr std::string_view meta_last_id = "last_id";
inline constexpr char spool_format = 2;
inline constexpr char spool_format_v1 = 1;  // no schedule / dead databases yet: upgraded at open
inline constexpr std::string_view empty_value{"", 0};  // schedule entries carry nothing
inline constexpr char quarantine_envelope = 'e';
inline constexpr char quarantine_body = 'b';
inline constexpr char quarantine_reason = 'r';

inline std::string be64(std::uint64_t v) {
  id_key k = key_of(v);
  return {k.data(), k.size()};
}

inline void set_pending_due(envelope_record& r, std::int64_t due_us) {
  for (recipient& rc : r.recipients) {
    if (rc.state == rcpt_state::pending) rc.next_attempt_us = due_us;
  }
}

inline bool has_pending(const envelope_record& r) {
  for (const recipient& rc : r.recipients) {
    if (rc.state == rcpt_state::pending) return true;
  }
  return false;
}

// Map and disk sizes (spool_map.cpp).
std::uint64_t round_up(std::uint64_t v, std::uint64_t m);
std::uint64_t round_down(std::uint64_t v, std::uint64_t m);
std::optional<std::uint64_t> disk_available(const std::filesystem::path& dir);
std::uint64_t data_file_size(const std::filesystem::path& dir);

// ---- Operations: what the facade submits and the writer applies ----------


struct enqueue_op {
  std::uint64_t id = 0;
  std::string envelope;             // encoded on the caller's thread
  std::optional<std::int64_t> due;  // its schedule entry, if any
  std::string body;
  std::string drop;  // enqueue_drop(): the drop file's name, recorded with it
  std::vector<std::string> events;  // appended to the outbox with it
  std::function<void(result)> done;
  result res;
  bool rejected = false;  // failed before reaching the writer (bad ID)
};

struct remove_op {
  std::vector<std::uint64_t> ids;
  bool all = false;
  std::function<void(result, std::size_t)> done;
  result res;
  std::size_t count = 0;
};

struct update_op {
  std::uint64_t id = 0;
  std::vector<spool::recipient_update> updates;  // not consumed: a batch may be applied again
  std::uint32_t flags_set = 0;
  std::vector<std::string> events;  // appended to the outbox when the update applies
  std::function<void(result, spool::completion)> done;
  result res;
  spool::completion became = spool::completion::pending;
  bool rejected = false;  // failed before reaching the writer (bad ID)
};

struct purge_dead_op {
  std::vector<std::uint64_t> ids;
  bool all = false;
  std::function<void(result, std::size_t)> done;
  result res;
  std::size_t count = 0;
};

// reschedule / hold / release: one chunk per turn of the writer (see
// process()); the progress lives in the operation between turns.
enum class bulk_kind { reschedule, hold, release };
struct bulk_op {
  bulk_kind kind = bulk_kind::reschedule;
  std::vector<std::uint64_t> ids;
  bool all = false;
  std::int64_t when_us = 0;  // reschedule: the new due time; release: now
  std::function<void(result, std::size_t)> done;
  result res;
  std::size_t count = 0;               // messages changed
  std::size_t next_index = 0;          // named IDs: the next one to look at
  std::optional<std::uint64_t> after;  // every message: the last ID looked at
  std::size_t found = 0;               // named messages that exist
  bool finished = false;
};

// replay_dead / purge_dead_older_than: one chunk per turn of the writer (see
// process()); the progress lives in the operation between turns.
enum class dead_kind { replay, purge_older };
struct dead_bulk_op {
  dead_kind kind = dead_kind::replay;
  std::vector<std::uint64_t> ids;
  bool all = false;
  std::int64_t when_us = 0;  // replay: the new arrival and due time; purge_older: the cutoff
  std::function<void(result, std::size_t)> done;
  result res;
  std::size_t count = 0;               // entries replayed or deleted
  std::size_t next_index = 0;          // named IDs: the next one to look at
  std::optional<std::uint64_t> after;  // every entry: the last ID looked at
  std::size_t found = 0;               // named entries that exist
  std::string problem;                 // why a found entry was not replayed
  bool finished = false;
};

struct forget_drops_op {
  std::vector<std::string> names;
  std::function<void(result, std::size_t)> done;
  result res;
  std::size_t count = 0;
};

// store_mta_sts(): one policy record written (or, with an empty value, deleted).
struct mta_sts_op {
  std::string domain, value;
  std::function<void(result)> done;
  result res;
};

// Deletes outbox events up to a sequence number (spool_events.cpp).
struct ack_outbox_op {
  std::uint64_t upto = 0;
  std::function<void(result, std::size_t)> done;
  result res;
  std::size_t count = 0;
};

// Appends events that go with no queue change (spool_events.cpp).
struct append_outbox_op {
  std::vector<std::string> events;
  std::function<void(result, std::size_t)> done;
  result res;
  std::size_t count = 0;
};

using operation = std::variant<enqueue_op, remove_op, update_op, purge_dead_op, bulk_op,
                               dead_bulk_op, forget_drops_op, mta_sts_op, ack_outbox_op,
                               append_outbox_op>;

inline std::size_t op_bytes(const operation& o) {
  if (const auto* e = std::get_if<enqueue_op>(&o)) return e->envelope.size() + e->body.size();
  if (const auto* u = std::get_if<update_op>(&o))
    return 64 + 256 * u->updates.size() + 512 * u->events.size();
  return 64;
}

inline bool is_bulk(const operation& o) {
  return std::holds_alternative<bulk_op>(o) || std::holds_alternative<dead_bulk_op>(o);
}

// An operation whose answer need not wait for its commit to be durable: a
// delivery's results (update_recipients), an outbox acknowledgement, an MTA-STS
// record. A power cut may undo one; that repeats work (a delivery, at least
// once as the durability contract allows; a webhook batch; a policy fetch) and
// loses no accepted message. The writer answers such an operation right after
// its commit, without the flush of that commit's meta page, and lets it wait up
// to spool_options::lazy_window for an operation that must be durable, so that they share one
// commit (one flush) instead of each paying for its own (see run()).
inline bool is_lazy(const operation& o) {
  return std::holds_alternative<update_op>(o) || std::holds_alternative<ack_outbox_op>(o) ||
         std::holds_alternative<mta_sts_op>(o);
}

inline bool is_rejected(const operation& o) {
  if (const auto* e = std::get_if<enqueue_op>(&o)) return e->rejected;
  if (const auto* u = std::get_if<update_op>(&o)) return u->rejected;
  return false;
}

inline void set_result(operation& o, result r) {
  std::visit(
      [&](auto& op) {
        op.res = std::move(r);
        using T = std::decay_t<decltype(op)>;
        if constexpr (std::is_same_v<T, update_op>) {
          op.became = spool::completion::pending;
        } else if constexpr (!std::is_same_v<T, enqueue_op> && !std::is_same_v<T, mta_sts_op>) {
          op.count = 0;
        }
      },
      o);
}

inline const result& result_of(const operation& o) {
  return std::visit([](const auto& op) -> const result& { return op.res; }, o);
}

inline result error_result(const std::error_code& ec) {
  if (lmdb::is(ec, ENOSPC) || lmdb::is(ec, EDQUOT)) {
    return {status::full, "spool full: " + ec.message()};
  }
  return {status::error, "spool write failed: " + ec.message()};
}

enum class outcome_kind { committed, map_full, failed };
struct outcome {
  outcome_kind kind = outcome_kind::committed;
  std::error_code ec;
};

inline outcome failure(const std::error_code& ec) {
  if (lmdb::is(ec, MDB_MAP_FULL)) return {outcome_kind::map_full, ec};
  return {outcome_kind::failed, ec};
}

class spool_core {
 public:
  explicit spool_core(const spool_options& o) : opt_(o) {}
  ~spool_core();  // stops the writer, closes the environment, releases the directory
  spool_core(const spool_core&) = delete;
  spool_core& operator=(const spool_core&) = delete;

  std::expected<void, std::string> open();
  void start() {
    writer_ = std::thread([this] {
      ::pthread_setname_np(::pthread_self(), "spool-writer");  // for top -H, ps -L, perf
      run();
    });
  }
  void stop();

  std::string new_id();
  void note_id(std::uint64_t id);
  void submit(operation op);

  // Live queue (`dead` false) or dead spool (`dead` true).
  std::optional<envelope_record> get(std::string_view id, bool dead) const;
  std::optional<std::string> body(std::string_view id, bool dead) const;
  std::string scan(std::string_view after, std::size_t limit,
                   const std::function<void(const envelope_record&)>& visit, bool dead) const;
  std::uint64_t count(bool dead) const;
  std::uint64_t used_bytes() const;

  std::vector<spool::due_entry> due(const std::optional<spool::due_entry>& after,
                                    std::int64_t until_us, std::size_t limit) const;
  std::optional<std::int64_t> next_due_after(std::int64_t after_us) const;
  std::optional<std::string> drop_imported(std::string_view name) const;
  std::vector<std::string> drop_names(std::size_t limit) const;
  std::optional<std::string> mta_sts_record(std::string_view domain) const;
  std::vector<spool::outbox_entry> outbox(std::size_t limit) const;
  std::uint64_t outbox_count() const;
  std::optional<std::string> body_head(std::string_view id, std::size_t limit) const;
  const open_report& report() const { return report_; }

  std::vector<quarantine_entry> quarantined() const { return quarantined_; }
  spool_stats stats() const;
  void fail_next_commits(int error, int count) {
    fault_errno_.store(error);
    fault_count_.store(count);
  }

 private:
  // Write side (open() and then the writer thread only).
  std::expected<void, std::string> lock_dir();
  std::error_code open_env();
  std::error_code open_databases(lmdb::txn& t);
  std::expected<void, std::string> init_databases();
  std::error_code init_once(std::string& refused);
  std::error_code injected_fault();
  std::expected<void, std::string> recover();
  outcome recover_once(bool move);
  std::error_code rebuild_schedule(lmdb::txn& t);
  std::expected<lmdb::txn, std::error_code> begin_write();
  std::error_code reopen();
  bool grow(bool for_remove);
  void shrink_to_cap();
  bool resize(std::uint64_t bytes);
  bool advance();
  std::string full_detail() const;
  std::error_code commit(lmdb::txn& t);  // counts, and applies injected faults
  std::expected<envelope_record, std::error_code> load(const lmdb::txn& t, std::uint64_t id) const;
  std::error_code store(lmdb::txn& t, std::uint64_t id, const envelope_record& r,
                        std::optional<std::int64_t> old_due);
  std::error_code unschedule(lmdb::txn& t, std::uint64_t id, const envelope_record& r);
  std::error_code apply_update(lmdb::txn& t, update_op& u, std::uint64_t& count);
  std::error_code put_dead(lmdb::txn& t, std::uint64_t id, const envelope_record& r);
  // Appends `lines` to the outbox after its last entry (spool_events.cpp).
  std::error_code put_events(lmdb::txn& t, const std::vector<std::string>& lines);
  std::error_code apply_ack(lmdb::txn& t, ack_outbox_op& a);
  outcome apply(std::span<operation* const> ops);
  void apply_one(operation& o);
  void apply_group(std::span<operation> ops);
  enum class reserve_use { never, once, always };
  std::optional<result> chunk_growing(const std::function<outcome()>& chunk, reserve_use use);
  outcome bulk_chunk(bulk_op& op);
  bool bulk_step(bulk_op& op);
  outcome dead_chunk(dead_bulk_op& op);
  bool dead_step(dead_bulk_op& op);
  void requeue(operation op);
  void process(std::vector<operation>& batch, std::vector<operation>& settled);
  std::uint64_t last_txnid() const;
  void flush_unsynced();
  void run();
  static void finish(operation& o);

  // Runs `f(txn)` in a short read transaction under the shared map lock.
  // Returns false when no transaction could be started (MDB_MAP_RESIZED only
  // happens when another process grew the map; the writer adopts the new size
  // at its next transaction, as only it may resize).
  template <class F>
  bool read(F&& f) const {
    std::shared_lock lk(map_lock_);
    auto t = lmdb::txn::begin(env_, MDB_RDONLY);
    if (!t) return false;
    f(*t);
    return true;
  }

  const spool_options opt_;
  std::string claimed_dir_;  // entry in open_dirs() while open
  int lock_fd_ = -1;         // holds the flock() on lock_file while open
  lmdb::env env_;
  lmdb::dbi meta_dbi_, envelope_dbi_, body_dbi_, quarantine_dbi_, schedule_dbi_, dead_dbi_,
      dead_body_dbi_, drops_dbi_, mta_sts_dbi_, events_dbi_;
  std::uint64_t psize_ = 4096;
  // Read transactions hold it shared; changing the map size (or reopening the
  // environment) holds it exclusively, as LMDB requires no live transaction then.
  mutable std::shared_mutex map_lock_;

  open_report report_;
  std::vector<quarantine_entry> quarantined_;

  std::atomic<std::uint64_t> last_id_{0};
  std::uint64_t persisted_id_ = 0;  // writer only
  std::uint64_t advanced_at_ = 0;   // writer only: commits_ after the last advance()

  // Writer only: operations whose transactions committed but whose last meta
  // page is not known to be on disk yet; their `done` waits (see run()).
  std::vector<operation> unsynced_;
  // Writer only: a lazy operation was answered after a commit whose meta page
  // no flush has covered yet.
  bool lazy_unflushed_ = false;

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<operation> pending_;
  std::size_t durable_pending_ = 0;  // operations in pending_ that are not is_lazy()
  bool stopping_ = false;
  std::thread writer_;

  std::atomic<std::uint64_t> map_size_{0};
  std::atomic<std::uint64_t> commits_{0}, failed_commits_{0}, operations_{0}, batches_{0},
      map_resizes_{0}, env_reopens_{0};
  std::atomic<int> fault_errno_{0}, fault_count_{0};
};

}  // namespace queue::detail

namespace queue {

// The one way into a spool's core from outside the facade: the diagnostics in
// spool_diag.hpp and the tests' fault hooks (spool_testing.hpp). A friend of
// spool, as Beast's parsers befriend their test classes.
struct spool_access {
  static detail::spool_core& core(const spool& s) { return *s.core_; }
};

}  // namespace queue
