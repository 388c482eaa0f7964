// The spool's passes over many messages: reschedule, hold and release (named
// messages or all of them) and dead-spool replay and purge by age. Each pass
// works in transactions of a bounded number of messages, one per turn of the
// writer, so a queue of any size is changed with a bounded number of records in
// memory and never stalls enqueues. Chunks that committed stay committed if a
// later one fails; the result says so.
#include <algorithm>

#include "queue/spool_core.hpp"

namespace queue::detail {
namespace {

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

// Positions `c` on the first record whose ID comes after `after` (the first
// record when nullopt); `from` holds the key `k` points into, so it must live as
// long as `k` is used. MDB_NOTFOUND when there is none.
std::error_code seek_after(lmdb::cursor& c, std::optional<std::uint64_t> after, id_key& from,
                           MDB_val& k, MDB_val& v) {
  if (!after) return c.get(&k, &v, MDB_FIRST);
  if (*after == std::numeric_limits<std::uint64_t>::max()) return lmdb::make_error(MDB_NOTFOUND);
  from = key_of(*after + 1);
  k = lmdb::to_val(key_view(from));
  return c.get(&k, &v, MDB_SET_RANGE);
}

}  // namespace

// Where a bulk operation has got to; a chunk works on a copy and the copy is
// kept only when the chunk commits (or had nothing to write).
namespace {
struct bulk_cursor {
  std::size_t next_index = 0;
  std::optional<std::uint64_t> after;
  std::size_t found = 0;
  std::size_t count = 0;
  bool finished = false;
};
}  // namespace

// One transaction of a bulk operation: collects up to a chunk of records (the
// cursor is closed before anything is written), changes them, commits.
outcome spool_core::bulk_chunk(bulk_op& op) {
  bulk_cursor next{op.next_index, op.after, op.found, op.count, op.finished};
  auto t = begin_write();
  if (!t) return failure(t.error());
  std::vector<std::pair<std::uint64_t, envelope_record>> chunk;
  std::size_t bytes = 0;
  if (op.all) {
    auto c = lmdb::cursor::open(*t, envelope_dbi_);
    if (!c) return failure(c.error());
    MDB_val k{}, v{};
    id_key from{};
    std::error_code ec = seek_after(*c, next.after, from, k, v);
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
  op.next_index = next.next_index;
  op.after = next.after;
  op.found = next.found;
  op.count = next.count;
  op.finished = next.finished;
  return {};
}

// Runs one chunk of a pass, growing the map on MDB_MAP_FULL and trying again:
// within the cap as often as needed, past max_size by the reserve as `use`
// allows (always for deletes, which free room; once for rewrites), shrinking
// back afterwards. nullopt when the chunk committed (or had nothing to write),
// otherwise the pass's failure.
std::optional<result> spool_core::chunk_growing(const std::function<outcome()>& chunk,
                                                reserve_use use) {
  bool past_cap = false;
  std::optional<result> failed;
  for (;;) {
    const outcome out = chunk();
    if (out.kind == outcome_kind::committed) break;
    if (out.kind == outcome_kind::map_full) {
      if (grow(false)) continue;
      const bool may_pass = use == reserve_use::always || (use == reserve_use::once && !past_cap);
      if (may_pass && grow(true)) {
        past_cap = true;
        continue;
      }
      failed = result{status::full, full_detail()};
    } else {
      failed = error_result(out.ec);
    }
    break;
  }
  if (past_cap) shrink_to_cap();
  return failed;
}

// One turn of reschedule / hold / release: a chunk, grown into on
// MDB_MAP_FULL (once past max_size by the reserve, as a hold or release only
// rewrites records). True when the operation is over and its result is set;
// otherwise the writer puts it back in line (see process()), so a queue of any
// size is changed with a bounded number of records in memory and without
// holding up what arrives meanwhile. Chunks that committed stay committed if a
// later one fails (the result says so; count is what was done).
bool spool_core::bulk_step(bulk_op& op) {
  if (auto failed = chunk_growing([&] { return bulk_chunk(op); }, reserve_use::once)) {
    op.res = std::move(*failed);
    op.finished = true;
  }
  if (!op.finished) return false;
  if (op.res.code == status::ok && !op.all && op.found == 0) {
    op.res = {status::not_found, "no such message"};
  }
  return true;
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
    id_key from{};
    std::error_code ec = seek_after(*c, after, from, k, v);
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
  const auto use = op.kind == dead_kind::purge_older ? reserve_use::always : reserve_use::never;
  if (auto failed = chunk_growing([&] { return dead_chunk(op); }, use)) {
    op.res = std::move(*failed);
    op.finished = true;
  }
  if (!op.finished) return false;
  if (op.res.code == status::ok && op.kind == dead_kind::replay && op.count == 0 && !op.all) {
    op.res = op.found == 0 ? result{status::not_found, "no such dead-spool entry"}
                           : result{status::error, op.problem};
  }
  return true;
}

}  // namespace queue::detail
