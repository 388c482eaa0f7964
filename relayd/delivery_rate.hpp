// Rates of [[destination]] (max_rate, connect_rate: "N/s", "N/m", "N/h", "N/d")
// and the token bucket that spaces messages or connections to them. Pure: no
// clock of its own, no I/O; times are microseconds passed in by the caller.
// parse_rate() returns an error naming the text; the bucket never fails.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <expected>
#include <string>
#include <string_view>

namespace relayd {

struct rate {
  std::uint64_t count = 0;     // tokens ...
  std::chrono::seconds per{1};  // ... per this period (1s, 60s, 3600s, 86400s)
  std::string to_string() const;  // "60/m"
  // Microseconds between two tokens (at least 1).
  std::int64_t interval_us() const;
};

// "60/m", "10/s", "2000/h", "20000/d"; count 1..10^9.
std::expected<rate, std::string> parse_rate(std::string_view s);

// A token bucket as a virtual schedule (GCRA): tokens come one per interval,
// and the bucket holds one second's worth of them (at least one), so over any
// window of W seconds at most burst + W / interval tokens are handed out.
//
// reserve() never refuses: it hands out the earliest time at which the caller
// may go (now when a token is there) and books that slot, so that messages over
// the rate get distinct, increasing times and are spread instead of all coming
// back at once. A booked slot is remembered (booked_until / redeem) so that the
// message that got it is not charged again when it comes back at that time.
class token_bucket {
 public:
  token_bucket() = default;
  explicit token_bucket(const rate& r, std::uint32_t slow_factor = 1);

  bool limited() const { return interval_us_ > 0; }
  // The earliest time >= now_us a token is there; that token is taken.
  std::int64_t reserve(std::int64_t now_us);
  // Whether a token is there at now_us (nothing is taken).
  bool ready(std::int64_t now_us) const;
  // When the next token will be there (now_us if there is one).
  std::int64_t next_token_us(std::int64_t now_us) const;
  // A message booked for `slot_us` came back: true (and the booking is used up)
  // when that slot was booked here; false when it was not (e.g. after a restart).
  bool redeem(std::int64_t slot_us, std::int64_t now_us);
  // Spaces tokens `factor` times wider from now on (a "slow" rule); 1 undoes it.
  void set_slow(std::uint32_t factor);
  std::size_t booked() const { return booked_.size(); }

 private:
  void forget_old(std::int64_t now_us);

  std::int64_t base_interval_us_ = 0;
  std::int64_t interval_us_ = 0;  // 0: not limited
  std::int64_t tolerance_us_ = 0;  // (burst - 1) * interval
  std::int64_t tat_us_ = 0;        // theoretical arrival time of the next token
  std::deque<std::int64_t> booked_;  // future slots handed out, increasing
};

}  // namespace relayd
