// Implements delivery_rate.hpp.
#include "relayd/delivery_rate.hpp"

#include <algorithm>
#include <charconv>

namespace relayd {
namespace {

// Bookings older than this were not redeemed (message deleted, delivered by a
// flush, or suspended meanwhile): forgotten.
constexpr std::int64_t booking_grace_us = 60'000'000;

}  // namespace

std::string rate::to_string() const {
  const char unit = per.count() == 1 ? 's' : per.count() == 60 ? 'm' : per.count() == 3600 ? 'h' : 'd';
  return std::to_string(count) + "/" + unit;
}

std::int64_t rate::interval_us() const {
  if (count == 0) return 0;
  const std::int64_t period_us = per.count() * 1'000'000;
  return std::max<std::int64_t>(1, period_us / static_cast<std::int64_t>(count));
}

std::expected<rate, std::string> parse_rate(std::string_view s) {
  const std::string shown = "\"" + std::string(s) + "\"";
  const auto slash = s.find('/');
  if (slash == std::string_view::npos || slash == 0 || slash + 2 != s.size())
    return std::unexpected("bad rate " + shown + " (use N/s, N/m, N/h or N/d, e.g. \"100/m\")");
  rate r;
  const char* first = s.data();
  const char* last = s.data() + slash;
  auto [end, ec] = std::from_chars(first, last, r.count);
  if (ec != std::errc() || end != last || r.count == 0 || r.count > 1'000'000'000)
    return std::unexpected("bad rate " + shown + " (the count must be 1 to 1000000000)");
  switch (s.back()) {
    case 's': r.per = std::chrono::seconds(1); break;
    case 'm': r.per = std::chrono::seconds(60); break;
    case 'h': r.per = std::chrono::seconds(3600); break;
    case 'd': r.per = std::chrono::seconds(86400); break;
    default:
      return std::unexpected("bad rate " + shown + " (the unit is s, m, h or d)");
  }
  return r;
}

token_bucket::token_bucket(const rate& r, std::uint32_t slow_factor)
    : base_interval_us_(r.interval_us()) {
  interval_us_ = base_interval_us_;
  set_slow(slow_factor);
}

void token_bucket::set_slow(std::uint32_t factor) {
  interval_us_ = base_interval_us_ * std::max<std::uint32_t>(factor, 1);
  if (interval_us_ == 0) return;
  // One second's worth of tokens, at least one.
  const std::int64_t burst = std::max<std::int64_t>(1, 1'000'000 / interval_us_);
  tolerance_us_ = (burst - 1) * interval_us_;
}

std::int64_t token_bucket::reserve(std::int64_t now_us) {
  if (!limited()) return now_us;
  forget_old(now_us);
  const std::int64_t t = std::max(tat_us_, now_us);
  const std::int64_t slot = std::max(t - tolerance_us_, now_us);
  tat_us_ = t + interval_us_;
  if (slot > now_us) booked_.push_back(slot);
  return slot;
}

bool token_bucket::ready(std::int64_t now_us) const {
  return !limited() || std::max(tat_us_, now_us) - tolerance_us_ <= now_us;
}

std::int64_t token_bucket::next_token_us(std::int64_t now_us) const {
  if (!limited()) return now_us;
  return std::max(std::max(tat_us_, now_us) - tolerance_us_, now_us);
}

bool token_bucket::redeem(std::int64_t slot_us, std::int64_t now_us) {
  forget_old(now_us);
  auto it = std::lower_bound(booked_.begin(), booked_.end(), slot_us);
  if (it == booked_.end() || *it != slot_us) return false;
  booked_.erase(it);
  return true;
}

void token_bucket::forget_old(std::int64_t now_us) {
  while (!booked_.empty() && booked_.front() + booking_grace_us < now_us) booked_.pop_front();
}

}  // namespace relayd
