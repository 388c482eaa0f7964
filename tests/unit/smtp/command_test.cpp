// smtp::command: parsing of every verb and MAIL/RCPT argument, every parse error
// and the reply it maps to, and encode/parse round trips.
#include "smtp/command.hpp"

#include <gtest/gtest.h>

#include <string>

#include "smtp/xtext.hpp"

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
  EXPECT_EQ(parse_fails("MAIL FROM:<a@b.c> XFOO=HDRS"), parse_error::unknown_parameter);
  EXPECT_EQ(parse_fails("MAIL FROM:<a@b.c> AUTH=<>"), parse_error::unknown_parameter);
  EXPECT_EQ(parse_fails("RCPT TO:<a@b.c> SIZE=1"), parse_error::unknown_parameter);
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

namespace smtp {
namespace {

// ---- DSN parameters (RFC 3461) ------------------------------------------------

TEST(command, mail_ret_and_envid) {
  command c = parse_ok("MAIL FROM:<a@b.c> RET=HDRS ENVID=QQ314159");
  EXPECT_EQ(c.ret, dsn_ret::headers);
  EXPECT_EQ(c.envid, "QQ314159");
  c = parse_ok("mail from:<a@b.c> ret=full envid=a+2Bb+3Dc+20d");
  EXPECT_EQ(c.ret, dsn_ret::full);
  EXPECT_EQ(c.envid, "a+b=c d");  // xtext decoded
  c = parse_ok("MAIL FROM:<a@b.c>");
  EXPECT_EQ(c.ret, dsn_ret::unspecified);
  EXPECT_EQ(c.envid, "");
}

TEST(command, rcpt_notify_and_orcpt) {
  command c = parse_ok("RCPT TO:<a@b.c> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;Orig+2Bx@b.c");
  EXPECT_EQ(c.notify, notify_success | notify_failure);
  EXPECT_EQ(c.orcpt, "rfc822;Orig+x@b.c");
  EXPECT_EQ(parse_ok("RCPT TO:<a@b.c> NOTIFY=NEVER").notify, notify_never);
  EXPECT_EQ(parse_ok("RCPT TO:<a@b.c> notify=delay,failure,success").notify,
            notify_success | notify_failure | notify_delay);
  EXPECT_EQ(parse_ok("RCPT TO:<a@b.c> NOTIFY=DELAY").notify, notify_delay);
  EXPECT_EQ(parse_ok("RCPT TO:<a@b.c>").notify, 0);
  EXPECT_EQ(parse_ok("RCPT TO:<a@b.c> ORCPT=utf-8;j\\x{F6}rg@b.c").orcpt, "utf-8;j\\x{F6}rg@b.c");
}

TEST(command, dsn_parameter_errors_are_501) {
  for (const char* line : {
           "MAIL FROM:<a@b.c> RET=",
           "MAIL FROM:<a@b.c> RET",
           "MAIL FROM:<a@b.c> RET=BODY",
           "MAIL FROM:<a@b.c> RET=FULL RET=HDRS",
           "MAIL FROM:<a@b.c> ENVID=",
           "MAIL FROM:<a@b.c> ENVID",
           "MAIL FROM:<a@b.c> ENVID=a ENVID=b",
           "MAIL FROM:<a@b.c> ENVID=a+2b",   // lower-case hex
           "MAIL FROM:<a@b.c> ENVID=a+2",    // cut short
           "MAIL FROM:<a@b.c> ENVID=a+ZZb",  // not hex
           "MAIL FROM:<a@b.c> ENVID=a+0Db",  // decodes to a control character
           "MAIL FROM:<a@b.c> ENVID=a+C3+A9",  // decodes to 8-bit octets
           "RCPT TO:<a@b.c> NOTIFY=",
           "RCPT TO:<a@b.c> NOTIFY",
           "RCPT TO:<a@b.c> NOTIFY=NEVER,SUCCESS",
           "RCPT TO:<a@b.c> NOTIFY=FAILURE,NEVER",
           "RCPT TO:<a@b.c> NOTIFY=SUCCESS,SUCCESS",
           "RCPT TO:<a@b.c> NOTIFY=SUCCESS,",
           "RCPT TO:<a@b.c> NOTIFY=,DELAY",
           "RCPT TO:<a@b.c> NOTIFY=ALWAYS",
           "RCPT TO:<a@b.c> NOTIFY=NEVER NOTIFY=NEVER",
           "RCPT TO:<a@b.c> ORCPT=a@b.c",        // no addr-type
           "RCPT TO:<a@b.c> ORCPT=;a@b.c",       // empty addr-type
           "RCPT TO:<a@b.c> ORCPT=rfc822;",      // empty address
           "RCPT TO:<a@b.c> ORCPT=rfc 822;a@b.c",  // SP splits: "822;a@b.c" is no keyword
           "RCPT TO:<a@b.c> ORCPT=rfc822;a+2x@b.c",
           "RCPT TO:<a@b.c> ORCPT=rfc822;a@b.c ORCPT=rfc822;a@b.c",
       }) {
    const auto e = parse_fails(line);
    EXPECT_TRUE(e == parse_error::bad_parameter) << line << ": " << to_string(e);
    EXPECT_EQ(to_reply(e).code, 501) << line;
    EXPECT_EQ(to_reply(e).enhanced, "5.5.4") << line;
  }
  // RCPT parameters on MAIL and the other way round are unknown (555).
  EXPECT_EQ(parse_fails("MAIL FROM:<a@b.c> NOTIFY=NEVER"), parse_error::unknown_parameter);
  EXPECT_EQ(parse_fails("RCPT TO:<a@b.c> RET=FULL"), parse_error::unknown_parameter);
}

TEST(command, envid_and_orcpt_lengths) {
  // ENVID: up to 100 characters as sent; ORCPT up to 500.
  EXPECT_EQ(parse_ok("MAIL FROM:<a@b.c> ENVID=" + std::string(100, 'e')).envid, std::string(100, 'e'));
  EXPECT_EQ(parse_fails("MAIL FROM:<a@b.c> ENVID=" + std::string(101, 'e')),
            parse_error::bad_parameter);
  // The limit counts the xtext: 100 decoded characters sent as 102 are refused.
  EXPECT_EQ(parse_fails("MAIL FROM:<a@b.c> ENVID=" + std::string(99, 'e') + "+20"),
            parse_error::bad_parameter);
  const std::string orcpt_500 = "rfc822;" + std::string(493 - 4, 'o') + "@b.c";
  ASSERT_EQ(orcpt_500.size(), 500u);
  EXPECT_EQ(parse_ok("RCPT TO:<a@b.c> ORCPT=" + orcpt_500).orcpt, orcpt_500);
  EXPECT_EQ(parse_fails("RCPT TO:<a@b.c> ORCPT=" + orcpt_500 + "x"), parse_error::bad_parameter);
}

TEST(command, dsn_parameters_round_trip) {
  command mail = parse_ok("MAIL FROM:<a@b.c> SIZE=5 RET=HDRS ENVID=id+2B1+3D2+20x");
  EXPECT_EQ(mail.encode(), "MAIL FROM:<a@b.c> SIZE=5 RET=HDRS ENVID=id+2B1+3D2+20x\r\n");
  command rcpt = parse_ok("rcpt to:<d@e.f> notify=delay,success orcpt=rfc822;D+2Bx@e.f");
  EXPECT_EQ(rcpt.encode(), "RCPT TO:<d@e.f> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;D+2Bx@e.f\r\n");
  for (const command& c : {mail, rcpt}) {
    const std::string wire = c.encode();
    const auto again = command::parse(std::string_view(wire).substr(0, wire.size() - 2));
    ASSERT_TRUE(again.has_value()) << wire;
    EXPECT_EQ(*again, c) << wire;
  }
  command never;
  never.what = verb::rcpt;
  never.path = "x@y.z";
  never.notify = notify_never;
  EXPECT_EQ(never.encode(), "RCPT TO:<x@y.z> NOTIFY=NEVER\r\n");
  command full;
  full.what = verb::mail;
  full.path = "";
  full.ret = dsn_ret::full;
  full.envid = "a b";
  EXPECT_EQ(full.encode(), "MAIL FROM:<> RET=FULL ENVID=a+20b\r\n");
}

TEST(xtext, decodes_strictly) {
  EXPECT_EQ(xtext::decode("plain"), "plain");
  EXPECT_EQ(xtext::decode("a+2Bb+3D+20"), "a+b= ");
  EXPECT_EQ(xtext::decode(""), "");
  EXPECT_EQ(xtext::decode("+00"), std::string(1, '\0'));
  EXPECT_EQ(xtext::decode("+FF"), "\xff");
  for (const char* bad : {"+", "+2", "+2b", "+g0", "a=b", "a b", "a+", "\x7f", "+-1"}) {
    EXPECT_FALSE(xtext::decode(bad).has_value()) << bad;
  }
  EXPECT_FALSE(xtext::decode("a\xc3\xa9").has_value());
}

TEST(xtext, encode_round_trips_every_octet) {
  std::string all;
  for (int c = 0; c < 256; ++c) all += static_cast<char>(c);
  const std::string encoded = xtext::encode(all);
  for (char c : encoded) {
    EXPECT_TRUE(c >= 33 && c <= 126 && c != '=') << static_cast<int>(c);
  }
  EXPECT_EQ(xtext::decode(encoded), all);
  EXPECT_EQ(xtext::encode("a+b=c d\xe9"), "a+2Bb+3Dc+20d+E9");
}

}  // namespace
}  // namespace smtp
