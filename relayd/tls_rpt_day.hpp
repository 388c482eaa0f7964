// The UTC days TLS reports (RFC 8460) cover, by name: the daemon's directory
// names under <spool>/tls-rpt and relayctl tls-rpt send's argument. Pure, no
// Asio: relayctl links it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace relayd {

// "YYYY-MM-DD" of the UTC day starting at `day_start`, and back (nullopt when
// not such a date).
std::string day_name(std::int64_t day_start);
std::optional<std::int64_t> parse_day_name(std::string_view name);

// The start (UTC midnight) of the day holding `t` (seconds since the epoch).
std::int64_t day_start_of(std::int64_t t);

}  // namespace relayd
