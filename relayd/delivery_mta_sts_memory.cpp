// Implements delivery_mta_sts_memory.hpp. A full table first drops the entries
// whose TXT answer expired and whose backoff ended, then, if still full, the
// first by name (a domain forgotten early is only looked up again).
#include "relayd/delivery_mta_sts_memory.hpp"

#include <algorithm>
#include <iterator>

namespace relayd::mta_sts {

std::optional<txt_memory> lookup_memory::txt(const std::string& domain, std::int64_t now) const {
  auto it = domains_.find(domain);
  if (it == domains_.end() || !it->second.txt || now >= it->second.txt_until) return std::nullopt;
  return it->second.txt;
}

lookup_memory::entry& lookup_memory::slot(const std::string& domain, std::int64_t now) {
  if (auto it = domains_.find(domain); it != domains_.end()) return it->second;
  if (capacity_ > 0 && domains_.size() >= capacity_) {
    std::erase_if(domains_, [now](const auto& kv) {
      return now >= kv.second.txt_until && now >= kv.second.retry_after;
    });
    if (domains_.size() >= capacity_) domains_.erase(domains_.begin());
  }
  return domains_[domain];
}

void lookup_memory::remember_txt(const std::string& domain, std::optional<std::string> id,
                                 std::int64_t ttl, std::int64_t now) {
  const std::int64_t keep = std::min(ttl, txt_keep_max);
  if (keep <= 0) return;
  entry& e = slot(domain, now);
  e.txt = txt_memory{std::move(id)};
  e.txt_until = now + keep;
}

bool lookup_memory::may_fetch(const std::string& domain, const std::string& id, std::int64_t now,
                              std::int64_t* until) const {
  auto it = domains_.find(domain);
  if (it == domains_.end() || it->second.failures == 0 || it->second.failed_id != id ||
      now >= it->second.retry_after)
    return true;
  if (until) *until = it->second.retry_after;
  return false;
}

std::int64_t lookup_memory::fetch_failed(const std::string& domain, const std::string& id,
                                         std::int64_t now) {
  entry& e = slot(domain, now);
  if (e.failed_id != id) {
    e.failed_id = id;
    e.failures = 0;
  }
  ++e.failures;
  std::int64_t wait = fetch_backoff_first;
  for (std::uint32_t i = 1; i < e.failures && wait < fetch_backoff_max; ++i) wait *= 2;
  e.retry_after = now + std::min(wait, fetch_backoff_max);
  return e.retry_after;
}

void lookup_memory::fetch_succeeded(const std::string& domain) {
  auto it = domains_.find(domain);
  if (it == domains_.end()) return;
  it->second.failed_id.clear();
  it->second.failures = 0;
  it->second.retry_after = 0;
}

}  // namespace relayd::mta_sts
