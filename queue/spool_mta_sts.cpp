// The spool's cache of MTA-STS policies (the `mta_sts` database, see
// spool_core.hpp): relayd/delivery_mta_sts reads a domain's record here when it
// first needs it and writes new ones through the writer thread, so a policy
// outlives a restart. The records are opaque to the spool.
#include "queue/spool_core.hpp"

namespace queue {

using namespace detail;

std::optional<std::string> spool::mta_sts_record(std::string_view domain) const {
  return core_->mta_sts_record(domain);
}

void spool::store_mta_sts(std::string domain, std::string record,
                          std::function<void(result)> done) {
  mta_sts_op op;
  op.domain = std::move(domain);
  op.value = std::move(record);
  op.done = std::move(done);
  core_->submit(std::move(op));
}

}  // namespace queue

namespace queue::detail {

std::optional<std::string> spool_core::mta_sts_record(std::string_view domain) const {
  if (domain.empty() || domain.size() > spool::max_drop_name) return std::nullopt;
  std::optional<std::string> out;
  read([&](lmdb::txn& t) {
    if (auto v = t.get(mta_sts_dbi_, domain)) out = std::string(*v);
  });
  return out;
}

}  // namespace queue::detail
