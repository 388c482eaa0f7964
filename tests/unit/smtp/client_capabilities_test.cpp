// smtp/client_capabilities: the EHLO reply read on its own: every keyword relayd
// knows, any case, the old "AUTH=" form, the first line (the server's name) never
// taken for a keyword, and SIZE arguments that are not a usable limit.
#include "smtp/client_capabilities.hpp"

#include <gtest/gtest.h>

#include <string>
#include <utility>

namespace smtp {
namespace {

server_capabilities parse(std::string text) {
  return parse_capabilities(reply{250, "", std::move(text)});
}

// Each extension line alone sets its own flag and no other.
TEST(client_capabilities, each_keyword_sets_its_flag) {
  using flag = bool server_capabilities::*;
  const std::pair<const char*, flag> table[] = {
      {"PIPELINING", &server_capabilities::pipelining},
      {"size 1000", &server_capabilities::size},
      {"8bitmime", &server_capabilities::eight_bit_mime},
      {"SMTPUTF8", &server_capabilities::smtputf8},
      {"StartTLS", &server_capabilities::starttls},
      {"ENHANCEDSTATUSCODES", &server_capabilities::enhanced_status_codes},
      {"CHUNKING", &server_capabilities::chunking},
      {"AUTH CRAM-MD5 plain", &server_capabilities::auth_plain},
      {"AUTH=LOGIN", &server_capabilities::auth_login},
  };
  for (const auto& [line, set] : table) {
    const server_capabilities caps = parse(std::string("mx.example Hello\n") + line);
    EXPECT_TRUE(caps.esmtp) << line;
    for (const auto& [other, other_flag] : table) {
      if (other_flag != set) EXPECT_FALSE(caps.*other_flag) << line << " set " << other;
    }
    EXPECT_TRUE(caps.*set) << line;
  }
  EXPECT_EQ(parse("mx\nX-UNKNOWN stuff\nSIZE 52428800").max_size, 52428800u);
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
