// Implements xtext.hpp: one pass each way, no allocation beyond the result.
#include "smtp/xtext.hpp"

namespace smtp::xtext {
namespace {

constexpr char hex_digits[] = "0123456789ABCDEF";

// An octet that stands for itself in xtext (xchar).
bool is_xchar(unsigned char c) {
  return c >= 33 && c <= 126 && c != '+' && c != '=';
}

// The value of an upper-case hex digit, or -1.
int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

std::optional<std::string> decode(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c == '+') {
      if (text.size() - i < 3) return std::nullopt;
      const int hi = hex_value(text[i + 1]);
      const int lo = hex_value(text[i + 2]);
      if (hi < 0 || lo < 0) return std::nullopt;
      out += static_cast<char>(hi * 16 + lo);
      i += 2;
    } else if (is_xchar(c)) {
      out += static_cast<char>(c);
    } else {
      return std::nullopt;
    }
  }
  return out;
}

std::string encode(std::string_view raw) {
  std::string out;
  out.reserve(raw.size());
  for (char ch : raw) {
    const auto c = static_cast<unsigned char>(ch);
    if (is_xchar(c)) {
      out += ch;
    } else {
      out += '+';
      out += hex_digits[c >> 4];
      out += hex_digits[c & 0xF];
    }
  }
  return out;
}

}  // namespace smtp::xtext
