// The LMDB spool. On disk (environment in options.dir, named databases):
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
// Layout version 2 added schedule, dead and dead_body; a version 1 spool is
// upgraded in place at open (its index is built from the records).
// One writer thread takes every queued operation (up to a bound), applies them in
// one write transaction and commits; no `done` runs before that commit is on
// disk, meta page included (one flush per commit under load, see run()). MDB_MAP_FULL
// grows the map and retries; when it cannot grow, the batch is retried one
// operation at a time so only what does not fit fails (everything but enqueue may
// use a small reserve above max_size, so deleting and recording delivery results
// always work and a full queue can drain). Operations over every message
// (reschedule, hold, release) run alone, in transactions of a bounded number of
// messages, so a huge queue is never held in memory. Dead-spool replay and
// purge by age work the same way but go back to the end of the line after each
// transaction, so a long pass over the dead spool never stalls enqueues.
// Committed data is never touched by a failure: a failed transaction is
// aborted as a whole.
#include "queue/spool.hpp"

#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <charconv>
#include <deque>
#include <limits>
#include <mutex>
#include <set>
#include <shared_mutex>
#include <span>
#include <system_error>
#include <thread>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <variant>

#include "queue/lmdb.hpp"
#include "queue/queue_id.hpp"
#include "queue/spool_diag.hpp"

namespace queue {
namespace {

constexpr unsigned max_dbs = 16;
constexpr unsigned max_readers = 1024;
constexpr std::size_t max_batch_ops = 4096;
constexpr std::size_t max_batch_bytes = 64u << 20;
constexpr std::uint64_t min_remove_reserve = 256u << 10;
constexpr std::uint64_t map_rounding = 1u << 20;
// One transaction of a bulk operation handles at most this many messages (or
// this many bytes of records, whichever comes first).
constexpr std::size_t bulk_chunk_messages = 1024;
constexpr std::size_t bulk_chunk_bytes = 4u << 20;

constexpr const char* db_meta = "meta";
constexpr const char* db_envelope = "envelope";
constexpr const char* db_body = "body";
constexpr const char* db_quarantine = "quarantine";
constexpr const char* db_schedule = "schedule";
constexpr const char* db_dead = "dead";
constexpr const char* db_dead_body = "dead_body";
constexpr std::string_view meta_format = "format";
constexpr std::string_view meta_last_id = "last_id";
constexpr char spool_format = 2;
constexpr char spool_format_v1 = 1;  // no schedule / dead databases yet: upgraded at open
constexpr std::string_view empty_value{"", 0};  // schedule entries carry nothing
constexpr char quarantine_envelope = 'e';
constexpr char quarantine_body = 'b';
constexpr char quarantine_reason = 'r';

std::string be64(std::uint64_t v) {
  id_key k = key_of(v);
  return {k.data(), k.size()};
}

// The schedule key of a message due at `due_us`: negative times sort as 0.
using schedule_key = std::array<char, 16>;

schedule_key make_schedule_key(std::int64_t due_us, std::uint64_t id) {
  schedule_key k{};
  const id_key d = key_of(static_cast<std::uint64_t>(std::max<std::int64_t>(due_us, 0)));
  const id_key i = key_of(id);
  std::copy(d.begin(), d.end(), k.begin());
  std::copy(i.begin(), i.end(), k.begin() + 8);
  return k;
}

std::string_view key_view(const schedule_key& k) {
  return {k.data(), k.size()};
}

// A schedule key read back; nullopt when it is not 16 bytes.
std::optional<spool::due_entry> parse_schedule_key(std::string_view k) {
  if (k.size() != 16) return std::nullopt;
  const auto due = id_of_key(k.substr(0, 8));
  const auto id = id_of_key(k.substr(8));
  if (!due || !id) return std::nullopt;
  return spool::due_entry{static_cast<std::int64_t>(*due), format_id(*id)};
}

// When the message is due: the smallest next_attempt_us of its pending
// recipients; nullopt when it is held or has none (it has no schedule entry).
std::optional<std::int64_t> due_of(const envelope_record& r) {
  if ((r.flags & flag_held) != 0) return std::nullopt;
  std::optional<std::int64_t> due;
  for (const recipient& rc : r.recipients) {
    if (rc.state == rcpt_state::pending && (!due || rc.next_attempt_us < *due)) {
      due = rc.next_attempt_us;
    }
  }
  return due;
}

void set_pending_due(envelope_record& r, std::int64_t due_us) {
  for (recipient& rc : r.recipients) {
    if (rc.state == rcpt_state::pending) rc.next_attempt_us = due_us;
  }
}

bool has_pending(const envelope_record& r) {
  return std::any_of(r.recipients.begin(), r.recipients.end(),
                     [](const recipient& rc) { return rc.state == rcpt_state::pending; });
}

// A dead-spool record made live again (see spool::replay_dead()).
envelope_record revived(envelope_record r, std::int64_t now_us) {
  std::erase_if(r.recipients, [](const recipient& rc) { return rc.state != rcpt_state::failed; });
  for (recipient& rc : r.recipients) {
    rc.state = rcpt_state::pending;
    rc.attempts = 0;
    rc.next_attempt_us = now_us;
    rc.first_attempt_us = 0;
    rc.last_attempt_us = 0;
    rc.reason.clear();
  }
  r.flags &= ~std::uint32_t{flag_held | flag_delay_warned};
  r.arrival_us = now_us;
  return r;
}

std::int64_t wall_clock_us() {
  using namespace std::chrono;
  return duration_cast<microseconds>(system_clock::now().time_since_epoch()).count();
}

std::uint64_t round_up(std::uint64_t v, std::uint64_t m) {
  return (v + m - 1) / m * m;
}
std::uint64_t round_down(std::uint64_t v, std::uint64_t m) {
  return v / m * m;
}

std::optional<std::uint64_t> disk_available(const std::filesystem::path& dir) {
  struct statvfs s {};
  if (::statvfs(dir.c_str(), &s) != 0) return std::nullopt;
  return static_cast<std::uint64_t>(s.f_bavail) * s.f_frsize;
}

std::uint64_t data_file_size(const std::filesystem::path& dir) {
  struct stat st {};
  if (::stat((dir / "data.mdb").c_str(), &st) != 0) return 0;
  return static_cast<std::uint64_t>(st.st_size);
}

std::string hex(std::string_view bytes) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string s;
  for (unsigned char c : bytes) {
    s.push_back(digits[c >> 4]);
    s.push_back(digits[c & 0xf]);
  }
  return s;
}

std::string name_of_key(std::string_view key) {
  if (auto id = id_of_key(key)) return format_id(*id);
  return "key:" + hex(key);
}

// Spool directories open in this process (canonical paths).
std::mutex& open_dirs_mutex() {
  static std::mutex m;
  return m;
}
std::set<std::string>& open_dirs() {
  static std::set<std::string> dirs;
  return dirs;
}

struct enqueue_op {
  std::uint64_t id = 0;
  std::string envelope;             // encoded on the caller's thread
  std::optional<std::int64_t> due;  // its schedule entry, if any
  std::string body;
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

// reschedule / hold / release: run alone, in chunks (see run_bulk()).
enum class bulk_kind { reschedule, hold, release };
struct bulk_op {
  bulk_kind kind = bulk_kind::reschedule;
  std::vector<std::uint64_t> ids;
  bool all = false;
  std::int64_t when_us = 0;  // reschedule: the new due time; release: now
  std::function<void(result, std::size_t)> done;
  result res;
  std::size_t count = 0;  // messages changed
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

using operation =
    std::variant<enqueue_op, remove_op, update_op, purge_dead_op, bulk_op, dead_bulk_op>;

std::size_t op_bytes(const operation& o) {
  if (const auto* e = std::get_if<enqueue_op>(&o)) return e->envelope.size() + e->body.size();
  if (const auto* u = std::get_if<update_op>(&o)) return 64 + 256 * u->updates.size();
  return 64;
}

bool is_bulk(const operation& o) {
  return std::holds_alternative<bulk_op>(o) || std::holds_alternative<dead_bulk_op>(o);
}

bool is_rejected(const operation& o) {
  if (const auto* e = std::get_if<enqueue_op>(&o)) return e->rejected;
  if (const auto* u = std::get_if<update_op>(&o)) return u->rejected;
  return false;
}

void set_result(operation& o, result r) {
  std::visit(
      [&](auto& op) {
        op.res = std::move(r);
        using T = std::decay_t<decltype(op)>;
        if constexpr (std::is_same_v<T, update_op>) {
          op.became = spool::completion::pending;
        } else if constexpr (!std::is_same_v<T, enqueue_op>) {
          op.count = 0;
        }
      },
      o);
}

const result& result_of(const operation& o) {
  return std::visit([](const auto& op) -> const result& { return op.res; }, o);
}

result error_result(const std::error_code& ec) {
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

outcome failure(const std::error_code& ec) {
  if (lmdb::is(ec, MDB_MAP_FULL)) return {outcome_kind::map_full, ec};
  return {outcome_kind::failed, ec};
}

}  // namespace

namespace detail {

class spool_core {
 public:
  explicit spool_core(const spool_options& o) : opt_(o) {}
  ~spool_core() {
    stop();
    env_.close();
    if (!claimed_dir_.empty()) {
      std::lock_guard lk(open_dirs_mutex());
      open_dirs().erase(claimed_dir_);
    }
  }
  spool_core(const spool_core&) = delete;
  spool_core& operator=(const spool_core&) = delete;

  std::expected<void, std::string> open();
  void start() {
    writer_ = std::thread([this] { run(); });
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
  const open_report& report() const { return report_; }

  std::vector<quarantine_entry> quarantined() const { return quarantined_; }
  spool_stats stats() const;
  void fail_next_commits(int error, int count) {
    fault_errno_.store(error);
    fault_count_.store(count);
  }

 private:
  // Write side (open() and then the writer thread only).
  std::error_code open_env();
  std::error_code open_databases(lmdb::txn& t);
  std::expected<void, std::string> init_databases();
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
  std::error_code commit(lmdb::txn& t);
  std::expected<envelope_record, std::error_code> load(const lmdb::txn& t, std::uint64_t id) const;
  std::error_code store(lmdb::txn& t, std::uint64_t id, const envelope_record& r,
                        std::optional<std::int64_t> old_due);
  std::error_code unschedule(lmdb::txn& t, std::uint64_t id, const envelope_record& r);
  std::error_code apply_update(lmdb::txn& t, update_op& u, std::uint64_t& count);
  std::error_code put_dead(lmdb::txn& t, std::uint64_t id, const envelope_record& r);
  outcome apply(std::span<operation* const> ops);
  void apply_one(operation& o);
  void apply_group(std::span<operation> ops);
  struct bulk_cursor;
  outcome bulk_chunk(bulk_op& op, bulk_cursor& at);
  void run_bulk(bulk_op& op);
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
  lmdb::env env_;
  lmdb::dbi meta_dbi_, envelope_dbi_, body_dbi_, quarantine_dbi_, schedule_dbi_, dead_dbi_,
      dead_body_dbi_;
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

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<operation> pending_;
  bool stopping_ = false;
  std::thread writer_;

  std::atomic<std::uint64_t> map_size_{0};
  std::atomic<std::uint64_t> commits_{0}, failed_commits_{0}, operations_{0}, batches_{0},
      map_resizes_{0}, env_reopens_{0};
  std::atomic<int> fault_errno_{0}, fault_count_{0};
};

std::error_code spool_core::open_env() {
  auto e = lmdb::env::create();
  if (!e) return e.error();
  if (auto ec = e->set_maxdbs(max_dbs)) return ec;
  if (auto ec = e->set_maxreaders(max_readers)) return ec;
  if (auto ec = e->set_mapsize(map_size_.load())) return ec;
  // MDB_NOMETASYNC: a commit flushes its data pages but not the meta page that
  // makes it current (ACI, not D); the writer makes it durable before any
  // `done` runs (see run()). No MDB_NOSYNC, no MDB_WRITEMAP.
  if (auto ec = e->open(opt_.dir.c_str(), MDB_NOTLS | MDB_NOMETASYNC, 0600)) return ec;
  e->reader_check();
  env_ = std::move(*e);
  psize_ = env_.stat().ms_psize;
  map_size_ = env_.info().me_mapsize;
  return {};
}

std::expected<void, std::string> spool_core::open() {
  const std::string dir = opt_.dir.string();
  if (dir.empty()) return std::unexpected(std::string("spool directory is not set"));
  std::error_code fec;
  if (opt_.dir.has_parent_path()) std::filesystem::create_directories(opt_.dir.parent_path(), fec);
  if (::mkdir(opt_.dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return std::unexpected("cannot create spool directory " + dir + ": " + std::strerror(errno));
  }
  if (!std::filesystem::is_directory(opt_.dir, fec)) {
    return std::unexpected("spool " + dir + " is not a directory");
  }
  // The queue holds other people's mail: the directory is ours alone (0700).
  struct stat st {};
  if (::stat(dir.c_str(), &st) == 0 && (st.st_mode & 077) != 0 && ::chmod(dir.c_str(), 0700) != 0) {
    char mode[8] = {};
    std::to_chars(mode, mode + sizeof mode - 1, st.st_mode & 07777, 8);
    return std::unexpected("spool directory " + dir + " is open to others (mode " + mode +
                           ") and cannot be made 0700: " + std::strerror(errno));
  }
  // LMDB must not open one environment twice in a process (closing either
  // would drop the other's file locks).
  auto canonical = std::filesystem::canonical(opt_.dir, fec);
  if (fec) return std::unexpected("cannot resolve spool directory " + dir + ": " + fec.message());
  {
    std::lock_guard lk(open_dirs_mutex());
    if (!open_dirs().insert(canonical.string()).second) {
      return std::unexpected("spool " + dir + " is already open in this process");
    }
  }
  claimed_dir_ = canonical.string();

  // Start with room for the data already there plus half again.
  const auto page = static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
  std::uint64_t size =
      std::max(opt_.initial_map_size, round_up(data_file_size(opt_.dir) * 3 / 2, map_rounding));
  if (opt_.max_size != 0) size = std::min(size, opt_.max_size);
  map_size_ = std::max(round_up(size, page), page * 16);
  if (auto ec = open_env()) {
    return std::unexpected("cannot open the LMDB spool in " + dir + ": " + ec.message());
  }
  if (auto r = init_databases(); !r) return r;
  if (auto r = recover(); !r) return r;
  // What opening committed (format, upgrade, index, set-aside records) is on
  // disk before the spool is used (see run() for MDB_NOMETASYNC).
  if (auto ec = env_.sync(true)) {
    return std::unexpected("cannot flush the LMDB spool in " + dir + ": " + ec.message());
  }
  return {};
}

// Opens (creating) every named database in `t`.
std::error_code spool_core::open_databases(lmdb::txn& t) {
  const std::pair<const char*, lmdb::dbi*> dbs[] = {
      {db_meta, &meta_dbi_},           {db_envelope, &envelope_dbi_},
      {db_body, &body_dbi_},           {db_quarantine, &quarantine_dbi_},
      {db_schedule, &schedule_dbi_},   {db_dead, &dead_dbi_},
      {db_dead_body, &dead_body_dbi_},
  };
  for (const auto& [name, dbi] : dbs) {
    auto d = t.open_dbi(name, MDB_CREATE);
    if (!d) return d.error();
    *dbi = *d;
  }
  return {};
}

std::expected<void, std::string> spool_core::init_databases() {
  for (;;) {
    auto t = lmdb::txn::begin(env_, 0);
    if (!t) return std::unexpected("cannot start a spool transaction: " + t.error().message());
    std::error_code ec = open_databases(*t);
    if (!ec) {
      auto f = t->get(meta_dbi_, meta_format);
      if (f && (f->size() != 1 || ((*f)[0] != spool_format && (*f)[0] != spool_format_v1))) {
        return std::unexpected("unknown spool format in " + opt_.dir.string() + " (expected " +
                               std::to_string(spool_format) + ")");
      }
      // A version 1 spool only lacks databases that were just created (and the
      // schedule index, which recover() builds).
      const bool write_format = f ? (*f)[0] != spool_format : lmdb::is(f.error(), MDB_NOTFOUND);
      if (!f && !lmdb::is(f.error(), MDB_NOTFOUND)) {
        ec = f.error();
      } else if (write_format) {
        ec = t->put(meta_dbi_, meta_format, std::string_view(&spool_format, 1));
      }
    }
    if (!ec) {
      auto last = t->get(meta_dbi_, meta_last_id);
      if (last) {
        persisted_id_ = id_of_key(*last).value_or(0);
      } else if (!lmdb::is(last.error(), MDB_NOTFOUND)) {
        ec = last.error();
      }
    }
    if (!ec) ec = t->commit();
    if (!ec) return {};
    if (lmdb::is(ec, MDB_MAP_FULL) && grow(false)) continue;
    return std::unexpected("cannot initialise the spool databases: " + ec.message());
  }
}

std::expected<void, std::string> spool_core::recover() {
  for (;;) {
    outcome out = recover_once(true);
    if (out.kind == outcome_kind::committed) return {};
    if (out.kind == outcome_kind::map_full && grow(false)) continue;
    if (out.kind == outcome_kind::failed) {
      return std::unexpected("cannot read the spool: " + out.ec.message());
    }
    break;
  }
  // No room to move damaged records: report them, leave them where they are.
  outcome out = recover_once(false);
  if (out.kind != outcome_kind::committed) {
    return std::unexpected("cannot read the spool: " + out.ec.message());
  }
  return {};
}

outcome spool_core::recover_once(bool move) {
  report_ = {};
  quarantined_.clear();
  auto t = lmdb::txn::begin(env_, move ? 0 : MDB_RDONLY);
  if (!t) return failure(t.error());

  struct damaged {
    std::string key;
    std::optional<std::string> envelope;
    std::string reason;
  };
  std::vector<damaged> bad;
  std::uint64_t max_id = persisted_id_;
  // The schedule index is checked against the records as they are read; any
  // disagreement (or an index from before it existed) rebuilds it.
  bool schedule_agrees = true;
  std::uint64_t expected_entries = 0;
  {
    auto ce = lmdb::cursor::open(*t, envelope_dbi_);
    auto cb = lmdb::cursor::open(*t, body_dbi_);
    if (!ce) return failure(ce.error());
    if (!cb) return failure(cb.error());
    MDB_val ek{}, ev{}, bk{};
    auto ee = ce->get(&ek, &ev, MDB_FIRST);
    auto be = cb->get(&bk, nullptr, MDB_FIRST);
    // Walk both databases in key order, pairing each envelope with its body.
    for (;;) {
      if (ee && !lmdb::is(ee, MDB_NOTFOUND)) return failure(ee);
      if (be && !lmdb::is(be, MDB_NOTFOUND)) return failure(be);
      const bool have_e = !ee, have_b = !be;
      if (!have_e && !have_b) break;
      const int c = !have_b   ? -1
                    : !have_e ? 1
                              : t->compare(envelope_dbi_, lmdb::to_view(ek), lmdb::to_view(bk));
      if (c > 0) {
        max_id = std::max(max_id, id_of_key(lmdb::to_view(bk)).value_or(0));
        bad.push_back({std::string(lmdb::to_view(bk)), std::nullopt, "body without envelope"});
        be = cb->get(&bk, nullptr, MDB_NEXT);
        continue;
      }
      const std::string_view key = lmdb::to_view(ek);
      const auto id = id_of_key(key);
      if (!id) {
        bad.push_back(
            {std::string(key), std::string(lmdb::to_view(ev)), "key is not an 8-byte queue ID"});
      } else {
        max_id = std::max(max_id, *id);
        auto r = decode(format_id(*id), lmdb::to_view(ev));
        if (!r) {
          bad.push_back({std::string(key), std::string(lmdb::to_view(ev)), r.error()});
        } else if (c < 0) {
          bad.push_back({std::string(key), std::string(lmdb::to_view(ev)), "body missing"});
        } else {
          ++report_.messages;
          report_.bytes += r->size;
          for (const recipient& rc : r->recipients) {
            if (rc.state == rcpt_state::pending) ++report_.recipients_pending;
          }
          if ((r->flags & flag_held) != 0) ++report_.held;
          if (const auto due = due_of(*r)) {
            ++expected_entries;
            if (schedule_agrees) {
              const schedule_key sk = make_schedule_key(*due, *id);
              auto found = t->get(schedule_dbi_, key_view(sk));
              if (!found && !lmdb::is(found.error(), MDB_NOTFOUND)) return failure(found.error());
              schedule_agrees = found.has_value();
            }
          }
        }
      }
      ee = ce->get(&ek, &ev, MDB_NEXT);
      if (c == 0) be = cb->get(&bk, nullptr, MDB_NEXT);
    }
    // Quarantine keys carry the ID in their first 8 bytes: never hand it out again.
    auto cq = lmdb::cursor::open(*t, quarantine_dbi_);
    if (!cq) return failure(cq.error());
    MDB_val qk{};
    if (!cq->get(&qk, nullptr, MDB_LAST) && qk.mv_size > 8) {
      max_id = std::max(max_id, id_of_key(lmdb::to_view(qk).substr(0, 8)).value_or(0));
    }
    // Neither are the IDs of dead-spool entries.
    auto cd = lmdb::cursor::open(*t, dead_dbi_);
    if (!cd) return failure(cd.error());
    MDB_val dk{};
    if (!cd->get(&dk, nullptr, MDB_LAST)) {
      max_id = std::max(max_id, id_of_key(lmdb::to_view(dk)).value_or(0));
    }
  }
  auto sched = t->stat(schedule_dbi_);
  if (!sched) return failure(sched.error());
  if (sched->ms_entries != expected_entries) schedule_agrees = false;
  auto dead = t->stat(dead_dbi_);
  if (!dead) return failure(dead.error());
  report_.dead = dead->ms_entries;
  report_.scheduled = sched->ms_entries;

  std::error_code ec;
  if (move) {
    for (const damaged& d : bad) {
      std::string qkey = d.key + quarantine_envelope;
      if (d.envelope) ec = t->put(quarantine_dbi_, qkey, *d.envelope);
      if (!ec) {
        auto b = t->get(body_dbi_, d.key);
        if (b) {
          const std::string copy(*b);
          qkey.back() = quarantine_body;
          ec = t->put(quarantine_dbi_, qkey, copy);
          if (!ec) ec = t->del(body_dbi_, d.key);
        } else if (!lmdb::is(b.error(), MDB_NOTFOUND)) {
          ec = b.error();
        }
      }
      if (!ec) {
        qkey.back() = quarantine_reason;
        ec = t->put(quarantine_dbi_, qkey, d.reason);
      }
      if (!ec && d.envelope) ec = t->del(envelope_dbi_, d.key);
      if (ec) return failure(ec);
    }
    // Only the good records are left in `envelope` now.
    if (!schedule_agrees) {
      if ((ec = rebuild_schedule(*t))) return failure(ec);
      report_.scheduled = expected_entries;
      report_.schedule_rebuilt = true;
    }
    if ((!bad.empty() || !schedule_agrees) && (ec = t->commit())) return failure(ec);
  }

  for (const damaged& d : bad) {
    quarantined_.push_back({name_of_key(d.key), move ? d.reason : d.reason + " (left in place)"});
  }
  report_.quarantined = bad.size();
  last_id_ = max_id;
  return {};
}

// Refills the schedule index from the envelope records, streaming through a
// cursor (one record in memory at a time). Records that do not decode get no
// entry (open() has moved them to quarantine before this runs).
std::error_code spool_core::rebuild_schedule(lmdb::txn& t) {
  if (auto ec = t.clear(schedule_dbi_)) return ec;
  auto c = lmdb::cursor::open(t, envelope_dbi_);
  if (!c) return c.error();
  MDB_val k{}, v{};
  std::error_code ec;
  for (ec = c->get(&k, &v, MDB_FIRST); !ec; ec = c->get(&k, &v, MDB_NEXT)) {
    const auto id = id_of_key(lmdb::to_view(k));
    if (!id) continue;
    auto r = decode(format_id(*id), lmdb::to_view(v));
    if (!r) continue;
    if (const auto due = due_of(*r)) {
      const schedule_key sk = make_schedule_key(*due, *id);
      if (auto e = t.put(schedule_dbi_, key_view(sk), empty_value)) return e;
    }
  }
  return lmdb::is(ec, MDB_NOTFOUND) ? std::error_code{} : ec;
}

std::error_code spool_core::reopen() {
  std::unique_lock lk(map_lock_);
  env_.close();
  if (auto ec = open_env()) return ec;
  auto t = lmdb::txn::begin(env_, 0);
  if (!t) return t.error();
  if (auto ec = open_databases(*t)) return ec;
  if (auto ec = t->commit()) return ec;
  ++env_reopens_;
  return {};
}

std::expected<lmdb::txn, std::error_code> spool_core::begin_write() {
  std::error_code last = lmdb::make_error(MDB_PANIC);
  for (int attempt = 0; attempt < 3; ++attempt) {
    if (!env_) {
      if (auto ec = reopen()) return std::unexpected(ec);
    }
    auto t = lmdb::txn::begin(env_, 0);
    if (t) return t;
    last = t.error();
    if (lmdb::is(last, MDB_MAP_RESIZED)) {
      std::unique_lock lk(map_lock_);
      env_.set_mapsize(0);
      map_size_ = env_.info().me_mapsize;
    } else if (lmdb::is(last, MDB_PANIC)) {
      // A failed meta-page write leaves the environment unusable: start afresh.
      if (auto ec = reopen()) return std::unexpected(ec);
    } else {
      break;
    }
  }
  return std::unexpected(last);
}

// Doubles the map, within max_size or, with no max_size, within what the file
// system can still hold. A remove may go a reserve beyond that (and beyond the
// current size, should max_size have been lowered): deleting must always work.
// False when the map cannot grow.
bool spool_core::grow(bool for_remove) {
  const std::uint64_t cur = map_size_;
  std::uint64_t cap = 0;
  if (opt_.max_size != 0) {
    cap = opt_.max_size;
  } else if (auto avail = disk_available(opt_.dir)) {
    cap = data_file_size(opt_.dir) + *avail;
  } else {
    cap = cur * 2;
  }
  if (for_remove) cap = std::max(cap, cur) + std::max(min_remove_reserve, opt_.max_size / 32);
  const std::uint64_t want = round_down(std::min(cur * 2, cap), psize_);
  if (want <= cur) return false;
  return resize(want) && map_size_ > cur;
}

// After a remove used the reserve, bring the map back to max_size (LMDB keeps
// it at least as large as the pages in use).
void spool_core::shrink_to_cap() {
  if (opt_.max_size == 0 || map_size_ <= opt_.max_size) return;
  resize(round_up(opt_.max_size, psize_));
}

// Remaps with no transaction alive in the process: the writer has none open
// here and readers are held off by the exclusive lock.
bool spool_core::resize(std::uint64_t bytes) {
  std::unique_lock lk(map_lock_);
  if (!env_) return false;
  if (env_.set_mapsize(bytes)) {
    // LMDB has unmapped the old map; if mapping the old size fails too, the
    // environment is closed and the next write transaction reopens it.
    if (env_.set_mapsize(map_size_)) env_.close();
    return false;
  }
  map_size_ = env_.info().me_mapsize;
  ++map_resizes_;
  return true;
}

std::string spool_core::full_detail() const {
  if (opt_.max_size != 0) {
    return "spool full: the map cannot grow past max_size (" + std::to_string(opt_.max_size) +
           " bytes)";
  }
  return "spool full: not enough disk space to grow the map past " +
         std::to_string(map_size_.load()) + " bytes";
}

std::error_code spool_core::commit(lmdb::txn& t) {
  if (fault_count_.load() > 0) {
    fault_count_.fetch_sub(1);
    t.abort();
    ++failed_commits_;
    return lmdb::make_error(fault_errno_.load());
  }
  if (auto ec = t.commit()) {
    ++failed_commits_;
    return ec;
  }
  ++commits_;
  return {};
}

// The live record of `id`: MDB_NOTFOUND when there is none, EBADMSG when it
// does not decode, another code when LMDB failed.
std::expected<envelope_record, std::error_code> spool_core::load(const lmdb::txn& t,
                                                                 std::uint64_t id) const {
  const id_key key = key_of(id);
  auto bytes = t.get(envelope_dbi_, key_view(key));
  if (!bytes) return std::unexpected(bytes.error());
  auto r = decode(format_id(id), *bytes);
  if (!r) return std::unexpected(lmdb::make_error(EBADMSG));
  return std::move(*r);
}

// Deletes the schedule entry `r` has, if any.
std::error_code spool_core::unschedule(lmdb::txn& t, std::uint64_t id, const envelope_record& r) {
  const auto due = due_of(r);
  if (!due) return {};
  const schedule_key sk = make_schedule_key(*due, id);
  auto ec = t.del(schedule_dbi_, key_view(sk));
  return lmdb::is(ec, MDB_NOTFOUND) ? std::error_code{} : ec;
}

// Writes `r` back and moves its schedule entry from `old_due` (what the stored
// record said) to what `r` says.
std::error_code spool_core::store(lmdb::txn& t, std::uint64_t id, const envelope_record& r,
                                  std::optional<std::int64_t> old_due) {
  if (old_due) {
    const schedule_key old_key = make_schedule_key(*old_due, id);
    auto ec = t.del(schedule_dbi_, key_view(old_key));
    if (ec && !lmdb::is(ec, MDB_NOTFOUND)) return ec;
  }
  const id_key key = key_of(id);
  if (auto ec = t.put(envelope_dbi_, key_view(key), encode(r))) return ec;
  if (const auto due = due_of(r)) {
    const schedule_key new_key = make_schedule_key(*due, id);
    if (auto ec = t.put(schedule_dbi_, key_view(new_key), empty_value)) return ec;
  }
  return {};
}

// One update_recipients() inside the batch transaction. A problem with this
// operation alone (gone, mismatched address) goes in u.res and changes nothing;
// an error return breaks the whole transaction. `count` tracks live messages.
std::error_code spool_core::apply_update(lmdb::txn& t, update_op& u, std::uint64_t& count) {
  u.res = {};
  u.became = spool::completion::pending;
  auto r = load(t, u.id);
  if (!r) {
    if (lmdb::is(r.error(), MDB_NOTFOUND)) {
      u.res = {status::not_found, "no such message"};
      return {};
    }
    if (lmdb::is(r.error(), EBADMSG)) {
      u.res = {status::error, "the record of " + format_id(u.id) + " does not decode"};
      return {};
    }
    return r.error();
  }
  for (const spool::recipient_update& up : u.updates) {
    if (up.index >= r->recipients.size()) {
      u.res = {status::error, "recipient index " + std::to_string(up.index) + " out of range (" +
                                  std::to_string(r->recipients.size()) + " recipients)"};
      return {};
    }
    if (r->recipients[up.index].address != up.value.address) {
      u.res = {status::error, "recipient " + std::to_string(up.index) + " is <" +
                                  r->recipients[up.index].address + ">, not <" + up.value.address +
                                  ">"};
      return {};
    }
  }
  const auto old_due = due_of(*r);
  for (const spool::recipient_update& up : u.updates) r->recipients[up.index] = up.value;
  r->flags |= u.flags_set;
  const bool failed_now =
      std::any_of(u.updates.begin(), u.updates.end(), [](const spool::recipient_update& up) {
        return up.value.state == rcpt_state::failed;
      });
  if (has_pending(*r)) {
    // Each recipient keeps its own fate: the failed ones are in the dead spool
    // now, the others stay queued.
    if (failed_now) {
      if (auto ec = put_dead(t, u.id, *r)) return ec;
    }
    return store(t, u.id, *r, old_due);
  }

  // Every recipient is final: the message leaves the queue.
  const id_key key = key_of(u.id);
  if (old_due) {
    const schedule_key old_key = make_schedule_key(*old_due, u.id);
    auto ec = t.del(schedule_dbi_, key_view(old_key));
    if (ec && !lmdb::is(ec, MDB_NOTFOUND)) return ec;
  }
  const bool failed =
      std::any_of(r->recipients.begin(), r->recipients.end(),
                  [](const recipient& rc) { return rc.state == rcpt_state::failed; });
  if (failed) {
    if (failed_now) {
      if (auto ec = put_dead(t, u.id, *r)) return ec;
    }
    u.became = spool::completion::dead;
  } else {
    u.became = spool::completion::delivered;
  }
  if (auto ec = t.del(envelope_dbi_, key_view(key))) return ec;
  if (auto ec = t.del(body_dbi_, key_view(key)); ec && !lmdb::is(ec, MDB_NOTFOUND)) return ec;
  --count;
  return {};
}

// The dead-spool entry of `r`: its failed recipients (all of them, so an entry
// written when an earlier recipient failed is replaced) and its message.
std::error_code spool_core::put_dead(lmdb::txn& t, std::uint64_t id, const envelope_record& r) {
  const id_key key = key_of(id);
  // Copied: the view points into the map, and the puts below may move pages.
  std::optional<std::string> body;
  auto b = t.get(body_dbi_, key_view(key));
  if (b) {
    body.emplace(*b);
  } else if (!lmdb::is(b.error(), MDB_NOTFOUND)) {
    return b.error();
  }
  envelope_record dead = r;
  std::erase_if(dead.recipients, [](const recipient& rc) { return rc.state != rcpt_state::failed; });
  if (auto ec = t.put(dead_dbi_, key_view(key), encode(dead))) return ec;
  if (body) return t.put(dead_body_dbi_, key_view(key), *body);
  auto ec = t.del(dead_body_dbi_, key_view(key));
  return lmdb::is(ec, MDB_NOTFOUND) ? std::error_code{} : ec;
}

outcome spool_core::apply(std::span<operation* const> ops) {
  auto t = begin_write();
  if (!t) return failure(t.error());
  auto st = t->stat(envelope_dbi_);
  if (!st) return failure(st.error());
  std::uint64_t count = st->ms_entries;
  std::optional<std::uint64_t> avail;
  bool avail_checked = false;
  std::uint64_t high = 0;
  std::error_code ec;

  for (operation* o : ops) {
    if (auto* e = std::get_if<enqueue_op>(o)) {
      e->res = {};
      if (opt_.min_free_disk != 0) {
        if (!avail_checked) {
          avail = disk_available(opt_.dir);
          avail_checked = true;
        }
        if (avail && *avail < opt_.min_free_disk) {
          e->res = {status::full, "spool full: " + std::to_string(*avail) +
                                      " bytes free on disk, below min_free_disk (" +
                                      std::to_string(opt_.min_free_disk) + ")"};
          continue;
        }
      }
      if (opt_.max_messages != 0 && count >= opt_.max_messages) {
        e->res = {status::full,
                  "spool full: max_messages (" + std::to_string(opt_.max_messages) + ") reached"};
        continue;
      }
      const id_key key = key_of(e->id);
      // IDs grow with time, so a new message usually sorts last: MDB_APPEND then
      // fills pages instead of splitting them in half (a body per page at
      // 1 KiB). An out-of-order ID gets MDB_KEYEXIST and takes the normal path.
      ec = t->put(envelope_dbi_, key_view(key), e->envelope, MDB_APPEND);
      if (lmdb::is(ec, MDB_KEYEXIST))
        ec = t->put(envelope_dbi_, key_view(key), e->envelope, MDB_NOOVERWRITE);
      if (lmdb::is(ec, MDB_KEYEXIST)) {
        e->res = {status::error, "queue ID " + format_id(e->id) + " already exists"};
        continue;
      }
      if (ec) return failure(ec);
      ec = t->put(body_dbi_, key_view(key), e->body, MDB_APPEND);
      if (lmdb::is(ec, MDB_KEYEXIST)) ec = t->put(body_dbi_, key_view(key), e->body);
      if (ec) return failure(ec);
      if (e->due) {
        const schedule_key sk = make_schedule_key(*e->due, e->id);
        if ((ec = t->put(schedule_dbi_, key_view(sk), empty_value))) return failure(ec);
      }
      ++count;
      high = std::max(high, e->id);
    } else if (auto* rm = std::get_if<remove_op>(o)) {
      auto& r = *rm;
      r.res = {};
      r.count = 0;
      if (r.all) {
        if (count != 0) {
          if ((ec = t->clear(envelope_dbi_)) || (ec = t->clear(body_dbi_)) ||
              (ec = t->clear(schedule_dbi_))) {
            return failure(ec);
          }
          r.count = count;
          count = 0;
        }
      } else {
        for (std::uint64_t id : r.ids) {
          // The schedule key comes from the stored record.
          auto rec = load(*t, id);
          if (!rec && lmdb::is(rec.error(), MDB_NOTFOUND)) continue;
          if (!rec && !lmdb::is(rec.error(), EBADMSG)) return failure(rec.error());
          if (rec && (ec = unschedule(*t, id, *rec))) return failure(ec);
          const id_key key = key_of(id);
          if ((ec = t->del(envelope_dbi_, key_view(key)))) return failure(ec);
          ec = t->del(body_dbi_, key_view(key));
          if (ec && !lmdb::is(ec, MDB_NOTFOUND)) return failure(ec);
          ++r.count;
          --count;
        }
      }
      if (r.count == 0) r.res = {status::not_found, "no such message"};
    } else if (auto* u = std::get_if<update_op>(o)) {
      if ((ec = apply_update(*t, *u, count))) return failure(ec);
    } else {
      auto& p = std::get<purge_dead_op>(*o);
      p.res = {};
      p.count = 0;
      if (p.all) {
        auto dead = t->stat(dead_dbi_);
        if (!dead) return failure(dead.error());
        if (dead->ms_entries != 0) {
          if ((ec = t->clear(dead_dbi_)) || (ec = t->clear(dead_body_dbi_))) return failure(ec);
          p.count = dead->ms_entries;
        }
      } else {
        for (std::uint64_t id : p.ids) {
          const id_key key = key_of(id);
          ec = t->del(dead_dbi_, key_view(key));
          if (lmdb::is(ec, MDB_NOTFOUND)) continue;
          if (ec) return failure(ec);
          ec = t->del(dead_body_dbi_, key_view(key));
          if (ec && !lmdb::is(ec, MDB_NOTFOUND)) return failure(ec);
          ++p.count;
        }
      }
      if (p.count == 0) p.res = {status::not_found, "no such dead-spool entry"};
    }
  }

  high = std::max(high, last_id_.load());
  if (high > persisted_id_) {
    if ((ec = t->put(meta_dbi_, meta_last_id, be64(high)))) return failure(ec);
  }
  if ((ec = commit(*t))) return failure(ec);
  persisted_id_ = std::max(persisted_id_, high);
  return {};
}

// LMDB reuses the pages a transaction frees only two commits later (the previous
// snapshot must survive a torn meta page). When the map is at its limit, one
// small commit lets an enqueue use the room a recent remove made. Done at most
// once per real commit, so a spool that stays full costs no extra syncs.
bool spool_core::advance() {
  if (commits_ == advanced_at_) return false;
  auto t = begin_write();
  if (!t) return false;
  const std::uint64_t high = std::max(persisted_id_, last_id_.load());
  if (t->put(meta_dbi_, meta_last_id, be64(high)) || t->commit()) {
    advanced_at_ = commits_;
    return false;
  }
  persisted_id_ = high;
  ++commits_;
  advanced_at_ = commits_;
  return true;
}

// Deletes may grow the map past max_size by a reserve as often as they need
// (they free space); updates may do it once (recording a delivery lets the
// queue drain; a move to the dead spool only moves data).
void spool_core::apply_one(operation& o) {
  operation* one[] = {&o};
  const bool removing =
      std::holds_alternative<remove_op>(o) || std::holds_alternative<purge_dead_op>(o);
  const bool updating = std::holds_alternative<update_op>(o);
  bool past_cap = false;
  bool advanced = false;
  for (;;) {
    const outcome out = apply(one);
    if (out.kind == outcome_kind::committed) break;
    if (out.kind == outcome_kind::map_full) {
      if (grow(removing)) {
        past_cap = past_cap || removing;
        continue;
      }
      if (updating && !past_cap && grow(true)) {
        past_cap = true;
        continue;
      }
      if (!advanced && !removing && advance()) {
        advanced = true;
        continue;
      }
      set_result(o, {status::full, full_detail()});
    } else {
      set_result(o, error_result(out.ec));
    }
    break;
  }
  if (past_cap) shrink_to_cap();
}

void spool_core::apply_group(std::span<operation> ops) {
  std::vector<operation*> live;
  live.reserve(ops.size());
  for (operation& o : ops) {
    if (!is_rejected(o)) live.push_back(&o);
  }
  if (live.empty()) return;
  for (;;) {
    const outcome out = apply(live);
    if (out.kind == outcome_kind::committed) return;
    if (out.kind == outcome_kind::map_full && grow(false)) continue;
    break;
  }
  // The group does not fit (or one operation broke the transaction): one at a
  // time, so each gets its own result.
  for (operation* o : live) apply_one(*o);
}

// Where a bulk operation has got to; a chunk works on a copy and the copy is
// kept only when the chunk commits.
struct spool_core::bulk_cursor {
  std::size_t next_index = 0;          // named IDs: the next one to look at
  std::optional<std::uint64_t> after;  // every message: the last ID looked at
  std::size_t found = 0;               // messages that exist
  std::size_t count = 0;               // messages changed
  bool finished = false;
};

// One transaction of a bulk operation: collects up to a chunk of records (the
// cursor is closed before anything is written), changes them, commits.
outcome spool_core::bulk_chunk(bulk_op& op, bulk_cursor& at) {
  bulk_cursor next = at;
  auto t = begin_write();
  if (!t) return failure(t.error());
  std::vector<std::pair<std::uint64_t, envelope_record>> chunk;
  std::size_t bytes = 0;
  if (op.all) {
    auto c = lmdb::cursor::open(*t, envelope_dbi_);
    if (!c) return failure(c.error());
    MDB_val k{}, v{};
    std::error_code ec;
    id_key from{};
    if (!next.after) {
      ec = c->get(&k, &v, MDB_FIRST);
    } else if (*next.after == std::numeric_limits<std::uint64_t>::max()) {
      ec = lmdb::make_error(MDB_NOTFOUND);
    } else {
      from = key_of(*next.after + 1);
      k = lmdb::to_val(key_view(from));
      ec = c->get(&k, &v, MDB_SET_RANGE);
    }
    for (; !ec && chunk.size() < bulk_chunk_messages && bytes < bulk_chunk_bytes;
         ec = c->get(&k, &v, MDB_NEXT)) {
      const auto id = id_of_key(lmdb::to_view(k));
      if (!id) continue;
      next.after = *id;
      bytes += v.mv_size;
      if (auto r = decode(format_id(*id), lmdb::to_view(v))) chunk.emplace_back(*id, std::move(*r));
    }
    if (ec && !lmdb::is(ec, MDB_NOTFOUND)) return failure(ec);
    next.finished = static_cast<bool>(ec);
  } else {
    while (next.next_index < op.ids.size() && chunk.size() < bulk_chunk_messages &&
           bytes < bulk_chunk_bytes) {
      const std::uint64_t id = op.ids[next.next_index++];
      auto r = load(*t, id);
      if (r) {
        bytes += 64 * (1 + r->recipients.size());
        chunk.emplace_back(id, std::move(*r));
      } else if (lmdb::is(r.error(), EBADMSG)) {
        ++next.found;
      } else if (!lmdb::is(r.error(), MDB_NOTFOUND)) {
        return failure(r.error());
      }
    }
    next.finished = next.next_index == op.ids.size();
  }

  const std::size_t before = next.count;
  for (auto& [id, r] : chunk) {
    ++next.found;
    const auto old_due = due_of(r);
    const bool held = (r.flags & flag_held) != 0;
    bool change = false;
    switch (op.kind) {
      case bulk_kind::reschedule:
        change = !held && has_pending(r);
        if (change) set_pending_due(r, op.when_us);
        break;
      case bulk_kind::hold:
        change = !held;
        r.flags |= flag_held;
        break;
      case bulk_kind::release:
        change = held;
        r.flags &= ~std::uint32_t{flag_held};
        set_pending_due(r, op.when_us);
        break;
    }
    if (!change) continue;
    if (auto ec = store(*t, id, r, old_due)) return failure(ec);
    ++next.count;
  }
  if (next.count != before) {
    if (auto ec = commit(*t)) return failure(ec);
  }
  at = next;
  return {};
}

// reschedule / hold / release, alone and chunk by chunk: a queue of any size
// is changed with a bounded number of records in memory. Chunks that committed
// stay committed if a later one fails (the result says so; count is what was done).
void spool_core::run_bulk(bulk_op& op) {
  op.res = {};
  op.count = 0;
  bulk_cursor at;
  bool past_cap = false;
  while (!at.finished) {
    const outcome out = bulk_chunk(op, at);
    if (out.kind == outcome_kind::committed) continue;
    if (out.kind == outcome_kind::map_full) {
      if (grow(false)) continue;
      if (!past_cap && grow(true)) {
        past_cap = true;
        continue;
      }
      op.res = {status::full, full_detail()};
    } else {
      op.res = error_result(out.ec);
    }
    break;
  }
  if (past_cap) shrink_to_cap();
  op.count = at.count;
  if (op.res.code == status::ok && !op.all && at.found == 0) {
    op.res = {status::not_found, "no such message"};
  }
}

// One transaction of replay_dead / purge_dead_older_than: collects up to a
// chunk of dead records (the cursor is closed before anything is written),
// moves or deletes them, commits. The progress in `op` advances only when the
// chunk committed (or had nothing to write).
outcome spool_core::dead_chunk(dead_bulk_op& op) {
  auto t = begin_write();
  if (!t) return failure(t.error());
  std::size_t next_index = op.next_index;
  std::optional<std::uint64_t> after = op.after;
  std::size_t found = op.found;
  bool finished = false;
  // nullopt: the record does not decode.
  std::vector<std::pair<std::uint64_t, std::optional<envelope_record>>> chunk;
  std::size_t bytes = 0;
  if (op.all) {
    auto c = lmdb::cursor::open(*t, dead_dbi_);
    if (!c) return failure(c.error());
    MDB_val k{}, v{};
    std::error_code ec;
    id_key from{};
    if (!after) {
      ec = c->get(&k, &v, MDB_FIRST);
    } else if (*after == std::numeric_limits<std::uint64_t>::max()) {
      ec = lmdb::make_error(MDB_NOTFOUND);
    } else {
      from = key_of(*after + 1);
      k = lmdb::to_val(key_view(from));
      ec = c->get(&k, &v, MDB_SET_RANGE);
    }
    for (; !ec && chunk.size() < bulk_chunk_messages && bytes < bulk_chunk_bytes;
         ec = c->get(&k, &v, MDB_NEXT)) {
      const auto id = id_of_key(lmdb::to_view(k));
      if (!id) continue;
      after = *id;
      auto r = decode(format_id(*id), lmdb::to_view(v));
      // A replay copies bodies too: they count against the chunk's size.
      bytes += v.mv_size + (r && op.kind == dead_kind::replay ? r->size : 0);
      chunk.emplace_back(*id, r ? std::optional<envelope_record>(std::move(*r)) : std::nullopt);
    }
    if (ec && !lmdb::is(ec, MDB_NOTFOUND)) return failure(ec);
    finished = static_cast<bool>(ec);
  } else {
    while (next_index < op.ids.size() && chunk.size() < bulk_chunk_messages &&
           bytes < bulk_chunk_bytes) {
      const std::uint64_t id = op.ids[next_index++];
      const id_key key = key_of(id);
      auto v = t->get(dead_dbi_, key_view(key));
      if (!v) {
        if (lmdb::is(v.error(), MDB_NOTFOUND)) continue;
        return failure(v.error());
      }
      ++found;
      auto r = decode(format_id(id), *v);
      bytes += v->size() + (r && op.kind == dead_kind::replay ? r->size : 0);
      chunk.emplace_back(id, r ? std::optional<envelope_record>(std::move(*r)) : std::nullopt);
    }
    finished = next_index == op.ids.size();
  }

  std::size_t changed = 0;
  std::string problem = op.problem;
  for (auto& [id, rec] : chunk) {
    const id_key key = key_of(id);
    if (op.kind == dead_kind::purge_older) {
      if (!rec || failed_at(*rec) >= op.when_us) continue;
    } else {
      if (!rec) {
        problem = "the dead-spool record of " + format_id(id) + " does not decode";
        continue;
      }
      // Copied: the view points into the map, and the puts below may move pages.
      auto b = t->get(dead_body_dbi_, key_view(key));
      if (!b && !lmdb::is(b.error(), MDB_NOTFOUND)) return failure(b.error());
      if (!b) {
        problem = format_id(id) + " has no stored message to replay";
        continue;
      }
      const std::string body(*b);
      const envelope_record live = revived(std::move(*rec), op.when_us);
      const auto due = due_of(live);
      if (!due) {
        problem = format_id(id) + " has no failed recipient to replay";
        continue;
      }
      auto queued = load(*t, id);
      if (queued) {
        // Some recipients are still queued: the failed ones join them again.
        const auto old_due = due_of(*queued);
        for (const recipient& back : live.recipients) {
          for (recipient& rc : queued->recipients) {
            if (rc.address == back.address && rc.state == rcpt_state::failed) rc = back;
          }
        }
        queued->arrival_us = live.arrival_us;
        queued->flags &= ~std::uint32_t{flag_held | flag_delay_warned};
        if (auto ec = store(*t, id, *queued, old_due)) return failure(ec);
      } else if (lmdb::is(queued.error(), MDB_NOTFOUND)) {
        auto ec = t->put(envelope_dbi_, key_view(key), encode(live));
        if (!ec) ec = t->put(body_dbi_, key_view(key), body);
        const schedule_key sk = make_schedule_key(*due, id);
        if (!ec) ec = t->put(schedule_dbi_, key_view(sk), empty_value);
        if (ec) return failure(ec);
      } else if (lmdb::is(queued.error(), EBADMSG)) {
        problem = format_id(id) + " is in the queue with a record that does not decode";
        continue;
      } else {
        return failure(queued.error());
      }
    }
    if (auto ec = t->del(dead_dbi_, key_view(key))) return failure(ec);
    auto ec = t->del(dead_body_dbi_, key_view(key));
    if (ec && !lmdb::is(ec, MDB_NOTFOUND)) return failure(ec);
    ++changed;
  }
  if (changed != 0) {
    if (auto ec = commit(*t)) return failure(ec);
  }
  op.next_index = next_index;
  op.after = after;
  op.found = found;
  op.problem = std::move(problem);
  op.count += changed;
  op.finished = finished;
  return {};
}

// One turn of a dead-spool operation: a chunk, grown into on MDB_MAP_FULL
// (a purge may use the reserve above max_size, as deleting frees room). True
// when the operation is over and its result is set.
bool spool_core::dead_step(dead_bulk_op& op) {
  const bool removing = op.kind == dead_kind::purge_older;
  bool past_cap = false;
  for (;;) {
    const outcome out = dead_chunk(op);
    if (out.kind == outcome_kind::committed) break;
    if (out.kind == outcome_kind::map_full && grow(removing)) {
      past_cap = past_cap || removing;
      continue;
    }
    op.res = out.kind == outcome_kind::map_full ? result{status::full, full_detail()}
                                                : error_result(out.ec);
    op.finished = true;
    break;
  }
  if (past_cap) shrink_to_cap();
  if (!op.finished) return false;
  if (op.res.code == status::ok && op.kind == dead_kind::replay && op.count == 0 && !op.all) {
    op.res = op.found == 0 ? result{status::not_found, "no such dead-spool entry"}
                           : result{status::error, op.problem};
  }
  return true;
}

// Group-committable operations go in one transaction; a bulk operation between
// them runs on its own, in order. Each operation ends up in `settled` (run()
// answers it once its commit is on disk), unless a dead-spool step requeued it.
void spool_core::process(std::vector<operation>& batch, std::vector<operation>& settled) {
  std::size_t i = 0;
  while (i < batch.size()) {
    std::size_t j = i;
    while (j < batch.size() && !is_bulk(batch[j])) ++j;
    if (j > i) {
      apply_group(std::span<operation>(batch).subspan(i, j - i));
      for (std::size_t k = i; k < j; ++k) settled.push_back(std::move(batch[k]));
      i = j;
    } else if (auto* d = std::get_if<dead_bulk_op>(&batch[i])) {
      if (dead_step(*d)) {
        settled.push_back(std::move(batch[i]));
      } else {
        requeue(std::move(batch[i]));
      }
      ++i;
    } else {
      run_bulk(std::get<bulk_op>(batch[i]));
      settled.push_back(std::move(batch[i]));
      ++i;
    }
  }
}

// A dead-spool operation that has more to do waits behind what came meanwhile.
void spool_core::requeue(operation op) {
  std::lock_guard lk(mu_);
  pending_.push_back(std::move(op));
}

void spool_core::finish(operation& o) {
  try {
    std::visit(
        [](auto& op) {
          using T = std::decay_t<decltype(op)>;
          if (!op.done) return;
          if constexpr (std::is_same_v<T, enqueue_op>) {
            op.done(std::move(op.res));
          } else if constexpr (std::is_same_v<T, update_op>) {
            op.done(std::move(op.res), op.became);
          } else {
            op.done(std::move(op.res), op.count);
          }
        },
        o);
  } catch (...) {
    // A completion handler must not take the writer down.
  }
}

// The txnid of the last committed transaction (0 with no environment).
std::uint64_t spool_core::last_txnid() const {
  return env_ ? env_.info().me_last_txnid : 0;
}

// Flushes the data file (the meta pages the last commits wrote) and runs the
// waiting operations' `done`. Should the flush fail, what they changed may not
// be on disk: they report an error (an enqueue's client hears 451 and sends
// again; the copy it may leave is delivered too, never lost).
void spool_core::flush_unsynced() {
  if (unsynced_.empty()) return;
  std::error_code ec;
  if (!env_) ec = reopen();
  if (!ec) ec = env_.sync(true);
  for (auto& o : unsynced_) {
    if (ec && result_of(o).code == status::ok)
      set_result(o, {status::error, "cannot flush the spool to disk: " + ec.message()});
    finish(o);
  }
  unsynced_.clear();
}

// Durability without a second flush per commit: with MDB_NOMETASYNC each commit
// flushes its data pages, then writes its meta page unflushed. The operations
// of a turn are answered once the meta page of their last commit is on disk:
// either a later commit wrote (its data flush carries that meta page along), or,
// when no work is waiting, after an explicit flush. Under load that is one flush
// per commit instead of two; alone, an operation costs the same two flushes.
void spool_core::run() {
  std::vector<operation> batch;
  for (;;) {
    {
      std::unique_lock lk(mu_);
      if (pending_.empty() && !unsynced_.empty()) {
        lk.unlock();
        flush_unsynced();
        lk.lock();
      }
      cv_.wait(lk, [&] { return stopping_ || !pending_.empty(); });
      if (pending_.empty()) return;
      std::size_t bytes = 0;
      while (!pending_.empty() && batch.size() < max_batch_ops) {
        const std::size_t b = op_bytes(pending_.front());
        if (!batch.empty() && bytes + b > max_batch_bytes) break;
        bytes += b;
        batch.push_back(std::move(pending_.front()));
        pending_.pop_front();
      }
    }
    const std::uint64_t before = last_txnid();
    const std::size_t taken = batch.size();
    std::vector<operation> settled;
    settled.reserve(taken);
    process(batch, settled);
    if (last_txnid() != before) {
      // This turn committed: its data flush came after every meta page the
      // earlier turns wrote.
      for (auto& o : unsynced_) finish(o);
      unsynced_.clear();
    }
    for (auto& o : settled) unsynced_.push_back(std::move(o));
    ++batches_;
    operations_ += taken;
    batch.clear();
  }
}

void spool_core::stop() {
  {
    std::lock_guard lk(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (writer_.joinable()) writer_.join();
}

void spool_core::submit(operation op) {
  bool queued = false;
  {
    std::lock_guard lk(mu_);
    if (!stopping_) {
      pending_.push_back(std::move(op));
      queued = true;
    }
  }
  if (queued) {
    cv_.notify_one();
    return;
  }
  set_result(op, {status::error, "spool is closing"});
  finish(op);
}

std::string spool_core::new_id() {
  using namespace std::chrono;
  const auto us = duration_cast<microseconds>(system_clock::now().time_since_epoch()).count();
  const std::uint64_t now = static_cast<std::uint64_t>(us) << 4;
  std::uint64_t last = last_id_.load(std::memory_order_relaxed);
  for (;;) {
    const std::uint64_t next = std::max(last + 1, now);
    if (last_id_.compare_exchange_weak(last, next, std::memory_order_relaxed)) {
      return format_id(next);
    }
  }
}

// An enqueue may carry an ID this spool did not hand out: never issue it later.
void spool_core::note_id(std::uint64_t id) {
  std::uint64_t last = last_id_.load(std::memory_order_relaxed);
  while (last < id && !last_id_.compare_exchange_weak(last, id, std::memory_order_relaxed)) {
  }
}

std::optional<envelope_record> spool_core::get(std::string_view id, bool dead) const {
  const auto v = parse_id(id);
  if (!v) return std::nullopt;
  const id_key key = key_of(*v);
  std::optional<envelope_record> out;
  read([&](lmdb::txn& t) {
    auto bytes = t.get(dead ? dead_dbi_ : envelope_dbi_, key_view(key));
    if (!bytes) return;
    if (auto r = decode(format_id(*v), *bytes)) out = std::move(*r);
  });
  return out;
}

std::optional<std::string> spool_core::body(std::string_view id, bool dead) const {
  const auto v = parse_id(id);
  if (!v) return std::nullopt;
  const id_key key = key_of(*v);
  std::optional<std::string> out;
  read([&](lmdb::txn& t) {
    if (auto bytes = t.get(dead ? dead_body_dbi_ : body_dbi_, key_view(key))) out.emplace(*bytes);
  });
  return out;
}

// Records are collected inside the read transaction and visited after it ends,
// so `visit` may take its time (or read the spool again). Undecodable records
// are skipped; the returned ID is the last one examined, so paging goes on.
std::string spool_core::scan(std::string_view after, std::size_t limit,
                             const std::function<void(const envelope_record&)>& visit,
                             bool dead) const {
  std::optional<std::uint64_t> start;
  if (!after.empty()) {
    start = parse_id(after);
    if (!start) return {};
  }
  if (limit == 0) return {};
  std::vector<envelope_record> found;
  std::string last;
  read([&](lmdb::txn& t) {
    auto c = lmdb::cursor::open(t, dead ? dead_dbi_ : envelope_dbi_);
    if (!c) return;
    MDB_val k{}, v{};
    std::error_code ec;
    id_key from{};
    if (!start) {
      ec = c->get(&k, &v, MDB_FIRST);
    } else {
      from = key_of(*start);
      k = lmdb::to_val(key_view(from));
      ec = c->get(&k, &v, MDB_SET_RANGE);
      if (!ec && lmdb::to_view(k) == key_view(from)) ec = c->get(&k, &v, MDB_NEXT);
    }
    for (; !ec && found.size() < limit; ec = c->get(&k, &v, MDB_NEXT)) {
      const auto id = id_of_key(lmdb::to_view(k));
      if (!id) continue;
      last = format_id(*id);
      if (auto r = decode(last, lmdb::to_view(v))) found.push_back(std::move(*r));
    }
  });
  for (const envelope_record& r : found) visit(r);
  return last;
}

std::uint64_t spool_core::count(bool dead) const {
  std::uint64_t n = 0;
  read([&](lmdb::txn& t) {
    if (auto s = t.stat(dead ? dead_dbi_ : envelope_dbi_)) n = s->ms_entries;
  });
  return n;
}

// A cursor over `schedule` placed just after `after` (whose due time is
// clamped like the keys); keys that are not 16 bytes are skipped.
std::vector<spool::due_entry> spool_core::due(const std::optional<spool::due_entry>& after,
                                              std::int64_t until_us, std::size_t limit) const {
  std::vector<spool::due_entry> out;
  if (limit == 0) return out;
  read([&](lmdb::txn& t) {
    auto c = lmdb::cursor::open(t, schedule_dbi_);
    if (!c) return;
    MDB_val k{}, v{};
    std::error_code ec;
    schedule_key from{};
    if (!after) {
      ec = c->get(&k, &v, MDB_FIRST);
    } else {
      const auto id = parse_id(after->id);
      from = make_schedule_key(after->due_us, id.value_or(0));
      k = lmdb::to_val(key_view(from));
      ec = c->get(&k, &v, MDB_SET_RANGE);
      if (!ec && id && lmdb::to_view(k) == key_view(from)) ec = c->get(&k, &v, MDB_NEXT);
    }
    for (; !ec && out.size() < limit; ec = c->get(&k, &v, MDB_NEXT)) {
      auto e = parse_schedule_key(lmdb::to_view(k));
      if (!e) continue;
      if (e->due_us > until_us) break;
      out.push_back(std::move(*e));
    }
  });
  return out;
}

std::optional<std::int64_t> spool_core::next_due_after(std::int64_t after_us) const {
  if (after_us == std::numeric_limits<std::int64_t>::max()) return std::nullopt;
  std::optional<std::int64_t> out;
  read([&](lmdb::txn& t) {
    auto c = lmdb::cursor::open(t, schedule_dbi_);
    if (!c) return;
    const schedule_key from = make_schedule_key(after_us + 1, 0);
    MDB_val k = lmdb::to_val(key_view(from));
    MDB_val v{};
    for (auto ec = c->get(&k, &v, MDB_SET_RANGE); !ec; ec = c->get(&k, &v, MDB_NEXT)) {
      if (auto e = parse_schedule_key(lmdb::to_view(k))) {
        out = e->due_us;
        return;
      }
    }
  });
  return out;
}

std::uint64_t spool_core::used_bytes() const {
  std::uint64_t pages = 2;  // the two meta pages
  std::uint64_t psize = 0;
  read([&](lmdb::txn& t) {
    psize = psize_;
    const lmdb::dbi all[] = {lmdb::dbi{0},    lmdb::dbi{1},  meta_dbi_, envelope_dbi_, body_dbi_,
                             quarantine_dbi_, schedule_dbi_, dead_dbi_, dead_body_dbi_};
    for (lmdb::dbi d : all) {
      if (auto s = t.stat(d)) pages += s->ms_branch_pages + s->ms_leaf_pages + s->ms_overflow_pages;
    }
  });
  return pages * psize;
}

spool_stats spool_core::stats() const {
  spool_stats s;
  s.commits = commits_;
  s.failed_commits = failed_commits_;
  s.operations = operations_;
  s.batches = batches_;
  s.map_resizes = map_resizes_;
  s.env_reopens = env_reopens_;
  s.map_size = map_size_;
  return s;
}

}  // namespace detail

// ---------------------------------------------------------------------------
// Public face. The diagnostics in spool_diag.hpp find a spool's core through a
// small registry, so spool.hpp needs no friend declarations.

namespace {

std::mutex& registry_mutex() {
  static std::mutex m;
  return m;
}
std::unordered_map<const spool*, detail::spool_core*>& registry() {
  static std::unordered_map<const spool*, detail::spool_core*> r;
  return r;
}

template <class F>
auto with_core(const spool& s, F&& f) {
  std::lock_guard lk(registry_mutex());
  auto it = registry().find(&s);
  using R = decltype(f(*it->second));
  if (it == registry().end()) return R{};
  return f(*it->second);
}

}  // namespace

struct spool::impl {
  explicit impl(const spool_options& o) : core(o) {}
  detail::spool_core core;
};

spool::spool() = default;

spool::~spool() {
  if (!impl_) return;
  {
    std::lock_guard lk(registry_mutex());
    registry().erase(this);
  }
  impl_->core.stop();
}

std::expected<std::unique_ptr<spool>, std::string> spool::open(const spool_options& options) {
  std::unique_ptr<spool> s(new spool());
  s->impl_ = std::make_unique<impl>(options);
  if (auto r = s->impl_->core.open(); !r) return std::unexpected(r.error());
  s->impl_->core.start();
  {
    std::lock_guard lk(registry_mutex());
    registry()[s.get()] = &s->impl_->core;
  }
  return s;
}

std::string spool::new_id() {
  return impl_->core.new_id();
}

void spool::enqueue(envelope_record env, std::string body, std::function<void(result)> done) {
  enqueue_op op;
  op.done = std::move(done);
  if (auto id = parse_id(env.id)) {
    op.id = *id;
    op.envelope = encode(env);
    op.due = due_of(env);
    op.body = std::move(body);
    impl_->core.note_id(*id);
  } else {
    op.rejected = true;
    op.res = {status::error, "invalid queue ID \"" + env.id + "\""};
  }
  impl_->core.submit(std::move(op));
}

namespace {
// The IDs that parse; the rest cannot name a message.
std::vector<std::uint64_t> parse_ids(const std::vector<std::string>& ids) {
  std::vector<std::uint64_t> out;
  out.reserve(ids.size());
  for (const std::string& s : ids) {
    if (auto id = parse_id(s)) out.push_back(*id);
  }
  return out;
}
}  // namespace

void spool::update_recipients(std::string id, std::vector<recipient_update> updates,
                              std::uint32_t flags_set,
                              std::function<void(result, completion)> done) {
  update_op op;
  op.done = std::move(done);
  op.updates = std::move(updates);
  op.flags_set = flags_set;
  if (auto v = parse_id(id)) {
    op.id = *v;
  } else {
    op.rejected = true;
    op.res = {status::not_found, "invalid queue ID \"" + id + "\""};
  }
  impl_->core.submit(std::move(op));
}

void spool::reschedule(std::vector<std::string> ids, std::int64_t due_us,
                       std::function<void(result, std::size_t)> done) {
  bulk_op op;
  op.kind = bulk_kind::reschedule;
  op.all = ids.empty();
  op.ids = parse_ids(ids);
  op.when_us = due_us;
  op.done = std::move(done);
  impl_->core.submit(std::move(op));
}

void spool::set_held(std::vector<std::string> ids, bool held,
                     std::function<void(result, std::size_t)> done) {
  bulk_op op;
  op.kind = held ? bulk_kind::hold : bulk_kind::release;
  op.all = ids.empty();
  op.ids = parse_ids(ids);
  op.when_us = wall_clock_us();
  op.done = std::move(done);
  impl_->core.submit(std::move(op));
}

void spool::purge_dead(std::vector<std::string> ids,
                       std::function<void(result, std::size_t)> done) {
  purge_dead_op op;
  op.all = ids.empty();
  op.ids = parse_ids(ids);
  op.done = std::move(done);
  impl_->core.submit(std::move(op));
}

void spool::replay_dead(std::vector<std::string> ids, std::int64_t now_us,
                        std::function<void(result, std::size_t)> done) {
  dead_bulk_op op;
  op.kind = dead_kind::replay;
  op.all = ids.empty();
  op.ids = parse_ids(ids);
  op.when_us = now_us;
  op.done = std::move(done);
  impl_->core.submit(std::move(op));
}

void spool::purge_dead_older_than(std::int64_t cutoff_us,
                                  std::function<void(result, std::size_t)> done) {
  dead_bulk_op op;
  op.kind = dead_kind::purge_older;
  op.all = true;
  op.when_us = cutoff_us;
  op.done = std::move(done);
  impl_->core.submit(std::move(op));
}

std::int64_t failed_at(const envelope_record& r) {
  std::int64_t at = 0;
  for (const recipient& rc : r.recipients) {
    if (rc.state == rcpt_state::failed) at = std::max(at, rc.last_attempt_us);
  }
  return at != 0 ? at : r.arrival_us;
}

void spool::remove(std::vector<std::string> ids, std::function<void(result, std::size_t)> done) {
  remove_op op;
  op.all = ids.empty();
  op.done = std::move(done);
  for (const std::string& s : ids) {
    if (auto id = parse_id(s)) op.ids.push_back(*id);
  }
  impl_->core.submit(std::move(op));
}

std::optional<envelope_record> spool::get(std::string_view id) const {
  return impl_->core.get(id, false);
}

std::optional<std::string> spool::body(std::string_view id) const {
  return impl_->core.body(id, false);
}

std::string spool::scan(std::string_view after, std::size_t limit,
                        const std::function<void(const envelope_record&)>& visit) const {
  return impl_->core.scan(after, limit, visit, false);
}

std::uint64_t spool::message_count() const {
  return impl_->core.count(false);
}

std::optional<envelope_record> spool::get_dead(std::string_view id) const {
  return impl_->core.get(id, true);
}

std::optional<std::string> spool::dead_body(std::string_view id) const {
  return impl_->core.body(id, true);
}

std::string spool::scan_dead(std::string_view after, std::size_t limit,
                             const std::function<void(const envelope_record&)>& visit) const {
  return impl_->core.scan(after, limit, visit, true);
}

std::uint64_t spool::dead_count() const {
  return impl_->core.count(true);
}

std::vector<spool::due_entry> spool::due(const std::optional<due_entry>& after,
                                         std::int64_t until_us, std::size_t limit) const {
  return impl_->core.due(after, until_us, limit);
}

std::optional<std::int64_t> spool::next_due_after(std::int64_t after_us) const {
  return impl_->core.next_due_after(after_us);
}

std::uint64_t spool::used_bytes() const {
  return impl_->core.used_bytes();
}

const open_report& spool::report() const {
  return impl_->core.report();
}

std::vector<quarantine_entry> quarantined_at_open(const spool& s) {
  return with_core(s, [](detail::spool_core& c) { return c.quarantined(); });
}

spool_stats stats(const spool& s) {
  return with_core(s, [](detail::spool_core& c) { return c.stats(); });
}

namespace testing {
void fail_next_commits(const spool& s, int error, int count) {
  with_core(s, [&](detail::spool_core& c) {
    c.fail_next_commits(error, count);
    return 0;
  });
}
}  // namespace testing

}  // namespace queue
