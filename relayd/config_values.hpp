// The value syntaxes of relayd.toml, apart from the schema that places them:
// durations ("5m"), sizes ("35M"), endpoints ("[::1]:25") and host names, and
// their display forms for messages. Each parser returns the value or a message
// that quotes the text and says what is wrong; none throws.
#pragma once

#include <chrono>
#include <cstdint>
#include <expected>
#include <string>
#include <string_view>

namespace relayd {

// Durations above this (100 years) are refused, so that adding one to a clock
// in microseconds cannot overflow.
inline constexpr std::uint64_t max_duration_seconds = 36500ull * 86400;

// "127.0.0.1:25", "[::1]:25", "localhost:25" (host kept as text; resolved at bind).
struct endpoint {
  std::string host;
  std::uint16_t port = 0;
  std::string to_string() const;  // "127.0.0.1:25" / "[::1]:25"
};

// "30s", "5m", "4h", "5d", "1w"; a bare number is seconds. At most 36500d.
std::expected<std::chrono::seconds, std::string> parse_duration(std::string_view s);
// "512K", "35M", "1G", "100T"; a bare number is bytes. Binary multiples.
std::expected<std::uint64_t, std::string> parse_size(std::string_view s);
// "host:port", "[ipv6]:port", or a bare host when default_port is not 0. The host
// is an IPv4 literal, a host name, or (in brackets) an IPv6 literal.
std::expected<endpoint, std::string> parse_endpoint(std::string_view s,
                                                    std::uint16_t default_port = 0);

// RFC 1035 host name syntax: letters, digits, hyphens; labels of 1-63 octets, at
// most 253 in all; the last label not all digits ("1.2.3.4" is no name).
bool valid_domain(std::string_view s);


// A value from the file shown in a message: in double quotes, with quotes,
// backslashes and control characters escaped.
std::string quoted(std::string_view s);

}  // namespace relayd
