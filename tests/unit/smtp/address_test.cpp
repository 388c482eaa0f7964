// smtp address syntax (RFC 5321 Mailbox, RFC 6531 UTF-8): what is accepted, what
// is refused and why, and the length limits.
#include "smtp/address.hpp"

#include <gtest/gtest.h>

#include <string>

namespace smtp {
namespace {

std::optional<address_error> error_of(std::string_view mailbox, bool utf8 = false) {
  const auto r = check_mailbox(mailbox, utf8);
  if (r) return std::nullopt;
  return r.error();
}

TEST(address, accepts_ordinary_mailboxes) {
  for (const char* ok :
       {"user@example.org", "first.last@sub.example.co.uk", "a@b", "user+tag@example.org",
        "o'brien@example.ie", "x!#$%&'*+-/=?^_`{|}~@d.e", "postmaster@localhost",
        "u@xn--bcher-kva.example", "u@a-b.c1", "u@123.example"}) {
    EXPECT_EQ(error_of(ok), std::nullopt) << ok;
  }
}

TEST(address, accepts_quoted_local_parts) {
  EXPECT_EQ(error_of(R"("john doe"@example.org)"), std::nullopt);
  EXPECT_EQ(error_of(R"("a@b"@example.org)"), std::nullopt);
  EXPECT_EQ(error_of(R"("quote\"inside"@example.org)"), std::nullopt);
  EXPECT_EQ(error_of(R"(""@example.org)"), std::nullopt);
}

TEST(address, accepts_address_literals) {
  for (const char* ok : {"u@[192.0.2.1]", "u@[255.255.255.255]", "u@[IPv6:2001:db8::1]",
                         "u@[IPv6:::1]", "u@[ipv6:1:2:3:4:5:6:7:8]", "u@[IPv6:::ffff:192.0.2.1]",
                         "u@[IPv6:1:2:3:4:5:6:1.2.3.4]", "u@[IPv6:fe80::]", "u@[IPv6:::]"}) {
    EXPECT_EQ(error_of(ok), std::nullopt) << ok;
  }
}

TEST(address, refuses_bad_address_literals) {
  for (const char* bad :
       {"u@[256.0.0.1]", "u@[1.2.3]", "u@[1.2.3.4.5]", "u@[1..2.3]", "u@[IPv6:1:2:3:4:5:6:7]",
        "u@[IPv6:1:2:3:4:5:6:7:8:9]", "u@[IPv6:1::2::3]", "u@[IPv6:12345::1]", "u@[IPv6:g::1]",
        "u@[IPv6:1:2:3:4:5:6:7::8]", "u@[tag:content]", "u@[]", "u@[1.2.3.4", "u@[0001.2.3.4]",
        "u@[IPv6:1:::2]"}) {
    EXPECT_EQ(error_of(bad), address_error::bad_address_literal) << bad;
  }
}

TEST(address, refuses_bad_local_parts) {
  for (const char* bad :
       {".user@example.org", "user.@example.org", "us..er@example.org", "us er@example.org",
        "us(er@example.org", "us\\er@example.org", R"("unterminated@example.org)",
        R"("a"b@example.org)", "@example.org", "us,er@example.org"}) {
    EXPECT_EQ(error_of(bad), address_error::bad_local_part) << bad;
  }
}

TEST(address, refuses_bad_domains) {
  for (const char* bad : {"u@-example.org", "u@example-.org", "u@exa_mple.org", "u@example..org",
                          "u@.example.org", "u@example.org.", "u@exa mple.org"}) {
    EXPECT_EQ(error_of(bad), address_error::bad_domain) << bad;
  }
  EXPECT_EQ(error_of("user"), address_error::missing_domain);
  EXPECT_EQ(error_of("user@"), address_error::missing_domain);
  EXPECT_EQ(error_of("a@b@c"), address_error::bad_domain);
  EXPECT_EQ(error_of(""), address_error::empty);
  EXPECT_EQ(error_of("u@" + std::string(64, 'a') + ".org"), address_error::bad_domain);
  EXPECT_EQ(error_of("u@" + std::string(63, 'a') + ".org"), std::nullopt);
}

TEST(address, length_limits) {
  EXPECT_EQ(error_of(std::string(64, 'l') + "@example.org"), std::nullopt);
  EXPECT_EQ(error_of(std::string(65, 'l') + "@example.org"), address_error::local_part_too_long);
  std::string domain;
  for (int i = 0; i < 9; ++i) domain += std::string(20, 'd') + ".";
  domain += "org";  // 192 octets
  // 254 octets is the longest mailbox that fits a 256-octet path with its <>.
  const std::string local_254 = std::string(254 - 1 - domain.size(), 'l');
  ASSERT_LE(local_254.size(), 64u);
  EXPECT_EQ(error_of(local_254 + "@" + domain), std::nullopt);
  EXPECT_EQ(error_of(local_254 + "l@" + domain), address_error::too_long);
}

TEST(address, utf8_only_with_smtputf8) {
  const std::string utf8_local = "j\xc3\xb6rg@example.org";  // jörg
  const std::string utf8_domain =
      "u@b\xc3\xbc"
      "cher.example";  // bücher
  EXPECT_EQ(error_of(utf8_local), address_error::non_ascii);
  EXPECT_EQ(error_of(utf8_domain), address_error::non_ascii);
  EXPECT_EQ(error_of(utf8_local, true), std::nullopt);
  EXPECT_EQ(error_of(utf8_domain, true), std::nullopt);
  EXPECT_EQ(error_of("\"\xe2\x82\xac uro\"@example.org", true), std::nullopt);
}

TEST(address, malformed_utf8_is_refused_even_with_smtputf8) {
  for (const std::string& bad : {
           std::string("j\xc3@example.org"),              // truncated sequence
           std::string("j\xc0\xaf@example.org"),          // overlong '/'
           std::string("j\xe0\x80\xaf@example.org"),      // overlong 3-byte
           std::string("j\xed\xa0\x80@example.org"),      // surrogate
           std::string("j\xf4\x90\x80\x80@example.org"),  // above U+10FFFF
           std::string("j\x80@example.org"),              // lone continuation
           std::string("j\xff@example.org"),
       }) {
    EXPECT_EQ(error_of(bad, true), address_error::bad_utf8);
  }
}

TEST(address, utf8_validation) {
  EXPECT_TRUE(is_valid_utf8(""));
  EXPECT_TRUE(is_valid_utf8("plain"));
  EXPECT_TRUE(is_valid_utf8("\xe2\x82\xac\xf0\x9f\x93\xa7"));  // euro sign, envelope emoji
  EXPECT_TRUE(is_valid_utf8("\xf4\x8f\xbf\xbf"));              // U+10FFFF
  EXPECT_FALSE(is_valid_utf8("\xe2\x82"));
  EXPECT_FALSE(is_valid_utf8("\xf8\x88\x80\x80\x80"));
  EXPECT_TRUE(is_ascii("abc"));
  EXPECT_FALSE(is_ascii("\xc3\xa9"));
}

TEST(address, domains_and_literals) {
  EXPECT_TRUE(is_valid_domain("example.org", false));
  EXPECT_FALSE(is_valid_domain("", false));
  EXPECT_FALSE(is_valid_domain(std::string(256, 'a'), false));
  EXPECT_TRUE(is_valid_address_literal("[127.0.0.1]"));
  EXPECT_FALSE(is_valid_address_literal("127.0.0.1"));
  EXPECT_EQ(to_string(address_error::bad_domain), "bad domain");
}

}  // namespace
}  // namespace smtp
