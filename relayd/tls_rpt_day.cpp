// Implements tls_rpt_day.hpp.
#include "relayd/tls_rpt_day.hpp"

#include <ctime>

namespace relayd {

std::string day_name(std::int64_t day_start) {
  const std::time_t t = static_cast<std::time_t>(day_start);
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  char buf[16];
  std::strftime(buf, sizeof buf, "%Y-%m-%d", &tm);
  return buf;
}

std::optional<std::int64_t> parse_day_name(std::string_view name) {
  if (name.size() != 10 || name[4] != '-' || name[7] != '-') return std::nullopt;
  std::tm tm{};
  const std::string s(name);
  const char* end = ::strptime(s.c_str(), "%Y-%m-%d", &tm);
  if (!end || *end != '\0') return std::nullopt;
  const std::int64_t t = static_cast<std::int64_t>(::timegm(&tm));
  if (day_name(t) != name) return std::nullopt;  // "2026-02-30" and the like
  return t;
}

std::int64_t day_start_of(std::int64_t t) {
  constexpr std::int64_t day = 86400;
  return t - (t % day + day) % day;
}

}  // namespace relayd
