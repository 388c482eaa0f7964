// Name and address syntax for the resolver: mail domains and host names are
// normalised (ASCII lower case, no trailing dot) before any lookup or cache use;
// IP addresses and RFC 5321 domain literals are recognised so they bypass DNS.
// Nothing here touches the network; malformed input yields nullopt, never a throw.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace dns::detail {

// "Example.ORG." -> "example.org". nullopt unless every label is 1..63 of
// [a-z0-9-_] and the whole name is 1..253 characters (UTF-8 must arrive as A-labels).
std::optional<std::string> normalize_name(std::string_view name);

// A bare IPv4 or IPv6 address in canonical text ("2001:db8::1"); nullopt otherwise.
std::optional<std::string> parse_ip(std::string_view text);

// RFC 5321 address literals: "[192.0.2.1]" and "[IPv6:2001:db8::1]".
struct domain_literal {
  bool is_literal = false;  // the text starts with '['
  bool valid = false;       // and holds a usable address
  std::string address;      // canonical address text when valid
};
domain_literal parse_domain_literal(std::string_view text);

// "127.0.0.1:5353", "[::1]:53", "::1", "192.0.2.1" -> c-ares CSV entry with a
// port ("127.0.0.1:5353", "[::1]:53", "192.0.2.1:53"); nullopt when malformed.
std::optional<std::string> server_csv_entry(std::string_view server);

}  // namespace dns::detail
