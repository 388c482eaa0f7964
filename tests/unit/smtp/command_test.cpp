// smtp::command: parsing of every verb and MAIL/RCPT argument, every parse error
// and the reply it maps to, and encode/parse round trips.
#include "smtp/command.hpp"

#include <gtest/gtest.h>

#include <string>

namespace smtp {
namespace {

command parse_ok(std::string_view line) {
  auto c = command::parse(line);
  EXPECT_TRUE(c.has_value()) << "line: " << line;
  return c.value_or(command{});
}

parse_error parse_fails(std::string_view line) {
  auto c = command::parse(line);
  EXPECT_FALSE(c.has_value()) << "line: " << line;
  return c ? parse_error::unknown_command : c.error();
}

TEST(command, verbs_are_case_insensitive) {
  EXPECT_EQ(parse_ok("ehlo client.example").what, verb::ehlo);
  EXPECT_EQ(parse_ok("Helo client.example").what, verb::helo);
  EXPECT_EQ(parse_ok("dAtA").what, verb::data);
  EXPECT_EQ(parse_ok("rset").what, verb::rset);
  EXPECT_EQ(parse_ok("noop").what, verb::noop);
  EXPECT_EQ(parse_ok("quit").what, verb::quit);
  EXPECT_EQ(parse_ok("help").what, verb::help);
  EXPECT_EQ(parse_ok("vrfy bob").what, verb::vrfy);
  EXPECT_EQ(parse_ok("starttls").what, verb::starttls);
  EXPECT_EQ(parse_ok("auth PLAIN").what, verb::auth);
  EXPECT_EQ(parse_ok("bdat 100 LAST").what, verb::bdat);
}

TEST(command, ehlo_keeps_the_client_name) {
  EXPECT_EQ(parse_ok("EHLO client.example").argument, "client.example");
  EXPECT_EQ(parse_ok("HELO [192.0.2.1]  ").argument, "[192.0.2.1]");
  EXPECT_EQ(parse_fails("EHLO"), parse_error::helo_syntax);
  EXPECT_EQ(parse_fails("HELO   "), parse_error::helo_syntax);
}

TEST(command, mail_with_path_and_parameters) {
  const command c = parse_ok("MAIL FROM:<alice@example.org> SIZE=1234 BODY=8BITMIME SMTPUTF8");
  EXPECT_EQ(c.what, verb::mail);
  EXPECT_EQ(c.path, "alice@example.org");
  EXPECT_EQ(c.size, 1234u);
  EXPECT_EQ(c.body, body_type::eight_bit_mime);
  EXPECT_TRUE(c.smtputf8);
}

TEST(command, mail_keywords_and_parameters_are_case_insensitive) {
  const command c = parse_ok("mail from:<a@b.c> size=7 body=7bit smtputf8");
  EXPECT_EQ(c.size, 7u);
  EXPECT_EQ(c.body, body_type::seven_bit);
  EXPECT_TRUE(c.smtputf8);
}

TEST(command, mail_without_parameters) {
  const command c = parse_ok("MAIL FROM:<a@b.c>");
  EXPECT_EQ(c.size, std::nullopt);
  EXPECT_EQ(c.body, std::nullopt);
  EXPECT_FALSE(c.smtputf8);
}

TEST(command, null_sender) {
  EXPECT_EQ(parse_ok("MAIL FROM:<>").path, "");
  EXPECT_EQ(parse_ok("MAIL FROM:<> SIZE=10").size, 10u);
}

TEST(command, space_after_colon_is_tolerated) {
  EXPECT_EQ(parse_ok("MAIL FROM: <a@b.c>").path, "a@b.c");
  EXPECT_EQ(parse_ok("RCPT TO:  <d@e.f>").path, "d@e.f");
}

TEST(command, source_routes_are_checked_and_dropped) {
  EXPECT_EQ(parse_ok("RCPT TO:<@relay.example,@other.example:user@dest.example>").path,
            "user@dest.example");
  EXPECT_EQ(parse_ok("MAIL FROM:<@relay.example:user@src.example>").path, "user@src.example");
  EXPECT_EQ(parse_fails("RCPT TO:<@relay.example user@dest.example>"), parse_error::bad_recipient);
  EXPECT_EQ(parse_fails("RCPT TO:<@bad_domain:user@dest.example>"), parse_error::bad_recipient);
  EXPECT_EQ(parse_fails("RCPT TO:<@a.example,:user@dest.example>"), parse_error::bad_recipient);
  EXPECT_EQ(parse_fails("RCPT TO:<@a.example:>"), parse_error::bad_recipient);
}

TEST(command, quoted_local_part_may_hold_angle_bracket) {
  EXPECT_EQ(parse_ok(R"(RCPT TO:<"odd>name"@example.org>)").path, R"("odd>name"@example.org)");
}

TEST(command, postmaster_without_domain_parses) {
  EXPECT_EQ(parse_ok("RCPT TO:<Postmaster>").path, "Postmaster");
  EXPECT_EQ(parse_fails("RCPT TO:<bob>"), parse_error::bad_recipient);
}

TEST(command, utf8_paths_parse_when_well_formed) {
  EXPECT_EQ(parse_ok("RCPT TO:<j\xc3\xb6rg@example.org>").path, "j\xc3\xb6rg@example.org");
  EXPECT_EQ(parse_fails("RCPT TO:<j\xc3@example.org>"), parse_error::bad_recipient);
}

TEST(command, mail_syntax_errors) {
  EXPECT_EQ(parse_fails("MAIL"), parse_error::mail_syntax);
  EXPECT_EQ(parse_fails("MAIL TO:<a@b.c>"), parse_error::mail_syntax);
  EXPECT_EQ(parse_fails("MAIL FROM a@b.c"), parse_error::mail_syntax);
  EXPECT_EQ(parse_fails("MAIL FROM:a@b.c"), parse_error::mail_syntax);
  EXPECT_EQ(parse_fails("MAIL FROM:<a@b.c"), parse_error::bad_sender);
  EXPECT_EQ(parse_fails("MAIL FROM:<a b@c.d>"), parse_error::bad_sender);
  EXPECT_EQ(parse_fails("MAIL FROM:<a@b.c>SIZE=1"), parse_error::bad_sender);
  EXPECT_EQ(parse_fails("MAIL FROM:<@:a@b.c>"), parse_error::bad_sender);
}

TEST(command, rcpt_syntax_errors) {
  EXPECT_EQ(parse_fails("RCPT"), parse_error::rcpt_syntax);
  EXPECT_EQ(parse_fails("RCPT FROM:<a@b.c>"), parse_error::rcpt_syntax);
  EXPECT_EQ(parse_fails("RCPT TO:a@b.c"), parse_error::rcpt_syntax);
  EXPECT_EQ(parse_fails("RCPT TO:<>"), parse_error::bad_recipient);
  EXPECT_EQ(parse_fails("RCPT TO:<a@b..c>"), parse_error::bad_recipient);
}

TEST(command, path_longer_than_256_octets_is_refused) {
  const std::string domain = std::string(60, 'd') + "." + std::string(60, 'e') + "." +
                             std::string(60, 'f') + "." + std::string(61, 'g') + ".org";
  ASSERT_EQ(domain.size(), 248u);
  // "<" + 5 + "@" + 248 + ">" = 256: the longest allowed path.
  EXPECT_EQ(parse_ok("RCPT TO:<abcde@" + domain + ">").path.size(), 254u);
  EXPECT_EQ(parse_fails("RCPT TO:<abcdef@" + domain + ">"), parse_error::bad_recipient);
  EXPECT_EQ(parse_fails("MAIL FROM:<abcdef@" + domain + ">"), parse_error::bad_sender);
}

TEST(command, mail_parameter_errors) {
  EXPECT_EQ(parse_fails("MAIL FROM:<a@b.c> SIZE=abc"), parse_error::bad_parameter);
  EXPECT_EQ(parse_fails("MAIL FROM:<a@b.c> SIZE="), parse_error::bad_parameter);
  EXPECT_EQ(parse_fails("MAIL FROM:<a@b.c> SIZE"), parse_error::bad_parameter);
  EXPECT_EQ(parse_fails("MAIL FROM:<a@b.c> SIZE=99999999999999999999999"),
            parse_error::bad_parameter);
  EXPECT_EQ(parse_fails("MAIL FROM:<a@b.c> SIZE=1 SIZE=2"), parse_error::bad_parameter);
  EXPECT_EQ(parse_fails("MAIL FROM:<a@b.c> BODY=BINARYMIME"), parse_error::bad_parameter);
  EXPECT_EQ(parse_fails("MAIL FROM:<a@b.c> BODY"), parse_error::bad_parameter);
  EXPECT_EQ(parse_fails("MAIL FROM:<a@b.c> SMTPUTF8=yes"), parse_error::bad_parameter);
  EXPECT_EQ(parse_fails("MAIL FROM:<a@b.c> -X=1"), parse_error::bad_parameter);
  EXPECT_EQ(parse_fails("MAIL FROM:<a@b.c> X=a=b"), parse_error::bad_parameter);
  EXPECT_EQ(parse_fails("MAIL FROM:<a@b.c> RET=HDRS"), parse_error::unknown_parameter);
  EXPECT_EQ(parse_fails("MAIL FROM:<a@b.c> AUTH=<>"), parse_error::unknown_parameter);
  EXPECT_EQ(parse_fails("RCPT TO:<a@b.c> NOTIFY=NEVER"), parse_error::unknown_parameter);
  EXPECT_EQ(parse_fails("RCPT TO:<a@b.c> =x"), parse_error::bad_parameter);
}

TEST(command, largest_size_fits) {
  EXPECT_EQ(parse_ok("MAIL FROM:<a@b.c> SIZE=18446744073709551615").size, UINT64_MAX);
  EXPECT_EQ(parse_fails("MAIL FROM:<a@b.c> SIZE=18446744073709551616"), parse_error::bad_parameter);
}

TEST(command, argument_rules) {
  EXPECT_EQ(parse_fails("DATA now"), parse_error::no_arguments_allowed);
  EXPECT_EQ(parse_fails("RSET x"), parse_error::no_arguments_allowed);
  EXPECT_EQ(parse_fails("QUIT x"), parse_error::no_arguments_allowed);
  EXPECT_EQ(parse_ok("DATA  ").what, verb::data);
  EXPECT_EQ(parse_fails("VRFY"), parse_error::missing_argument);
  EXPECT_EQ(parse_ok("NOOP anything at all").argument, "anything at all");
  EXPECT_EQ(parse_ok("HELP MAIL").argument, "MAIL");
}

TEST(command, unknown_and_malformed_lines) {
  EXPECT_EQ(parse_fails(""), parse_error::unknown_command);
  EXPECT_EQ(parse_fails("   "), parse_error::unknown_command);
  EXPECT_EQ(parse_fails("EXPN list"), parse_error::unknown_command);
  EXPECT_EQ(parse_fails("MAILFROM:<a@b.c>"), parse_error::unknown_command);
  EXPECT_EQ(parse_fails("GET / HTTP/1.1"), parse_error::unknown_command);
  EXPECT_EQ(parse_fails("NO\rOP"), parse_error::invalid_characters);
  EXPECT_EQ(parse_fails(std::string("NOOP\0", 5)), parse_error::invalid_characters);
  EXPECT_EQ(parse_fails("NOOP\n"), parse_error::invalid_characters);
  EXPECT_EQ(parse_fails("NOOP \x7f"), parse_error::invalid_characters);
}

TEST(command, every_parse_error_maps_to_one_reply) {
  const std::pair<parse_error, std::string> cases[] = {
      {parse_error::unknown_command, "500 5.5.1"},
      {parse_error::invalid_characters, "500 5.5.2"},
      {parse_error::no_arguments_allowed, "501 5.5.4"},
      {parse_error::missing_argument, "501 5.5.4"},
      {parse_error::helo_syntax, "501 5.5.4"},
      {parse_error::mail_syntax, "501 5.5.4"},
      {parse_error::rcpt_syntax, "501 5.5.4"},
      {parse_error::bad_sender, "501 5.1.7"},
      {parse_error::bad_recipient, "501 5.1.3"},
      {parse_error::bad_parameter, "501 5.5.4"},
      {parse_error::unknown_parameter, "555 5.5.4"},
  };
  for (const auto& [e, prefix] : cases) {
    const reply r = to_reply(e);
    EXPECT_EQ(std::to_string(r.code) + " " + r.enhanced, prefix) << to_string(e);
    EXPECT_FALSE(r.text.empty());
  }
  EXPECT_EQ(to_reply(parse_error::bad_sender).to_string(), "501 5.1.7 Bad sender address syntax");
  EXPECT_EQ(to_reply(parse_error::bad_recipient).to_string(),
            "501 5.1.3 Bad recipient address syntax");
}

TEST(command, encode_writes_canonical_forms) {
  EXPECT_EQ(parse_ok("mail from: <a@b.c> body=8bitmime size=5 smtputf8").encode(),
            "MAIL FROM:<a@b.c> SIZE=5 BODY=8BITMIME SMTPUTF8\r\n");
  EXPECT_EQ(parse_ok("rcpt to:<@r.example:d@e.f>").encode(), "RCPT TO:<d@e.f>\r\n");
  EXPECT_EQ(parse_ok("ehlo me.example").encode(), "EHLO me.example\r\n");
  EXPECT_EQ(parse_ok("data").encode(), "DATA\r\n");
  EXPECT_EQ(parse_ok("noop").encode(), "NOOP\r\n");
  EXPECT_EQ(parse_ok("MAIL FROM:<>").encode(), "MAIL FROM:<>\r\n");
}

TEST(command, round_trips) {
  for (const char* line : {"EHLO client.example",
                           "HELO client.example",
                           "MAIL FROM:<a@b.c>",
                           "MAIL FROM:<>",
                           "MAIL FROM:<a@b.c> SIZE=0",
                           "MAIL FROM:<a@b.c> BODY=7BIT",
                           "MAIL FROM:<j\xc3\xb6rg@b.c> SIZE=99 BODY=8BITMIME SMTPUTF8",
                           "RCPT TO:<x@[192.0.2.1]>",
                           "RCPT TO:<\"q u\"@example.org>",
                           "RCPT TO:<Postmaster>",
                           "DATA",
                           "RSET",
                           "NOOP",
                           "NOOP hi",
                           "QUIT",
                           "VRFY bob",
                           "HELP",
                           "STARTTLS",
                           "AUTH PLAIN",
                           "BDAT 10 LAST"}) {
    const command c = parse_ok(line);
    const std::string wire = c.encode();
    EXPECT_EQ(wire, std::string(line) + "\r\n");
    const auto again = command::parse(std::string_view(wire).substr(0, wire.size() - 2));
    ASSERT_TRUE(again.has_value()) << line;
    EXPECT_EQ(*again, c) << line;
  }
}

TEST(command, built_commands_encode) {
  command c;
  c.what = verb::mail;
  c.path = "bounce@example.org";
  c.size = 42;
  EXPECT_EQ(c.encode(), "MAIL FROM:<bounce@example.org> SIZE=42\r\n");
  c = command{};
  c.what = verb::rcpt;
  c.path = "to@example.org";
  EXPECT_EQ(c.encode(), "RCPT TO:<to@example.org>\r\n");
  EXPECT_EQ(to_string(verb::starttls), "STARTTLS");
}

}  // namespace
}  // namespace smtp
