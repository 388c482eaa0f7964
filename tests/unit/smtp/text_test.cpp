// smtp/text.hpp: the ASCII helpers the protocol, the daemon and the CLI share:
// case folding touches only A-Z, comparisons ignore ASCII case only, trim removes
// spaces and tabs only, and parse_decimal refuses anything but digits within limit.
#include "smtp/text.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <string>

namespace smtp::text {
namespace {

TEST(text, lower_folds_only_ascii_capitals) {
  EXPECT_EQ(lower('A'), 'a');
  EXPECT_EQ(lower('Z'), 'z');
  EXPECT_EQ(lower('a'), 'a');
  EXPECT_EQ(lower('@'), '@');  // just before 'A'
  EXPECT_EQ(lower('['), '[');  // just after 'Z'
  EXPECT_EQ(lower('\xc3'), '\xc3');
  EXPECT_EQ(lower(std::string("MAIL From:<X@Example.ORG>")), "mail from:<x@example.org>");
  EXPECT_EQ(lower(std::string()), "");
}

TEST(text, iequals_ignores_ascii_case_only) {
  EXPECT_TRUE(iequals("EHLO", "ehlo"));
  EXPECT_TRUE(iequals("StartTLS", "STARTTLS"));
  EXPECT_TRUE(iequals("", ""));
  EXPECT_FALSE(iequals("EHLO", "EHL"));
  EXPECT_FALSE(iequals("EHLO", "HELO"));
  EXPECT_FALSE(iequals("@", "`"));  // 0x40 and 0x60 differ by the case bit but are not letters
  EXPECT_FALSE(iequals("\xc3\x89", "\xc3\xa9"));  // UTF-8 E/e acute: not ASCII
  static_assert(iequals("Size", "SIZE"));
}

TEST(text, istarts_with) {
  EXPECT_TRUE(istarts_with("from:<a@b>", "FROM:"));
  EXPECT_TRUE(istarts_with("IPv6:::1", "ipv6:"));
  EXPECT_TRUE(istarts_with("x", ""));
  EXPECT_TRUE(istarts_with("TO:", "to:"));
  EXPECT_FALSE(istarts_with("TO", "to:"));
  EXPECT_FALSE(istarts_with("", "a"));
  EXPECT_FALSE(istarts_with("FRO:", "FROM:"));
}

TEST(text, trim_removes_spaces_and_tabs_only) {
  EXPECT_EQ(trim("  a b \t"), "a b");
  EXPECT_EQ(trim("\t\t"), "");
  EXPECT_EQ(trim(""), "");
  EXPECT_EQ(trim("a"), "a");
  EXPECT_EQ(trim("\r\na\r\n"), "\r\na\r\n");
  EXPECT_TRUE(is_blank(' '));
  EXPECT_TRUE(is_blank('\t'));
  EXPECT_FALSE(is_blank('\n'));
}

TEST(text, is_digit) {
  for (char c = '0'; c <= '9'; ++c) EXPECT_TRUE(is_digit(c)) << c;
  EXPECT_FALSE(is_digit('/'));
  EXPECT_FALSE(is_digit(':'));
  EXPECT_FALSE(is_digit('a'));
  EXPECT_FALSE(is_digit('\xb2'));  // superscript two in Latin-1
}

TEST(text, parse_decimal_accepts_digits_up_to_the_limit) {
  EXPECT_EQ(parse_decimal("0"), 0u);
  EXPECT_EQ(parse_decimal("007"), 7u);
  EXPECT_EQ(parse_decimal("52428800"), 52428800u);
  EXPECT_EQ(parse_decimal("18446744073709551615"), UINT64_MAX);
  EXPECT_EQ(parse_decimal("100", 100), 100u);
  EXPECT_EQ(parse_decimal("65535", 65535), 65535u);
}

TEST(text, parse_decimal_refuses_the_rest) {
  EXPECT_FALSE(parse_decimal(""));
  EXPECT_FALSE(parse_decimal(" 1"));
  EXPECT_FALSE(parse_decimal("1 "));
  EXPECT_FALSE(parse_decimal("+1"));
  EXPECT_FALSE(parse_decimal("-1"));
  EXPECT_FALSE(parse_decimal("1.0"));
  EXPECT_FALSE(parse_decimal("0x10"));
  EXPECT_FALSE(parse_decimal("18446744073709551616"));  // UINT64_MAX + 1
  EXPECT_FALSE(parse_decimal("99999999999999999999"));
  EXPECT_FALSE(parse_decimal("101", 100));
  EXPECT_FALSE(parse_decimal("65536", 65535));
  EXPECT_FALSE(parse_decimal("1000", 999));
}

}  // namespace
}  // namespace smtp::text
