// ASCII text helpers shared by the protocol code, the daemon and the CLI:
// case-insensitive comparison, lower-casing, blank trimming and strict decimal
// parsing. SMTP keywords, domains and config words are ASCII, so nothing here
// depends on the locale. Pure functions; nothing can fail but a parse, which
// returns nullopt.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace smtp::text {

constexpr char lower(char c) {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

inline std::string lower(std::string s) {
  for (char& c : s) c = lower(c);
  return s;
}

constexpr bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}

constexpr bool istarts_with(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && iequals(s.substr(0, prefix.size()), prefix);
}

constexpr bool is_blank(char c) {
  return c == ' ' || c == '\t';
}

constexpr bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

// Leading and trailing spaces and tabs removed.
constexpr std::string_view trim(std::string_view s) {
  while (!s.empty() && is_blank(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_blank(s.back())) s.remove_suffix(1);
  return s;
}

// Decimal digits only (no sign, no blanks) to a number no greater than `limit`;
// nullopt for an empty string, any other character, or a value above `limit`.
constexpr std::optional<std::uint64_t> parse_decimal(std::string_view s,
                                                     std::uint64_t limit = UINT64_MAX) {
  if (s.empty()) return std::nullopt;
  std::uint64_t v = 0;
  for (char c : s) {
    if (!is_digit(c)) return std::nullopt;
    const auto d = static_cast<std::uint64_t>(c - '0');
    if (v > (limit - d) / 10) return std::nullopt;
    v = v * 10 + d;
  }
  if (v > limit) return std::nullopt;
  return v;
}

}  // namespace smtp::text
