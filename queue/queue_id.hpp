// Queue IDs: 16 uppercase hex digits of a 64-bit value that grows with time
// (microseconds since the epoch << 4, or one more than the last one issued).
// In LMDB the value is stored as 8 big-endian bytes, so key order is ID order
// is arrival order. parse_id() refuses anything that is not 16 hex digits.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace queue {

inline std::string format_id(std::uint64_t v) {
  static constexpr char digits[] = "0123456789ABCDEF";
  std::string s(16, '0');
  for (int i = 15; i >= 0; --i, v >>= 4) s[static_cast<std::size_t>(i)] = digits[v & 0xf];
  return s;
}

// Accepts upper- or lower-case hex digits.
inline std::optional<std::uint64_t> parse_id(std::string_view s) {
  if (s.size() != 16) return std::nullopt;
  std::uint64_t v = 0;
  for (char c : s) {
    unsigned d = 0;
    if (c >= '0' && c <= '9') {
      d = static_cast<unsigned>(c - '0');
    } else if (c >= 'A' && c <= 'F') {
      d = static_cast<unsigned>(c - 'A' + 10);
    } else if (c >= 'a' && c <= 'f') {
      d = static_cast<unsigned>(c - 'a' + 10);
    } else {
      return std::nullopt;
    }
    v = (v << 4) | d;
  }
  return v;
}

using id_key = std::array<char, 8>;

inline id_key key_of(std::uint64_t v) {
  id_key k{};
  for (int i = 7; i >= 0; --i, v >>= 8)
    k[static_cast<std::size_t>(i)] = static_cast<char>(v & 0xff);
  return k;
}

inline std::string_view key_view(const id_key& k) {
  return {k.data(), k.size()};
}

inline std::optional<std::uint64_t> id_of_key(std::string_view k) {
  if (k.size() != 8) return std::nullopt;
  std::uint64_t v = 0;
  for (char c : k) v = (v << 8) | static_cast<unsigned char>(c);
  return v;
}

}  // namespace queue
