// IP addresses and the address blocks of smtp.mynetworks, without Asio: parse a
// block once at load, parse a client's address once per connection, then match
// with byte compares. IPv4-mapped IPv6 (::ffff:a.b.c.d) counts as IPv4 on both
// sides. Parsing fails with nullopt or a message naming the text; matching cannot fail.
#pragma once

#include <array>
#include <cstdint>
#include <expected>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace relayd {

// An IPv4 or IPv6 address; IPv4 (also when it arrived IPv4-mapped) uses the first
// four bytes. Comparable, so it can key a map.
struct ip_address {
  bool v6 = false;
  std::array<std::uint8_t, 16> bytes{};  // network byte order

  static ip_address from_v4(const std::array<std::uint8_t, 4>& b);
  // An IPv4-mapped address becomes the IPv4 one.
  static ip_address from_v6(const std::array<std::uint8_t, 16>& b);
  friend bool operator==(const ip_address&, const ip_address&) = default;
  friend auto operator<=>(const ip_address&, const ip_address&) = default;
};

// A textual address as a peer or socket names it: "192.0.2.1", "2001:db8::1",
// "[2001:db8::1]", "fe80::1%eth0" (the zone is ignored), "::ffff:192.0.2.1"
// (IPv4). nullopt for anything else.
std::optional<ip_address> parse_ip_address(std::string_view text);

// An address block from mynetworks: "127.0.0.0/8", "::1/128", or a bare address.
struct cidr {
  bool v6 = false;
  std::uint8_t addr[16] = {};  // network byte order; IPv4 uses the first 4 bytes
  int prefix = 0;
  bool contains(const ip_address& ip) const;
  // `ip` is textual, as parse_ip_address takes it; text that is no address is
  // in no block. Parses `ip` on each call: match many blocks with in_networks.
  bool contains(std::string_view ip) const;
};

// "10.0.0.0/8", "2001:db8::/32", "192.0.2.7" (a /32 or /128). Host bits set
// ("127.0.0.1/8") are masked off; "::ffff:a.b.c.d/N" with N >= 96 becomes the
// IPv4 block a.b.c.d/N-96. The error names the text and what is wrong.
std::expected<cidr, std::string> parse_cidr(std::string_view s);

// Whether `ip` is in any of `networks`.
bool in_networks(std::span<const cidr> networks, const ip_address& ip);
// The same for a textual address, parsed once for all the blocks; false when it
// is no address.
bool in_networks(std::span<const cidr> networks, std::string_view ip);

// Exactly an IPv4 dotted quad or an IPv6 literal (no brackets, no zone), as
// inet_pton(3) reads them; `out` receives 4 or 16 bytes.
bool parse_ipv4(std::string_view s, std::uint8_t* out);
bool parse_ipv6(std::string_view s, std::uint8_t* out);

}  // namespace relayd
