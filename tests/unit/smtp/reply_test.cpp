// smtp::reply wire and log forms, and the codes of the named replies in
// smtp/replies.hpp (what clients and operators actually see).
#include "smtp/reply.hpp"

#include <gtest/gtest.h>

#include "smtp/replies.hpp"

namespace smtp {
namespace {

TEST(reply, single_line_with_enhanced_code) {
  EXPECT_EQ((reply{250, "2.1.0", "Ok"}.encode()), "250 2.1.0 Ok\r\n");
}

TEST(reply, single_line_without_enhanced_code) {
  EXPECT_EQ((reply{220, "", "mx.test ESMTP relayd"}.encode()), "220 mx.test ESMTP relayd\r\n");
}

TEST(reply, empty_text) {
  EXPECT_EQ((reply{250, "", ""}.encode()), "250\r\n");
  EXPECT_EQ((reply{250, "2.0.0", ""}.encode()), "250 2.0.0\r\n");
}

TEST(reply, multi_line_uses_dash_continuations) {
  EXPECT_EQ((reply{250, "", "mx.test\nPIPELINING\nSMTPUTF8"}.encode()),
            "250-mx.test\r\n250-PIPELINING\r\n250 SMTPUTF8\r\n");
}

TEST(reply, multi_line_repeats_enhanced_code_on_every_line) {
  EXPECT_EQ((reply{214, "2.0.0", "first\nsecond"}.encode()),
            "214-2.0.0 first\r\n214 2.0.0 second\r\n");
}

TEST(reply, trailing_newline_does_not_add_an_empty_line) {
  EXPECT_EQ((reply{250, "2.0.0", "a\n"}.encode()), "250 2.0.0 a\r\n");
}

TEST(reply, control_characters_cannot_end_the_reply_early) {
  EXPECT_EQ((reply{550, "5.0.0", std::string("a\rb\0c", 5)}.encode()), "550 5.0.0 a b c\r\n");
  EXPECT_EQ((reply{550, "5.0.0", std::string("a\r\n250 ok", 9)}.encode()),
            "550-5.0.0 a \r\n550 5.0.0 250 ok\r\n");
}

TEST(reply, to_string_joins_continuations) {
  EXPECT_EQ((reply{554, "5.7.1", "Relay access denied"}.to_string()),
            "554 5.7.1 Relay access denied");
  EXPECT_EQ((reply{250, "", "mx.test\nPIPELINING"}.to_string()), "250 mx.test; PIPELINING");
  EXPECT_EQ((reply{250, "", ""}.to_string()), "250");
}

TEST(reply, classification) {
  EXPECT_TRUE((reply{250, "", ""}.positive()));
  EXPECT_TRUE((reply{354, "", ""}.positive()));
  EXPECT_TRUE((reply{452, "4.3.1", ""}.transient()));
  EXPECT_FALSE((reply{452, "4.3.1", ""}.permanent()));
  EXPECT_TRUE((reply{554, "5.7.1", ""}.permanent()));
  EXPECT_FALSE((reply{554, "5.7.1", ""}.positive()));
}

TEST(replies, wire_forms_of_the_named_replies) {
  const std::pair<reply, std::string> cases[] = {
      {replies::greeting("mx.test"), "220 mx.test ESMTP relayd\r\n"},
      {replies::helo("mx.test"), "250 mx.test\r\n"},
      {replies::closing(), "221 2.0.0 Bye\r\n"},
      {replies::ok(), "250 2.0.0 Ok\r\n"},
      {replies::sender_ok(), "250 2.1.0 Ok\r\n"},
      {replies::recipient_ok(), "250 2.1.5 Ok\r\n"},
      {replies::start_data(), "354 End data with <CR><LF>.<CR><LF>\r\n"},
      {replies::queued("0123ABCD"), "250 2.0.0 Ok: queued as 0123ABCD\r\n"},
      {replies::bad_sequence(), "503 5.5.1 Bad sequence of commands\r\n"},
      {replies::line_too_long(), "500 5.5.2 Line too long\r\n"},
      {replies::relay_denied(), "554 5.7.1 Relay access denied\r\n"},
      {replies::too_many_recipients(), "452 4.5.3 Too many recipients\r\n"},
      {replies::message_too_big(), "552 5.3.4 Message size exceeds fixed limit\r\n"},
      {replies::bad_sender_syntax(), "501 5.1.7 Bad sender address syntax\r\n"},
      {replies::bad_recipient_syntax(), "501 5.1.3 Bad recipient address syntax\r\n"},
      {replies::unknown_parameter(), "555 5.5.4 Unsupported parameter\r\n"},
      {replies::spool_full(), "452 4.3.1 Insufficient system storage\r\n"},
      {replies::shutting_down(), "421 4.3.2 Service shutting down\r\n"},
      {replies::too_many_connections(), "421 4.7.0 Too many connections, try again later\r\n"},
      {replies::too_many_connections_from_client(),
       "421 4.7.0 Too many connections from you, slow down\r\n"},
      {replies::bare_cr_or_lf_in_data(),
       "550 5.6.0 Bare CR or LF in message; lines must end with CRLF\r\n"},
  };
  for (const auto& [r, wire] : cases) EXPECT_EQ(r.encode(), wire);
}

TEST(replies, codes_of_the_error_replies) {
  EXPECT_EQ(replies::bare_lf().code, 500);
  EXPECT_EQ(replies::bare_lf().enhanced, "5.5.2");
  EXPECT_EQ(replies::idle_timeout().code, 421);
  EXPECT_EQ(replies::idle_timeout().enhanced, "4.4.2");
  EXPECT_EQ(replies::too_many_connections_from_client().enhanced, "4.7.0");
  EXPECT_EQ(replies::too_many_errors().code, 421);
  EXPECT_EQ(replies::not_implemented().code, 502);
  EXPECT_EQ(replies::unknown_command().code, 500);
  EXPECT_EQ(replies::no_valid_recipients().code, 554);
  EXPECT_EQ(replies::needs_smtputf8().code, 553);
  EXPECT_EQ(replies::cannot_vrfy().code, 252);
  EXPECT_EQ(replies::help().code, 214);
  EXPECT_EQ(replies::local_error().code, 451);
  EXPECT_EQ(replies::message_line_too_long(1000).encode(),
            "500 5.5.2 Line too long in message; text lines are limited to 1000 octets\r\n");
}

TEST(replies, ehlo_advertises_the_extensions_without_enhanced_codes) {
  EXPECT_EQ(replies::ehlo("mx.test", 1024).encode(),
            "250-mx.test\r\n250-PIPELINING\r\n250-SIZE 1024\r\n250-8BITMIME\r\n"
            "250-ENHANCEDSTATUSCODES\r\n250-SMTPUTF8\r\n250-CHUNKING\r\n250 DSN\r\n");
}

}  // namespace
}  // namespace smtp
