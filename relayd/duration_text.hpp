// Durations as text, for relayd (config errors, DSNs) and relayctl alike: header
// only, no Asio, so relayd_config, relayd_core and cli/ can all include it.
// duration_text: 7200s -> "2h" (the largest unit that divides it, as a user
// writes it in relayd.toml); duration_breakdown: 3725s -> "1h 2m 5s";
// seconds_2dp: 0.254 -> "0.25" (the delivery log's delays). Cannot fail.
#pragma once

#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <string>
#include <utility>

namespace relayd {

// 7200s -> "2h", 1209600s -> "2w", 90s -> "90s", 0s -> "0s".
inline std::string duration_text(std::chrono::seconds d) {
  const auto n = d.count();
  for (auto [unit, suffix] : {std::pair<std::int64_t, char>{7 * 86400, 'w'},
                              {86400, 'd'}, {3600, 'h'}, {60, 'm'}})
    if (n != 0 && n % unit == 0) return std::to_string(n / unit) + suffix;
  return std::to_string(n) + "s";
}

// 3725s -> "1h 2m 5s", 86400s -> "1d", anything <= 0 -> "0s".
inline std::string duration_breakdown(std::chrono::seconds d) {
  std::int64_t s = d.count();
  if (s <= 0) return "0s";
  std::string out;
  for (auto [unit, name] : {std::pair<std::int64_t, const char*>{86400, "d"}, {3600, "h"}, {60, "m"}}) {
    if (s >= unit) {
      out += std::to_string(s / unit) + name + " ";
      s %= unit;
    }
  }
  if (s != 0 || out.empty()) out += std::to_string(s) + "s ";
  out.pop_back();
  return out;
}

// Seconds with two decimals, as the delivery log's delay= and delays= show
// them (Postfix's style): 0.254 -> "0.25", 2.5 -> "2.50", -0.5 -> "-0.50",
// rounded to the nearest hundredth (halves away from zero); "-" for what is
// not a finite number of seconds a log could show. With integers: formatting
// five doubles per delivered recipient cost more than the rest of its line.
inline std::string seconds_2dp(double seconds) {
  if (!(std::fabs(seconds) < 1e12)) return "-";
  const long long hundredths = std::llround(seconds * 100);
  const unsigned long long a = hundredths < 0 ? 0ULL - static_cast<unsigned long long>(hundredths)
                                              : static_cast<unsigned long long>(hundredths);
  char buf[32];
  char* p = buf;
  if (hundredths < 0) *p++ = '-';
  p = std::to_chars(p, buf + sizeof buf - 3, a / 100).ptr;
  *p++ = '.';
  *p++ = static_cast<char>('0' + a / 10 % 10);
  *p++ = static_cast<char>('0' + a % 10);
  return std::string(buf, p);
}

}  // namespace relayd
