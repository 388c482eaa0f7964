// Name normalisation, IP and domain-literal recognition, DNS server syntax.
#include "dns/names.hpp"

#include <gtest/gtest.h>

using namespace dns::detail;

TEST(names, normalize_lowercases_and_strips_trailing_dot) {
  EXPECT_EQ(normalize_name("Example.ORG."), "example.org");
  EXPECT_EQ(normalize_name("mx_1.example-test.org"), "mx_1.example-test.org");
  EXPECT_EQ(normalize_name("localhost"), "localhost");
}

TEST(names, normalize_rejects_malformed) {
  for (const char* bad :
       {"", ".", "..", "a..", "0..", "a..b", ".a", "a b", "exa\x01mple.org", "caf\xc3\xa9.fr", "a/b",
        "[192.0.2.1]"})
    EXPECT_FALSE(normalize_name(bad)) << bad;
  EXPECT_FALSE(normalize_name(std::string(64, 'a') + ".org"));
  EXPECT_TRUE(normalize_name(std::string(63, 'a') + ".org"));
  std::string long_name;
  while (long_name.size() < 254) long_name += "abcdefghi.";
  EXPECT_FALSE(normalize_name(long_name + "org"));
}

TEST(names, parse_ip) {
  EXPECT_EQ(parse_ip("192.0.2.1"), "192.0.2.1");
  EXPECT_EQ(parse_ip("2001:DB8:0::1"), "2001:db8::1");
  EXPECT_FALSE(parse_ip("192.0.2"));
  EXPECT_FALSE(parse_ip("example.org"));
  EXPECT_FALSE(parse_ip(""));
  // A DNS name may hold a NUL byte; inet_pton would stop at it.
  using namespace std::string_view_literals;
  EXPECT_FALSE(parse_ip("192.0.2.1\0junk"sv));
  EXPECT_FALSE(parse_domain_literal("[192.0.2.1\0x]"sv).valid);
}

TEST(names, domain_literals) {
  auto v4 = parse_domain_literal("[192.0.2.1]");
  EXPECT_TRUE(v4.is_literal && v4.valid);
  EXPECT_EQ(v4.address, "192.0.2.1");
  auto v6 = parse_domain_literal("[IPv6:2001:DB8::1]");
  EXPECT_TRUE(v6.valid);
  EXPECT_EQ(v6.address, "2001:db8::1");
  EXPECT_TRUE(parse_domain_literal("[ipv6:::1]").valid);
  for (const char* bad :
       {"[300.1.1.1]", "[2001:db8::1]", "[IPv6:192.0.2.1]", "[]", "[192.0.2.1", "[x:y]"}) {
    auto l = parse_domain_literal(bad);
    EXPECT_TRUE(l.is_literal) << bad;
    EXPECT_FALSE(l.valid) << bad;
  }
  EXPECT_FALSE(parse_domain_literal("example.org").is_literal);
}

TEST(names, server_entries) {
  EXPECT_EQ(server_csv_entry("127.0.0.1:5353"), "127.0.0.1:5353");
  EXPECT_EQ(server_csv_entry("127.0.0.1"), "127.0.0.1:53");
  EXPECT_EQ(server_csv_entry("[::1]:53"), "[::1]:53");
  EXPECT_EQ(server_csv_entry("[::1]"), "[::1]:53");
  EXPECT_EQ(server_csv_entry("::1"), "[::1]:53");
  EXPECT_EQ(server_csv_entry("[2001:DB8::53]:5353"), "[2001:db8::53]:5353");
  for (const char* bad : {"", "localhost", "127.0.0.1:", "127.0.0.1:0", "127.0.0.1:65536",
                          "127.0.0.1:x", "[::1]53", "[::1", "1.2.3.4.5", "[::1]:"})
    EXPECT_FALSE(server_csv_entry(bad)) << bad;
}
