// The retry policy of DESIGN.md's failure classification, without I/O or clock:
// given a recipient's state, one outcome and "now", the recipient's next state.
// Deferrals back off min_backoff × 2^(n-1), capped at max_backoff, plus up to
// 10% jitter; a deferral past arrival + max_lifetime fails as "expired".
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>

#include "queue/record.hpp"
#include "relayd/delivery_types.hpp"

namespace relayd {

struct retry_settings {
  std::chrono::seconds min_backoff{300};
  std::chrono::seconds max_backoff{3600};
  std::chrono::seconds max_lifetime{5 * 86400};
};

// Backoff before attempt n+1 after n failed attempts (n >= 1), before jitter.
std::chrono::microseconds backoff(std::uint32_t attempts, const retry_settings& s);

// `jitter` returns a value in [0, 1); tests pass a constant.
queue::recipient apply_outcome(queue::recipient r, const recipient_outcome& o,
                               std::int64_t arrival_us, std::int64_t now_us,
                               const retry_settings& s, const std::function<double()>& jitter);

}  // namespace relayd
