// The spool's event outbox (the `events` database, see spool_core.hpp): events
// that enqueue() and update_recipients() store in the transaction of their
// change, read oldest first by the webhook sender and deleted once posted. A
// sequence number that grows with each event keeps them in commit order.
#include "queue/spool_core.hpp"

namespace queue {

using namespace detail;

std::vector<spool::outbox_entry> spool::outbox(std::size_t limit) const {
  return core_->outbox(limit);
}

std::uint64_t spool::outbox_count() const { return core_->outbox_count(); }

std::optional<std::string> spool::body_head(std::string_view id, std::size_t limit) const {
  return core_->body_head(id, limit);
}

void spool::append_outbox(std::vector<std::string> events,
                          std::function<void(result, std::size_t)> done) {
  append_outbox_op op;
  op.events = std::move(events);
  op.done = std::move(done);
  core_->submit(std::move(op));
}

void spool::ack_outbox(std::uint64_t upto, std::function<void(result, std::size_t)> done) {
  ack_outbox_op op;
  op.upto = upto;
  op.done = std::move(done);
  core_->submit(std::move(op));
}

}  // namespace queue

namespace queue::detail {

std::vector<spool::outbox_entry> spool_core::outbox(std::size_t limit) const {
  std::vector<spool::outbox_entry> out;
  if (limit == 0) return out;
  read([&](lmdb::txn& t) {
    auto c = lmdb::cursor::open(t, events_dbi_);
    if (!c) return;
    MDB_val k{}, v{};
    for (auto ec = c->get(&k, &v, MDB_FIRST); !ec && out.size() < limit;
         ec = c->get(&k, &v, MDB_NEXT)) {
      const auto seq = id_of_key(lmdb::to_view(k));
      if (!seq) continue;  // not a key this file wrote
      out.push_back({*seq, std::string(lmdb::to_view(v))});
    }
  });
  return out;
}

std::optional<std::string> spool_core::body_head(std::string_view id, std::size_t limit) const {
  const auto n = parse_id(id);
  if (!n) return std::nullopt;
  std::optional<std::string> out;
  read([&](lmdb::txn& t) {
    const id_key key = key_of(*n);
    if (auto v = t.get(body_dbi_, key_view(key))) out.emplace(v->substr(0, limit));
  });
  return out;
}

std::uint64_t spool_core::outbox_count() const {
  std::uint64_t n = 0;
  read([&](lmdb::txn& t) {
    if (auto s = t.stat(events_dbi_)) n = s->ms_entries;
  });
  return n;
}

std::error_code spool_core::put_events(lmdb::txn& t, const std::vector<std::string>& lines) {
  if (lines.empty()) return {};
  auto c = lmdb::cursor::open(t, events_dbi_);
  if (!c) return c.error();
  std::uint64_t seq = 0;
  MDB_val k{};
  if (auto ec = c->get(&k, nullptr, MDB_LAST); !ec) {
    seq = id_of_key(lmdb::to_view(k)).value_or(0);
  } else if (!lmdb::is(ec, MDB_NOTFOUND)) {
    return ec;
  }
  c->close();
  for (const std::string& line : lines) {
    const id_key key = key_of(++seq);
    if (auto ec = t.put(events_dbi_, key_view(key), line, MDB_APPEND)) return ec;
  }
  return {};
}

std::error_code spool_core::apply_ack(lmdb::txn& t, ack_outbox_op& a) {
  a.res = {};
  a.count = 0;
  auto c = lmdb::cursor::open(t, events_dbi_);
  if (!c) return c.error();
  MDB_val k{};
  std::vector<std::uint64_t> gone;
  for (auto ec = c->get(&k, nullptr, MDB_FIRST); !ec; ec = c->get(&k, nullptr, MDB_NEXT)) {
    const auto seq = id_of_key(lmdb::to_view(k));
    if (seq && *seq > a.upto) break;
    if (seq) gone.push_back(*seq);
  }
  c->close();
  for (std::uint64_t seq : gone) {
    const id_key key = key_of(seq);
    if (auto ec = t.del(events_dbi_, key_view(key)); ec && !lmdb::is(ec, MDB_NOTFOUND)) return ec;
    ++a.count;
  }
  return {};
}

}  // namespace queue::detail
