// sendmail's message handling: the lone-dot rule with and without -i, CRLF
// normalisation, -t recipients from folded To/Cc/Bcc with groups, comments and
// quoted names, Bcc removed, From:/Date:/Message-ID: added only when missing.
#include "cli/sendmail_message.hpp"

#include <gtest/gtest.h>

namespace sendmail {
namespace {

std::string read_all(std::string_view in, bool ignore_dots, std::size_t piece = 0) {
  input_reader r(ignore_dots);
  if (piece == 0) {
    r.put(in);
  } else {
    for (std::size_t i = 0; i < in.size() && r.put(in.substr(i, piece)); i += piece) {
    }
  }
  r.finish();
  return r.take();
}

TEST(SendmailInput, LfBecomesCrlfAndALastLineGetsItsEnding) {
  EXPECT_EQ(read_all("Subject: x\n\nbody\nlast", true), "Subject: x\r\n\r\nbody\r\nlast\r\n");
  EXPECT_EQ(read_all("a\r\nb\rc\n", true), "a\r\nb\r\nc\r\n");
}

TEST(SendmailInput, ALoneDotEndsInputWithoutDashI) {
  EXPECT_EQ(read_all("one\n.\ntwo\n", false), "one\r\n");
  EXPECT_EQ(read_all("one\r\n.\r\ntwo\r\n", false), "one\r\n");
  EXPECT_EQ(read_all("one\n.", false), "one\r\n");
  input_reader r(false);
  EXPECT_FALSE(r.put("x\n.\nrest"));
  EXPECT_TRUE(r.ended());
}

TEST(SendmailInput, WithDashIALoneDotIsContent) {
  EXPECT_EQ(read_all("one\n.\ntwo\n", true), "one\r\n.\r\ntwo\r\n");
  EXPECT_EQ(read_all("..x\n.y\n", false), "..x\r\n.y\r\n") << "only a line of a single dot";
}

TEST(SendmailInput, AnySplitOfTheInputGivesTheSameMessage) {
  const std::string in = "A: b\r\n\r\nx\ny\r\n.\r\nz\n";
  for (bool dots : {false, true}) {
    const std::string whole = read_all(in, dots);
    for (std::size_t piece = 1; piece < in.size(); ++piece)
      EXPECT_EQ(read_all(in, dots, piece), whole) << "piece " << piece << " dots " << dots;
  }
}

TEST(SendmailAddresses, NamesCommentsQuotesAndGroups) {
  EXPECT_EQ(parse_address_list(" a@x.example"), std::vector<std::string>{"a@x.example"});
  EXPECT_EQ(parse_address_list("\"Doe, John\" <j@x.example>, b@y.example (Bob, the builder)"),
            (std::vector<std::string>{"j@x.example", "b@y.example"}));
  EXPECT_EQ(parse_address_list("Team: c@z.example, Dee <d@z.example>;, e@z.example"),
            (std::vector<std::string>{"c@z.example", "d@z.example", "e@z.example"}));
  EXPECT_EQ(parse_address_list("undisclosed-recipients:;"), std::vector<std::string>{});
  EXPECT_EQ(parse_address_list("Alice <a@x.example> (home)"), std::vector<std::string>{"a@x.example"});
  EXPECT_EQ(parse_address_list("<@route.example:r@x.example>"),
            std::vector<std::string>{"r@x.example"});
  EXPECT_EQ(parse_address_list("\"quoted local\"@x.example"),
            std::vector<std::string>{"\"quoted local\"@x.example"});
  EXPECT_EQ(parse_address_list("a@x.example,\r\n\tb@y.example"),
            (std::vector<std::string>{"a@x.example", "b@y.example"}));
  EXPECT_EQ(parse_address_list("root"), std::vector<std::string>{"root"});
}

header_fixes fixes(bool t) {
  header_fixes f;
  f.extract_recipients = t;
  f.from_address = "www-data@example.org";
  f.full_name = "Web Server";
  f.now = 1700000000;
  f.message_id = "<1.2@host.example>";
  return f;
}

TEST(SendmailPrepare, DashTTakesToCcBccFoldedAndRemovesBcc) {
  const std::string in =
      "To: Ann <ann@example.com>,\r\n  bob@example.com\r\n"
      "Subject: hi\r\n"
      "Bcc: hidden@example.net,\r\n\tGroup: g1@example.net;\r\n"
      "cc: carol@example.com\r\n"
      "\r\nBcc: this is body text\r\n";
  auto p = prepare_message(in, fixes(true));
  EXPECT_EQ(p.header_recipients,
            (std::vector<std::string>{"ann@example.com", "bob@example.com", "hidden@example.net",
                                      "g1@example.net", "carol@example.com"}));
  EXPECT_EQ(p.content.find("hidden@"), std::string::npos) << p.content;
  EXPECT_EQ(p.content.find("g1@"), std::string::npos) << p.content;
  EXPECT_NE(p.content.find("\r\n\r\nBcc: this is body text\r\n"), std::string::npos)
      << "the body is not touched";
  EXPECT_NE(p.content.find("cc: carol@example.com\r\n"), std::string::npos);
}

TEST(SendmailPrepare, WithoutDashTNoHeaderRecipientsButBccStillRemoved) {
  auto p = prepare_message("To: a@example.com\r\nBcc: b@example.com\r\n\r\nx\r\n", fixes(false));
  EXPECT_TRUE(p.header_recipients.empty());
  EXPECT_EQ(p.content.find("Bcc:"), std::string::npos);
}

TEST(SendmailPrepare, MissingFromDateMessageIdAreAdded) {
  auto p = prepare_message("Subject: x\r\n\r\nbody\r\n", fixes(false));
  EXPECT_EQ(p.content,
            "Subject: x\r\n"
            "From: Web Server <www-data@example.org>\r\n"
            "Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n"
            "Message-ID: <1.2@host.example>\r\n"
            "\r\nbody\r\n");
}

TEST(SendmailPrepare, PresentHeadersAreKept) {
  const std::string in =
      "from: me@example.com\r\nDATE: Mon, 1 Jan 2024 00:00:00 +0000\r\n"
      "Message-Id: <x@y>\r\n\r\nbody\r\n";
  EXPECT_EQ(prepare_message(in, fixes(false)).content, in);
}

TEST(SendmailPrepare, ABodyWithoutHeadersGetsASeparator) {
  auto p = prepare_message("just text\r\n", fixes(false));
  EXPECT_TRUE(p.content.ends_with("Message-ID: <1.2@host.example>\r\n\r\njust text\r\n"))
      << p.content;
  EXPECT_TRUE(p.content.starts_with("From: "));
}

TEST(SendmailPrepare, FullNameWithSpecialsIsQuoted) {
  EXPECT_EQ(from_field("Doe, \"J\"", "j@x.example"), "From: \"Doe, \\\"J\\\"\" <j@x.example>\r\n");
  EXPECT_EQ(from_field("", "j@x.example"), "From: <j@x.example>\r\n");
  EXPECT_EQ(from_field("Cron Daemon", "root@x.example"), "From: Cron Daemon <root@x.example>\r\n");
}

TEST(SendmailAddresses, QualifyAndCheck) {
  EXPECT_EQ(qualify("root", "example.org"), "root@example.org");
  EXPECT_EQ(qualify("<root>", "example.org"), "root@example.org");
  EXPECT_EQ(qualify("a@b.example", "example.org"), "a@b.example");
  EXPECT_TRUE(check_address("a@b.example"));
  auto bad = check_address("a@");
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().find("<a@>"), std::string::npos);
  EXPECT_FALSE(check_address("a b@c.example"));
}

TEST(SendmailAddresses, EightBit) {
  EXPECT_FALSE(has_8bit("plain ascii\r\n"));
  EXPECT_TRUE(has_8bit("caf\xc3\xa9\r\n"));
}

}  // namespace
}  // namespace sendmail
