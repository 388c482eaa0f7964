// Address and address-block parsing and matching for smtp.mynetworks (see
// net_cidr.hpp). Addresses are read with inet_pton(3) into one 16-byte form;
// matching is a prefix compare of bytes. Bad text is nullopt or an error message.
#include "relayd/net_cidr.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <cassert>
#include <cstring>

#include "relayd/config_values.hpp"
#include "smtp/text.hpp"

namespace relayd {
namespace {

bool is_v4_mapped(const std::uint8_t* a) {
  static constexpr std::uint8_t prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  return std::memcmp(a, prefix, sizeof prefix) == 0;
}

// Whether the first `prefix` bits of `a` and `b` agree.
bool same_prefix(const std::uint8_t* a, const std::uint8_t* b, int prefix) {
  const int whole = prefix / 8;
  if (std::memcmp(a, b, static_cast<std::size_t>(whole)) != 0) return false;
  if (const int rest = prefix % 8; rest != 0) {
    const auto mask = static_cast<std::uint8_t>(0xff << (8 - rest));
    if ((a[whole] & mask) != (b[whole] & mask)) return false;
  }
  return true;
}

}  // namespace

bool parse_ipv4(std::string_view s, std::uint8_t* out) {
  if (s.size() > 15) return false;
  const std::string text(s);
  return inet_pton(AF_INET, text.c_str(), out) == 1;
}

bool parse_ipv6(std::string_view s, std::uint8_t* out) {
  if (s.size() > 45) return false;
  const std::string text(s);
  return inet_pton(AF_INET6, text.c_str(), out) == 1;
}

ip_address ip_address::from_v4(const std::array<std::uint8_t, 4>& b) {
  ip_address a;
  std::ranges::copy(b, a.bytes.begin());
  return a;
}

ip_address ip_address::from_v6(const std::array<std::uint8_t, 16>& b) {
  if (is_v4_mapped(b.data())) return from_v4({b[12], b[13], b[14], b[15]});
  ip_address a;
  a.v6 = true;
  a.bytes = b;
  return a;
}

std::optional<ip_address> parse_ip_address(std::string_view text) {
  if (text.size() >= 2 && text.front() == '[' && text.back() == ']')
    text = text.substr(1, text.size() - 2);
  if (const auto pct = text.find('%'); pct != std::string_view::npos) text = text.substr(0, pct);
  std::array<std::uint8_t, 16> b{};
  if (parse_ipv4(text, b.data())) return ip_address::from_v4({b[0], b[1], b[2], b[3]});
  if (parse_ipv6(text, b.data())) return ip_address::from_v6(b);
  return std::nullopt;
}

bool cidr::contains(const ip_address& ip) const {
  assert(prefix >= 0 && prefix <= (v6 ? 128 : 32));
  return ip.v6 == v6 && same_prefix(ip.bytes.data(), addr, prefix);
}

bool cidr::contains(std::string_view ip) const {
  const auto a = parse_ip_address(ip);
  return a && contains(*a);
}

bool in_networks(std::span<const cidr> networks, const ip_address& ip) {
  return std::ranges::any_of(networks, [&](const cidr& n) { return n.contains(ip); });
}

bool in_networks(std::span<const cidr> networks, std::string_view ip) {
  const auto a = parse_ip_address(ip);
  return a && in_networks(networks, *a);
}

std::expected<cidr, std::string> parse_cidr(std::string_view s) {
  const auto slash = s.find('/');
  const std::string_view address = s.substr(0, slash);
  cidr c;
  if (parse_ipv4(address, c.addr)) {
    c.v6 = false;
  } else if (parse_ipv6(address, c.addr)) {
    c.v6 = true;
  } else {
    return std::unexpected("bad network " + quoted(s) + " (use e.g. 127.0.0.0/8, ::1/128)");
  }
  const int max = c.v6 ? 128 : 32;
  c.prefix = max;
  if (slash != std::string_view::npos) {
    const std::string_view bits = s.substr(slash + 1);
    const auto n = smtp::text::parse_decimal(bits, 999);
    if (!n) return std::unexpected("bad prefix length in " + quoted(s));
    if (*n > static_cast<std::uint64_t>(max))
      return std::unexpected("prefix /" + std::string(bits) + " out of range in " + quoted(s) +
                             (c.v6 ? " (IPv6: 0-128)" : " (IPv4: 0-32)"));
    c.prefix = static_cast<int>(*n);
  }
  // Host bits set ("127.0.0.1/8"): keep the network.
  for (int i = 0; i < 16; ++i) {
    const int keep = std::clamp(c.prefix - i * 8, 0, 8);
    c.addr[i] &= static_cast<std::uint8_t>(0xff00 >> keep);
  }
  // "::ffff:10.0.0.0/104" is the IPv4 block 10.0.0.0/8; addresses are mapped likewise.
  if (c.v6 && c.prefix >= 96 && is_v4_mapped(c.addr)) {
    std::memmove(c.addr, c.addr + 12, 4);
    std::memset(c.addr + 4, 0, 12);
    c.v6 = false;
    c.prefix -= 96;
  }
  return c;
}

}  // namespace relayd
