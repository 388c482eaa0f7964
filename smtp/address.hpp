// RFC 5321 address syntax: Mailbox = Local-part "@" ( Domain / address-literal ),
// checked octet by octet with the length limits of 4.5.3.1 (local part 64,
// domain 255, path 256 with its angle brackets). UTF-8 is accepted only when the
// caller allows it (SMTPUTF8, RFC 6531) and must then be well-formed. Failures
// are values naming what was wrong; nothing here throws.
#pragma once

#include <cstddef>
#include <expected>
#include <string_view>

namespace smtp {

inline constexpr std::size_t max_local_part_length = 64;
inline constexpr std::size_t max_domain_length = 255;
inline constexpr std::size_t max_path_length = 256;  // "<" mailbox ">" (source route included)

enum class address_error {
  empty,
  too_long,             // the whole path exceeds max_path_length
  local_part_too_long,  // over max_local_part_length octets
  bad_local_part,       // neither a Dot-string nor a Quoted-string
  missing_domain,       // no "@domain"
  domain_too_long,      // over max_domain_length octets
  bad_domain,           // not a valid Domain (LDH labels, or U-labels with SMTPUTF8)
  bad_address_literal,  // not [IPv4] or [IPv6:...]; General-address-literal is refused
  non_ascii,            // UTF-8 without SMTPUTF8
  bad_utf8,             // malformed UTF-8
};

std::string_view to_string(address_error e);

// `mailbox` is the address without angle brackets or source route.
std::expected<void, address_error> check_mailbox(std::string_view mailbox, bool utf8_allowed);
// Domain = sub-domain *("." sub-domain); U-labels only when utf8_allowed.
bool is_valid_domain(std::string_view domain, bool utf8_allowed);
// "[192.0.2.1]" or "[IPv6:2001:db8::1]" (brackets included).
bool is_valid_address_literal(std::string_view literal);
bool is_ascii(std::string_view s);
// Well-formed UTF-8: no overlong forms, surrogates or code points above U+10FFFF.
bool is_valid_utf8(std::string_view s);

}  // namespace smtp
