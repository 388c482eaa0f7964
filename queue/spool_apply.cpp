// The spool's write operations inside one transaction: enqueue, remove,
// recipient updates (with the move to the dead spool) and dead-spool purges,
// applied as a group; when the group does not fit or one operation breaks the
// transaction, one at a time so each gets its own result. A failed transaction
// is aborted as a whole: committed data is never touched by a failure.
#include <algorithm>

#include "queue/spool_core.hpp"

namespace queue::detail {

// The error of a fault set by testing::fail_next_commits(), used up; none
// when no fault is pending.
std::error_code spool_core::injected_fault() {
  if (fault_count_.load() <= 0) return {};
  fault_count_.fetch_sub(1);
  return lmdb::make_error(fault_errno_.load());
}

std::error_code spool_core::commit(lmdb::txn& t) {
  if (auto ec = injected_fault()) {
    t.abort();
    ++failed_commits_;
    return ec;
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
      if (!e->drop.empty()) {
        auto seen = t->get(drops_dbi_, e->drop);
        if (seen) {
          e->res = {status::error, "drop " + e->drop + " already imported as " +
                                       format_id(id_of_key(*seen).value_or(0))};
          continue;
        }
        if (!lmdb::is(seen.error(), MDB_NOTFOUND)) return failure(seen.error());
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
      if (!e->drop.empty() && (ec = t->put(drops_dbi_, e->drop, key_view(key)))) return failure(ec);
      if ((ec = put_events(*t, e->events))) return failure(ec);
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
      if (u->res.code == status::ok && (ec = put_events(*t, u->events))) return failure(ec);
    } else if (auto* a = std::get_if<ack_outbox_op>(o)) {
      if ((ec = apply_ack(*t, *a))) return failure(ec);
    } else if (auto* ap = std::get_if<append_outbox_op>(o)) {
      ap->res = {};
      if ((ec = put_events(*t, ap->events))) return failure(ec);
      ap->count = ap->events.size();
    } else if (auto* f = std::get_if<forget_drops_op>(o)) {
      f->res = {};
      f->count = 0;
      for (const std::string& name : f->names) {
        if (name.empty() || name.size() > spool::max_drop_name) continue;
        ec = t->del(drops_dbi_, name);
        if (lmdb::is(ec, MDB_NOTFOUND)) continue;
        if (ec) return failure(ec);
        ++f->count;
      }
    } else if (auto* s = std::get_if<mta_sts_op>(o)) {
      s->res = {};
      if (s->domain.empty() || s->domain.size() > spool::max_drop_name) {
        s->res = {status::error, "bad policy domain"};
        continue;
      }
      ec = s->value.empty() ? t->del(mta_sts_dbi_, s->domain)
                            : t->put(mta_sts_dbi_, s->domain, s->value);
      if (ec && !lmdb::is(ec, MDB_NOTFOUND)) return failure(ec);
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

// Deletes may grow the map past max_size by a reserve as often as they need
// (they free space); updates may do it once (recording a delivery lets the
// queue drain; a move to the dead spool only moves data).
void spool_core::apply_one(operation& o) {
  operation* one[] = {&o};
  const bool removing = std::holds_alternative<remove_op>(o) ||
                        std::holds_alternative<purge_dead_op>(o) ||
                        std::holds_alternative<forget_drops_op>(o) ||
                        std::holds_alternative<ack_outbox_op>(o);
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

}  // namespace queue::detail
