// The spool's read side: records, bodies, scans, counts and the schedule
// index, from any thread, each in one short read transaction under the shared
// map lock (never across I/O: scan() collects, then visits).
#include <algorithm>

#include "queue/spool_core.hpp"

namespace queue::detail {

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
// The records are decoded into those of this thread's previous scan (taken out
// while in use, so a scan inside a visit gets its own): a pass over a million
// messages reuses their strings' buffers instead of allocating each field.
std::string spool_core::scan(std::string_view after, std::size_t limit,
                             const std::function<void(const envelope_record&)>& visit,
                             bool dead) const {
  std::optional<std::uint64_t> start;
  if (!after.empty()) {
    start = parse_id(after);
    if (!start) return {};
  }
  if (limit == 0) return {};
  constexpr std::size_t spare_max = 1024;  // records kept for the next scan
  thread_local std::vector<envelope_record> spare;
  std::vector<envelope_record> found = std::exchange(spare, {});
  std::size_t n = 0;
  std::string last, error;
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
    for (; !ec && n < limit; ec = c->get(&k, &v, MDB_NEXT)) {
      const auto id = id_of_key(lmdb::to_view(k));
      if (!id) continue;
      last = format_id(*id);
      if (n == found.size()) found.emplace_back();
      if (decode_into(last, lmdb::to_view(v), found[n], error)) ++n;
    }
  });
  for (std::size_t i = 0; i < n; ++i) visit(found[i]);
  if (found.size() > spare_max) {
    found.resize(spare_max);
    found.shrink_to_fit();
  }
  spare = std::move(found);
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


}  // namespace queue::detail
