// The spool's map and environment: growing the map on MDB_MAP_FULL (within
// max_size or the disk), shrinking it back after a delete used the reserve,
// adopting a size another process set, reopening after MDB_PANIC, and the small
// commit that lets LMDB reuse freed pages. Every resize happens with no
// transaction alive; a resize that fails leaves the map as it was, or the
// environment closed for the next write to reopen.
#include <sys/stat.h>
#include <sys/statvfs.h>

#include "queue/spool_core.hpp"

namespace queue::detail {

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
// here (its callers end theirs first) and readers are held off by the
// exclusive lock. Should a write transaction be alive after all, LMDB refuses
// with EINVAL before touching the map, and so does this: the environment is
// never closed under a live transaction.
bool spool_core::resize(std::uint64_t bytes) {
  std::unique_lock lk(map_lock_);
  if (!env_) return false;
  if (auto ec = env_.set_mapsize(bytes)) {
    if (lmdb::is(ec, EINVAL)) return false;  // nothing was unmapped
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

}  // namespace queue::detail
