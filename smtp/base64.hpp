// RFC 4648 section 4 base64 for SMTP AUTH (RFC 4954): the client encodes its
// credentials, the server decodes the responses. Encoding always pads; decoding
// is strict (padding required, no whitespace, no line breaks) and returns nullopt
// for any input that is not base64. Pure functions; nothing else can fail.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace smtp::base64 {

// `in` encoded with the standard alphabet and "=" padding.
std::string encode(std::string_view in);

// The octets `in` encodes; nullopt when its length is not a multiple of 4, a
// character is outside the alphabet, or "=" appears anywhere but at the end of
// the last quantum. Unused bits in the last quantum are ignored, not checked.
std::optional<std::string> decode(std::string_view in);

}  // namespace smtp::base64
