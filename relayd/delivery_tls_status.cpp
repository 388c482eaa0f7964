// Implements delivery_tls_status.hpp. A full table drops its oldest entry (a
// linear scan: it happens once per new destination past the cap).
#include "relayd/delivery_tls_status.hpp"

#include <algorithm>

namespace relayd {

std::string tls_outcome_text(std::string_view version, bool verified) {
  if (version.empty()) return "plaintext";
  return std::string(verified ? "verified " : "untrusted ") + std::string(version);
}

void tls_status_table::record(const std::string& destination, tls_status s) {
  if (capacity_ == 0) return;
  auto it = by_name_.find(destination);
  if (it == by_name_.end() && by_name_.size() >= capacity_)
    by_name_.erase(std::ranges::min_element(by_name_, {}, [](const auto& kv) { return kv.second.at; }));
  by_name_.insert_or_assign(destination, std::move(s));
}

const tls_status* tls_status_table::find(std::string_view destination) const {
  auto it = by_name_.find(destination);
  return it == by_name_.end() ? nullptr : &it->second;
}

}  // namespace relayd
