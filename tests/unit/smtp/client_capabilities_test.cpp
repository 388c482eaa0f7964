// smtp/client_capabilities: the EHLO reply read on its own: every keyword relayd
// knows, any case, the old "AUTH=" form, the first line (the server's name) never
// taken for a keyword, and SIZE arguments that are not a usable limit.
#include "smtp/client_capabilities.hpp"

#include <gtest/gtest.h>

namespace smtp {
namespace {

server_capabilities parse(std::string text) {
  return parse_capabilities(reply{250, "", std::move(text)});
}

TEST(client_capabilities, every_known_keyword) {
  const server_capabilities caps = parse(
      "mx.example Hello\npipelining\nSIZE 52428800\n8BITMIME\nAUTH=LOGIN\n"
      "AUTH CRAM-MD5 plain\nENHANCEDSTATUSCODES\nChunking\nSTARTTLS\nX-UNKNOWN stuff\nSMTPUTF8");
  EXPECT_TRUE(caps.esmtp);
  EXPECT_TRUE(caps.pipelining);
  EXPECT_TRUE(caps.size);
  EXPECT_EQ(caps.max_size, 52428800u);
  EXPECT_TRUE(caps.eight_bit_mime);
  EXPECT_TRUE(caps.auth_login);
  EXPECT_TRUE(caps.auth_plain);
  EXPECT_TRUE(caps.enhanced_status_codes);
  EXPECT_TRUE(caps.chunking);
  EXPECT_TRUE(caps.starttls);
  EXPECT_TRUE(caps.smtputf8);
}

TEST(client_capabilities, the_first_line_is_the_server_name) {
  const server_capabilities caps = parse("PIPELINING\nSTARTTLS");
  EXPECT_TRUE(caps.esmtp);
  EXPECT_FALSE(caps.pipelining);
  EXPECT_TRUE(caps.starttls);
}

TEST(client_capabilities, a_one_line_reply_offers_nothing) {
  const server_capabilities caps = parse("mx.example");
  EXPECT_TRUE(caps.esmtp);
  EXPECT_FALSE(caps.pipelining);
  EXPECT_FALSE(caps.size);
  EXPECT_FALSE(caps.auth_plain);
  EXPECT_FALSE(caps.auth_login);
}

TEST(client_capabilities, blanks_and_carriage_returns_around_lines_are_ignored) {
  const server_capabilities caps = parse("mx\r\n  SIZE   1000 \t\r\nAUTH  LOGIN   PLAIN \r");
  EXPECT_TRUE(caps.size);
  EXPECT_EQ(caps.max_size, 1000u);
  EXPECT_TRUE(caps.auth_login);
  EXPECT_TRUE(caps.auth_plain);
}

TEST(client_capabilities, size_without_a_usable_limit) {
  for (const char* text :
       {"mx\nSIZE", "mx\nSIZE x", "mx\nSIZE -1", "mx\nSIZE 12345678901234567890"}) {
    const server_capabilities caps = parse(text);
    EXPECT_TRUE(caps.size) << text;
    EXPECT_EQ(caps.max_size, 0u) << text;
  }
  EXPECT_EQ(parse("mx\nSIZE 9999999999999999999").max_size, 9999999999999999999u);
}

TEST(client_capabilities, mechanism_names_are_whole_words) {
  const server_capabilities caps = parse("mx\nAUTH PLAINX XLOGIN CRAM-MD5");
  EXPECT_FALSE(caps.auth_plain);
  EXPECT_FALSE(caps.auth_login);
}

}  // namespace
}  // namespace smtp
