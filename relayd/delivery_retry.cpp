// Implements delivery_retry.hpp.
#include "relayd/delivery_retry.hpp"

#include <algorithm>

#include "relayd/delivery_outcome.hpp"

namespace relayd {

std::chrono::microseconds backoff(std::uint32_t attempts, const retry_settings& s) {
  using std::chrono::microseconds;
  const auto min = std::chrono::duration_cast<microseconds>(s.min_backoff);
  const auto max = std::chrono::duration_cast<microseconds>(s.max_backoff);
  if (attempts <= 1) return std::min(min, max);
  // Doubling stops at the cap, so the shift never overflows.
  auto d = min;
  for (std::uint32_t i = 1; i < attempts && d < max; ++i) d *= 2;
  return std::min(d, max);
}

queue::recipient apply_outcome(queue::recipient r, const recipient_outcome& o,
                               std::int64_t arrival_us, std::int64_t now_us,
                               const retry_settings& s, const std::function<double()>& jitter) {
  if (o.counts_as_attempt) {
    ++r.attempts;
    if (r.first_attempt_us == 0) r.first_attempt_us = now_us;
    r.last_attempt_us = now_us;
  }
  record_outcome(r, o);

  switch (o.what) {
    case outcome_kind::delivered:
      r.state = queue::rcpt_state::delivered;
      r.reason.clear();
      return r;
    case outcome_kind::failed:
      r.state = queue::rcpt_state::failed;
      r.reason = o.reason.empty() ? "rejected" : o.reason;
      return r;
    case outcome_kind::deferred:
      break;
  }
  const std::int64_t expires_us =
      arrival_us + std::chrono::duration_cast<std::chrono::microseconds>(s.max_lifetime).count();
  if (now_us >= expires_us) {
    r.state = queue::rcpt_state::failed;
    r.reason = "expired";
    return r;
  }
  // The last attempt comes when the lifetime ends, not a backoff after it, so a
  // message expires on time.
  r.state = queue::rcpt_state::pending;
  if (o.not_before_us != 0) {
    r.next_attempt_us = std::min(o.not_before_us, expires_us);
    return r;
  }
  // Up to 10 % jitter spreads retries that fell due together; it never takes a
  // wait past max_backoff: at the cap it shortens the wait instead.
  const auto base = backoff(std::max<std::uint32_t>(r.attempts, 1), s).count();
  const auto extra = static_cast<std::int64_t>(static_cast<double>(base) * 0.1 * jitter());
  const auto cap = std::chrono::duration_cast<std::chrono::microseconds>(s.max_backoff).count();
  const auto wait = base + extra <= cap ? base + extra : base - extra;
  r.next_attempt_us = std::min(now_us + wait, expires_us);
  return r;
}

}  // namespace relayd
