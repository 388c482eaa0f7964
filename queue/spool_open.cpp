// Opening the spool: the directory (created 0711, refused when it cannot be
// made so: others may pass through it to the drop directory, never list or
// read it), the writer's lock (one process per spool: a second one is
// refused with the PID of the first), the environment, the databases and the format (a version 1
// spool is upgraded in place), then recovery: records that do not decode are
// moved to quarantine and the schedule index is rebuilt when it disagrees with
// the records. Fails with one line saying what and where; never crashes on
// what it finds on disk.
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <set>

#include "queue/spool_core.hpp"

namespace queue::detail {
namespace {

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

}  // namespace

spool_core::~spool_core() {
  stop();
  env_.close();
  if (lock_fd_ >= 0) {
    if (::ftruncate(lock_fd_, 0) != 0) {
      // The lock goes with the descriptor; a stale PID in the file is harmless.
    }
    ::close(lock_fd_);
  }
  if (!claimed_dir_.empty()) {
    std::lock_guard lk(open_dirs_mutex());
    open_dirs().erase(claimed_dir_);
  }
}

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
  if (::mkdir(opt_.dir.c_str(), spool_dir_mode) != 0 && errno != EEXIST) {
    return std::unexpected("cannot create spool directory " + dir + ": " + std::strerror(errno));
  }
  if (!std::filesystem::is_directory(opt_.dir, fec)) {
    return std::unexpected("spool " + dir + " is not a directory");
  }
  // The queue holds other people's mail: others may only pass through the
  // directory (to the drop directory inside it, the default layout), never list
  // it; LMDB's files and the lock file are 0600.
  struct stat st {};
  if (::stat(dir.c_str(), &st) == 0 && (st.st_mode & 07777) != spool_dir_mode &&
      ::chmod(dir.c_str(), spool_dir_mode) != 0) {
    char mode[8] = {};
    std::to_chars(mode, mode + sizeof mode - 1, st.st_mode & 07777, 8);
    return std::unexpected("spool directory " + dir + " has mode " + mode +
                           " and cannot be made 0711: " + std::strerror(errno));
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
  if (auto r = lock_dir(); !r) return r;

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

// Only one process writes a spool (two daemons on one queue would deliver
// every message twice): `relayd.lock` in the directory is flock()ed for as
// long as the spool is open and holds its owner's PID. The kernel drops the
// lock when that process dies, however it dies.
std::expected<void, std::string> spool_core::lock_dir() {
  const auto path = opt_.dir / lock_file;
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) {
    return std::unexpected("cannot open " + path.string() + ": " + std::strerror(errno));
  }
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    char buf[32] = {};
    const ssize_t n = err == EWOULDBLOCK ? ::pread(fd, buf, sizeof buf - 1, 0) : -1;
    ::close(fd);
    if (err != EWOULDBLOCK) {
      return std::unexpected("cannot lock " + path.string() + ": " + std::strerror(err));
    }
    long pid = 0;
    const auto [end, ec] = std::from_chars(buf, buf + std::max<ssize_t>(n, 0), pid);
    if (ec != std::errc{} || pid <= 0) {
      return std::unexpected("spool " + opt_.dir.string() + " is in use by another process");
    }
    return std::unexpected("spool " + opt_.dir.string() + " is in use by relayd pid " +
                           std::to_string(pid));
  }
  const std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd, 0) != 0 ||
      ::pwrite(fd, pid.data(), pid.size(), 0) != static_cast<ssize_t>(pid.size())) {
    const int err = errno;
    ::close(fd);
    return std::unexpected("cannot write " + path.string() + ": " + std::strerror(err));
  }
  lock_fd_ = fd;
  return {};
}

// Opens (creating) every named database in `t`.
std::error_code spool_core::open_databases(lmdb::txn& t) {
  const std::pair<const char*, lmdb::dbi*> dbs[] = {
      {db_meta, &meta_dbi_},           {db_envelope, &envelope_dbi_},
      {db_body, &body_dbi_},           {db_quarantine, &quarantine_dbi_},
      {db_schedule, &schedule_dbi_},   {db_dead, &dead_dbi_},
      {db_dead_body, &dead_body_dbi_}, {db_drops, &drops_dbi_},
      {db_mta_sts, &mta_sts_dbi_},
      {db_events, &events_dbi_},
  };
  for (const auto& [name, dbi] : dbs) {
    auto d = t.open_dbi(name, MDB_CREATE);
    if (!d) return d.error();
    *dbi = *d;
  }
  return {};
}

// Opens the databases and checks (or writes) the format. MDB_MAP_FULL, from
// open_dbi() or put() as much as from commit() (creating the databases a
// version 1 spool lacks needs pages), grows the map and tries again; the map is
// resized only once init_once()'s transaction has ended.
std::expected<void, std::string> spool_core::init_databases() {
  for (;;) {
    std::string refused;
    const std::error_code ec = init_once(refused);
    if (!refused.empty()) return std::unexpected(refused);
    if (!ec) return {};
    if (lmdb::is(ec, MDB_MAP_FULL) && grow(false)) continue;
    return std::unexpected("cannot initialise the spool databases: " + ec.message());
  }
}

// One attempt of init_databases() in one write transaction, which has ended
// (committed or aborted) when this returns. `refused` is set when the spool
// has a format this version does not know.
std::error_code spool_core::init_once(std::string& refused) {
  auto t = lmdb::txn::begin(env_, 0);
  if (!t) return t.error();
  std::error_code ec = open_databases(*t);
  if (!ec) {
    auto f = t->get(meta_dbi_, meta_format);
    if (f && (f->size() != 1 || ((*f)[0] != spool_format && (*f)[0] != spool_format_v1))) {
      refused = "unknown spool format in " + opt_.dir.string() + " (expected " +
                std::to_string(spool_format) + ")";
      return {};
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
  // A fault injected by a test stands here for a put() that failed: it is
  // reported while the transaction is still alive, as a real one would be.
  if (!ec) ec = injected_fault();
  if (!ec) ec = t->commit();
  return ec;
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

}  // namespace queue::detail
