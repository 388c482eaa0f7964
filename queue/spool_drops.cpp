// The spool's record of imported drop files (the `drops` database, see
// spool_core.hpp): which drop file became which message, so the maildrop
// importer never queues one file twice. enqueue_drop() writes a name with its
// message (spool_apply.cpp), forget_drops() deletes names, the reads here look
// them up. A name that cannot be a key is refused, never a crash.
#include "queue/spool_core.hpp"

namespace queue {

using namespace detail;

std::optional<std::string> spool::drop_imported(std::string_view drop_name) const {
  return core_->drop_imported(drop_name);
}

std::vector<std::string> spool::drop_names(std::size_t limit) const {
  return core_->drop_names(limit);
}

void spool::forget_drops(std::vector<std::string> names,
                         std::function<void(result, std::size_t)> done) {
  forget_drops_op op;
  op.names = std::move(names);
  op.done = std::move(done);
  core_->submit(std::move(op));
}

}  // namespace queue

namespace queue::detail {

std::optional<std::string> spool_core::drop_imported(std::string_view name) const {
  if (name.empty() || name.size() > spool::max_drop_name) return std::nullopt;
  std::optional<std::string> out;
  read([&](lmdb::txn& t) {
    if (auto v = t.get(drops_dbi_, name)) out = format_id(id_of_key(*v).value_or(0));
  });
  return out;
}

std::vector<std::string> spool_core::drop_names(std::size_t limit) const {
  std::vector<std::string> out;
  if (limit == 0) return out;
  read([&](lmdb::txn& t) {
    auto c = lmdb::cursor::open(t, drops_dbi_);
    if (!c) return;
    MDB_val k{};
    for (auto ec = c->get(&k, nullptr, MDB_FIRST); !ec && out.size() < limit;
         ec = c->get(&k, nullptr, MDB_NEXT))
      out.emplace_back(lmdb::to_view(k));
  });
  return out;
}

}  // namespace queue::detail
