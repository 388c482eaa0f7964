// Connection counts and the per-client rate window (see inbound_limits.hpp).
// Pure bookkeeping: the caller passes the time, so tests drive the window.
// Nothing here fails; a release() without an admit() is ignored.
#include "relayd/inbound_limits.hpp"

namespace relayd {

inbound_limits::verdict inbound_limits::admit(const std::string& ip, clock::time_point now) {
  if (!rate_allows(ip, now)) return verdict::too_fast;
  if (open_ >= settings_.max_connections) return verdict::too_many;
  auto it = per_client_.find(ip);
  const std::size_t from_ip = it == per_client_.end() ? 0 : it->second;
  if (from_ip >= settings_.max_connections_per_client) return verdict::too_many_client;
  if (it == per_client_.end()) it = per_client_.emplace(ip, 0).first;
  ++it->second;
  ++open_;
  return verdict::accepted;
}

void inbound_limits::release(const std::string& ip) {
  auto it = per_client_.find(ip);
  if (it == per_client_.end()) return;
  --open_;
  if (--it->second == 0) per_client_.erase(it);
}

std::size_t inbound_limits::open_from(const std::string& ip) const {
  auto it = per_client_.find(ip);
  return it == per_client_.end() ? 0 : it->second;
}

bool inbound_limits::rate_allows(const std::string& ip, clock::time_point now) {
  const std::uint64_t limit = settings_.max_rate_per_client;
  if (limit == 0) return true;
  if (now - last_sweep_ >= rate_window) {
    std::erase_if(rates_,
                  [&](const auto& kv) { return now - kv.second.window_start >= 2 * rate_window; });
    last_sweep_ = now;
  }
  auto it = rates_.find(ip);
  if (it == rates_.end()) {
    if (rates_.size() >= max_rate_entries) return true;
    it = rates_.emplace(ip, rate_entry{now, 0, 0}).first;
  }
  rate_entry& e = it->second;
  if (now - e.window_start >= 2 * rate_window) {
    e = rate_entry{now, 0, 0};
  } else if (now - e.window_start >= rate_window) {
    e = rate_entry{e.window_start + rate_window, 0, e.count};
  }
  ++e.count;
  const double into = std::chrono::duration<double>(now - e.window_start) / rate_window;
  const double estimate =
      static_cast<double>(e.previous) * (1.0 - into) + static_cast<double>(e.count);
  return estimate <= static_cast<double>(limit);
}

}  // namespace relayd
