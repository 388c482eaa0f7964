// xtext (RFC 3461 4): the encoding of the DSN parameters ENVID and ORCPT. Octets
// 33-126 other than "+" and "=" stand for themselves; any other octet is "+HH"
// with two upper-case hex digits. decode() is strict: a "+" without two
// upper-case hex digits, or an octet outside 33-126 or "=", makes it fail (the
// caller answers 501 5.5.4). encode() always succeeds, and decode(encode(s)) == s.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace smtp::xtext {

std::optional<std::string> decode(std::string_view text);
std::string encode(std::string_view raw);

}  // namespace smtp::xtext
