// RFC 5321 Mailbox syntax (see address.hpp). The checks follow the ABNF of 4.1.2
// and 4.1.3, extended by RFC 6531 3.3 for UTF-8. General-address-literals
// ("[tag:content]") are refused: relayd could not route to them anyway.
#include "smtp/address.hpp"

#include <cstdint>

#include "smtp/text.hpp"

namespace smtp {
namespace {

bool is_alpha(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
using text::is_digit;
bool is_hex(unsigned char c) {
  return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

// atext of RFC 5322 3.2.3.
bool is_atext(unsigned char c) {
  if (is_alpha(c) || is_digit(c)) return true;
  switch (c) {
    case '!':
    case '#':
    case '$':
    case '%':
    case '&':
    case '\'':
    case '*':
    case '+':
    case '-':
    case '/':
    case '=':
    case '?':
    case '^':
    case '_':
    case '`':
    case '{':
    case '|':
    case '}':
    case '~':
      return true;
    default:
      return false;
  }
}

// qtextSMTP of RFC 5321 4.1.2: printable ASCII except '"' and '\'.
bool is_qtext(unsigned char c) {
  return c >= 32 && c <= 126 && c != '"' && c != '\\';
}

bool check_dot_string(std::string_view s, bool utf8) {
  if (s.empty() || s.front() == '.' || s.back() == '.') return false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c == '.') {
      if (s[i - 1] == '.') return false;
    } else if (!(is_atext(c) || (utf8 && c >= 0x80))) {
      return false;
    }
  }
  return true;
}

// A quoted string starting at s[0] == '"'; returns its length or 0 when malformed.
std::size_t quoted_string_length(std::string_view s, bool utf8) {
  for (std::size_t i = 1; i < s.size(); ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c == '"') return i + 1;
    if (c == '\\') {
      if (i + 1 >= s.size()) return 0;
      const auto next = static_cast<unsigned char>(s[i + 1]);
      if (next < 32 || next > 126) return 0;
      ++i;
    } else if (!(is_qtext(c) || (utf8 && c >= 0x80))) {
      return 0;
    }
  }
  return 0;
}

bool check_label(std::string_view label, bool utf8) {
  if (label.empty()) return false;
  bool ascii = true;
  for (char ch : label) {
    const auto c = static_cast<unsigned char>(ch);
    if (c >= 0x80) {
      if (!utf8) return false;
      ascii = false;
    } else if (!(is_alpha(c) || is_digit(c) || c == '-')) {
      return false;
    }
  }
  if (label.front() == '-' || label.back() == '-') return false;
  // The 63-octet limit is on the A-label; a U-label's octet count does not tell it.
  return !ascii || label.size() <= 63;
}

bool is_ipv4(std::string_view s) {
  int parts = 0;
  std::size_t i = 0;
  while (true) {
    std::size_t digits = 0;
    unsigned value = 0;
    while (i < s.size() && is_digit(static_cast<unsigned char>(s[i])) && digits < 4) {
      value = value * 10 + static_cast<unsigned>(s[i] - '0');
      ++digits;
      ++i;
    }
    if (digits == 0 || digits > 3 || value > 255) return false;
    ++parts;
    if (i == s.size()) return parts == 4;
    if (s[i] != '.' || parts == 4) return false;
    ++i;
  }
}

// Colon-separated 1-4 hex digit groups; an IPv4 tail counts as two groups.
bool ipv6_groups(std::string_view s, bool allow_v4_tail, int& count) {
  count = 0;
  if (s.empty()) return true;
  std::size_t start = 0;
  while (true) {
    const std::size_t colon = s.find(':', start);
    const std::string_view piece =
        s.substr(start, colon == std::string_view::npos ? std::string_view::npos : colon - start);
    if (colon == std::string_view::npos && allow_v4_tail &&
        piece.find('.') != std::string_view::npos) {
      if (!is_ipv4(piece)) return false;
      count += 2;
      return true;
    }
    if (piece.empty() || piece.size() > 4) return false;
    for (char c : piece) {
      if (!is_hex(static_cast<unsigned char>(c))) return false;
    }
    ++count;
    if (colon == std::string_view::npos) return true;
    start = colon + 1;
  }
}

// RFC 5321 IPv6-addr; "::" may stand for one or more zero groups (RFC 4291).
bool is_ipv6(std::string_view s) {
  const std::size_t dc = s.find("::");
  int left = 0;
  int right = 0;
  if (dc == std::string_view::npos) return ipv6_groups(s, true, left) && left == 8;
  if (s.find("::", dc + 1) != std::string_view::npos) return false;
  return ipv6_groups(s.substr(0, dc), false, left) && ipv6_groups(s.substr(dc + 2), true, right) &&
         left + right <= 7;
}

}  // namespace

std::string_view to_string(address_error e) {
  switch (e) {
    case address_error::empty:
      return "empty address";
    case address_error::too_long:
      return "path too long";
    case address_error::local_part_too_long:
      return "local part too long";
    case address_error::bad_local_part:
      return "bad local part";
    case address_error::missing_domain:
      return "missing domain";
    case address_error::domain_too_long:
      return "domain too long";
    case address_error::bad_domain:
      return "bad domain";
    case address_error::bad_address_literal:
      return "bad address literal";
    case address_error::non_ascii:
      return "non-ASCII address without SMTPUTF8";
    case address_error::bad_utf8:
      return "malformed UTF-8";
  }
  return "bad address";
}

bool is_ascii(std::string_view s) {
  for (char c : s) {
    if (static_cast<unsigned char>(c) >= 0x80) return false;
  }
  return true;
}

bool is_valid_utf8(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    std::size_t len = 0;
    std::uint32_t cp = 0;
    if (c >= 0xc2 && c <= 0xdf) {
      len = 2;
      cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
      len = 3;
      cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
      len = 4;
      cp = c & 0x07;
    } else {
      return false;  // continuation byte, overlong lead (C0/C1) or beyond F4
    }
    if (s.size() - i < len) return false;
    for (std::size_t k = 1; k < len; ++k) {
      const auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3f);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000)) return false;  // overlong
    if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
    i += len;
  }
  return true;
}

bool is_valid_domain(std::string_view domain, bool utf8_allowed) {
  if (domain.empty() || domain.size() > max_domain_length) return false;
  if (!is_ascii(domain) && (!utf8_allowed || !is_valid_utf8(domain))) return false;
  std::size_t start = 0;
  while (true) {
    const std::size_t dot = domain.find('.', start);
    const std::string_view label =
        domain.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start);
    if (!check_label(label, utf8_allowed)) return false;
    if (dot == std::string_view::npos) return true;
    start = dot + 1;
  }
}

bool is_valid_address_literal(std::string_view literal) {
  if (literal.size() < 3 || literal.front() != '[' || literal.back() != ']') return false;
  const std::string_view inner = literal.substr(1, literal.size() - 2);
  if (text::istarts_with(inner, "IPv6:")) return is_ipv6(inner.substr(5));
  return is_ipv4(inner);
}

std::expected<void, address_error> check_mailbox(std::string_view mailbox, bool utf8_allowed) {
  if (mailbox.empty()) return std::unexpected(address_error::empty);
  if (mailbox.size() > max_path_length - 2) return std::unexpected(address_error::too_long);
  if (!is_ascii(mailbox)) {
    if (!utf8_allowed) return std::unexpected(address_error::non_ascii);
    if (!is_valid_utf8(mailbox)) return std::unexpected(address_error::bad_utf8);
  }

  std::size_t local_length = 0;
  if (mailbox.front() == '"') {
    local_length = quoted_string_length(mailbox, utf8_allowed);
    if (local_length == 0) return std::unexpected(address_error::bad_local_part);
  } else {
    local_length = mailbox.find('@');
    if (local_length == std::string_view::npos) local_length = mailbox.size();
    if (!check_dot_string(mailbox.substr(0, local_length), utf8_allowed)) {
      return std::unexpected(address_error::bad_local_part);
    }
  }
  if (local_length > max_local_part_length) {
    return std::unexpected(address_error::local_part_too_long);
  }
  if (local_length == mailbox.size()) return std::unexpected(address_error::missing_domain);
  if (mailbox[local_length] != '@') return std::unexpected(address_error::bad_local_part);

  const std::string_view domain = mailbox.substr(local_length + 1);
  if (domain.empty()) return std::unexpected(address_error::missing_domain);
  if (domain.size() > max_domain_length) return std::unexpected(address_error::domain_too_long);
  if (domain.front() == '[') {
    if (!is_valid_address_literal(domain)) {
      return std::unexpected(address_error::bad_address_literal);
    }
    return {};
  }
  if (!is_valid_domain(domain, utf8_allowed)) return std::unexpected(address_error::bad_domain);
  return {};
}

}  // namespace smtp
