// Value parsers of relayd.toml (see config_values.hpp): durations, sizes,
// endpoints and host names, each checked whole (no trailing junk, no overflow)
// and refused with a message that quotes the offending text.
#include "relayd/config_values.hpp"

#include <algorithm>
#include <cstdio>
#include <limits>
#include <optional>
#include <utility>

#include "relayd/net_cidr.hpp"
#include "smtp/text.hpp"

namespace relayd {
namespace {

using smtp::text::is_digit;

bool all_digits(std::string_view s) {
  return !s.empty() && std::ranges::all_of(s, is_digit);
}

// A host in an address: an IPv4 literal (when it is only digits and dots) or a domain.
bool valid_host(std::string_view s) {
  if (std::ranges::all_of(s, [](char c) { return is_digit(c) || c == '.'; })) {
    std::uint8_t buf[4];
    return parse_ipv4(s, buf);
  }
  return valid_domain(s);
}

}  // namespace

std::string quoted(std::string_view s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20 || c == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

bool valid_domain(std::string_view s) {
  if (s.empty() || s.size() > 253) return false;
  std::size_t start = 0;
  while (true) {
    const std::size_t dot = s.find('.', start);
    const std::string_view label =
        s.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start);
    if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-')
      return false;
    for (char c : label) {
      const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c) || c == '-';
      if (!ok) return false;
    }
    if (dot == std::string_view::npos) return !all_digits(label);  // "1.2.3.4" is no name
    start = dot + 1;
  }
}

std::string endpoint::to_string() const {
  const std::string port_text = std::to_string(port);
  if (host.find(':') != std::string::npos) return "[" + host + "]:" + port_text;
  return host + ":" + port_text;
}

std::expected<std::chrono::seconds, std::string> parse_duration(std::string_view s) {
  const auto bad = [&] {
    return std::unexpected("bad duration " + quoted(s) + " (use e.g. 30s, 5m, 4h, 5d, 1w)");
  };
  if (!s.empty() && s.front() == '-')
    return std::unexpected("duration " + quoted(s) + " must not be negative");
  std::string_view digits = s;
  std::uint64_t unit = 1;
  if (!s.empty() && !is_digit(s.back())) {
    switch (s.back()) {
      case 's':
        unit = 1;
        break;
      case 'm':
        unit = 60;
        break;
      case 'h':
        unit = 3600;
        break;
      case 'd':
        unit = 86400;
        break;
      case 'w':
        unit = 7 * 86400;
        break;
      default:
        return bad();
    }
    digits.remove_suffix(1);
  }
  if (!all_digits(digits)) return bad();
  const auto n = smtp::text::parse_decimal(digits, max_duration_seconds / unit);
  if (!n) return std::unexpected("duration " + quoted(s) + " is too long (at most 36500d)");
  return std::chrono::seconds(static_cast<std::chrono::seconds::rep>(*n * unit));
}

std::expected<std::uint64_t, std::string> parse_size(std::string_view s) {
  const auto bad = [&] {
    return std::unexpected("bad size " + quoted(s) + " (use e.g. 512K, 35M)");
  };
  if (!s.empty() && s.front() == '-')
    return std::unexpected("size " + quoted(s) + " must not be negative");
  std::string_view digits = s;
  int shift = 0;
  if (!s.empty() && !is_digit(s.back())) {
    switch (s.back()) {
      case 'K':
      case 'k':
        shift = 10;
        break;
      case 'M':
      case 'm':
        shift = 20;
        break;
      case 'G':
      case 'g':
        shift = 30;
        break;
      case 'T':
      case 't':
        shift = 40;
        break;
      default:
        return bad();
    }
    digits.remove_suffix(1);
  }
  if (!all_digits(digits)) return bad();
  const auto n =
      smtp::text::parse_decimal(digits, std::numeric_limits<std::uint64_t>::max() >> shift);
  if (!n) return std::unexpected("size " + quoted(s) + " is too large");
  return *n << shift;
}

std::expected<endpoint, std::string> parse_endpoint(std::string_view s,
                                                    std::uint16_t default_port) {
  if (s.empty()) return std::unexpected(std::string("empty address"));
  endpoint e;
  std::string_view host;
  std::optional<std::string_view> port_text;
  if (s.front() == '[') {
    const auto close = s.find(']');
    if (close == std::string_view::npos)
      return std::unexpected("bad address " + quoted(s) + " (missing \"]\")");
    host = s.substr(1, close - 1);
    const std::string_view rest = s.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':')
        return std::unexpected("bad address " + quoted(s) + " (expected \":PORT\" after \"]\")");
      port_text = rest.substr(1);
    }
    std::uint8_t buf[16];
    if (host.find(':') != std::string_view::npos ? !parse_ipv6(host, buf) : !valid_host(host))
      return std::unexpected("bad host " + quoted(host) + " in " + quoted(s));
  } else {
    const auto colon = s.find(':');
    if (colon != std::string_view::npos && s.find(':', colon + 1) != std::string_view::npos)
      return std::unexpected("bad address " + quoted(s) +
                             " (an IPv6 address goes in brackets, e.g. \"[::1]:25\")");
    host = s.substr(0, colon);
    if (colon != std::string_view::npos) port_text = s.substr(colon + 1);
    if (!valid_host(host)) return std::unexpected("bad host " + quoted(host) + " in " + quoted(s));
  }
  if (port_text) {
    const auto port = smtp::text::parse_decimal(*port_text, 65535);
    if (!port) return std::unexpected("bad port " + quoted(*port_text) + " in " + quoted(s));
    e.port = static_cast<std::uint16_t>(*port);
  } else if (default_port != 0) {
    e.port = default_port;
  } else {
    return std::unexpected("missing port in " + quoted(s) + " (e.g. \"127.0.0.1:25\")");
  }
  e.host = std::string(host);
  return e;
}

}  // namespace relayd
