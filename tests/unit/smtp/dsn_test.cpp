// smtp::compose_dsn: the multipart/report structure, failed and delayed reports,
// per-recipient fields, RFC 6533 addresses, and the cleaning of untrusted input
// (remote replies, the original message): CRLF only, lines of at most 998 octets.
#include "smtp/dsn.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace smtp {
namespace {

using namespace std::string_literals;
using namespace std::string_view_literals;

constexpr std::int64_t t0 = 1704164645;  // Tue, 02 Jan 2024 03:04:05 +0000

// Every line ends in CRLF, there is no bare CR or LF, and no line is longer than
// 998 octets.
::testing::AssertionResult well_formed(std::string_view m) {
  std::size_t line_start = 0;
  for (std::size_t i = 0; i < m.size(); ++i) {
    if (m[i] == '\n') return ::testing::AssertionFailure() << "bare LF at " << i;
    if (m[i] != '\r') continue;
    if (i + 1 == m.size() || m[i + 1] != '\n') {
      return ::testing::AssertionFailure() << "bare CR at " << i;
    }
    if (i - line_start > 998) {
      return ::testing::AssertionFailure()
             << "line of " << i - line_start << " octets at " << line_start;
    }
    ++i;
    line_start = i + 1;
  }
  if (line_start != m.size()) return ::testing::AssertionFailure() << "no CRLF at the end";
  return ::testing::AssertionSuccess();
}

using fields = std::vector<std::pair<std::string, std::string>>;

// The fields of a header block, unfolded, values without leading white space.
fields parse_fields(std::string_view block) {
  fields out;
  std::size_t pos = 0;
  while (pos < block.size()) {
    std::size_t eol = block.find("\r\n", pos);
    if (eol == std::string_view::npos) eol = block.size();
    const std::string_view line = block.substr(pos, eol - pos);
    pos = eol + 2;
    if (line.empty()) break;
    if ((line[0] == ' ' || line[0] == '\t') && !out.empty()) {
      out.back().second += line;
      continue;
    }
    const std::size_t colon = line.find(':');
    if (colon == std::string_view::npos) {
      out.emplace_back(std::string(line), "<not a field>");
      continue;
    }
    std::string_view value = line.substr(colon + 1);
    while (!value.empty() && value[0] == ' ') value.remove_prefix(1);
    out.emplace_back(std::string(line.substr(0, colon)), std::string(value));
  }
  return out;
}

std::string get(const fields& f, std::string_view name) {
  for (const auto& [n, v] : f) {
    if (n == name) return v;
  }
  return "<absent>";
}

std::size_t count(const fields& f, std::string_view name) {
  std::size_t n = 0;
  for (const auto& field : f) n += field.first == name ? 1 : 0;
  return n;
}

struct mime_part {
  fields headers;
  std::string body;
};

struct report {
  fields headers;
  std::string boundary;
  std::vector<mime_part> parts;
  bool closed = false;  // the close delimiter ends the message
};

report split(std::string_view m) {
  report r;
  const std::size_t end = m.find("\r\n\r\n");
  if (end == std::string_view::npos) return r;
  r.headers = parse_fields(m.substr(0, end + 2));
  const std::string type = get(r.headers, "Content-Type");
  const std::size_t b = type.find("boundary=\"");
  if (b == std::string::npos) return r;
  r.boundary = type.substr(b + 10, type.find('"', b + 10) - (b + 10));
  const std::string_view body = m.substr(end + 4);
  const std::string delimiter = "\r\n--" + r.boundary;
  std::size_t pos = body.find(delimiter);
  while (pos != std::string_view::npos) {
    const std::size_t after = pos + delimiter.size();
    if (body.substr(after, 4) == "--\r\n") {
      r.closed = after + 4 == body.size();
      break;
    }
    if (body.substr(after, 2) != "\r\n") break;
    const std::size_t start = after + 2;
    const std::size_t next = body.find(delimiter, start);
    const std::string_view content = body.substr(start, next - start);
    const std::size_t blank = content.find("\r\n\r\n");
    mime_part p;
    p.headers = parse_fields(content.substr(0, blank + 2));
    if (blank != std::string_view::npos) p.body = std::string(content.substr(blank + 4));
    r.parts.push_back(std::move(p));
    pos = next;
  }
  return r;
}

// The blocks of a message/delivery-status body: per-message, then one per
// recipient.
std::vector<fields> groups(std::string_view body) {
  std::vector<fields> out;
  std::size_t pos = 0;
  while (pos < body.size()) {
    std::size_t end = body.find("\r\n\r\n", pos);
    if (end == std::string_view::npos) end = body.size();
    out.push_back(parse_fields(body.substr(pos, end - pos + 2)));
    pos = end + 4;
  }
  return out;
}

constexpr std::string_view original_message =
    "Received: from app.example.com (localhost [127.0.0.1])\r\n"
    "\tby relay.example.org (relayd) with ESMTP id 0123456789ABCDEF; Tue, 02 Jan 2024 "
    "03:04:05 +0000\r\n"
    "From: Alice <alice@example.com>\r\n"
    "To: bob@example.net\r\n"
    "Subject: Hello\r\n"
    "Message-ID: <m1@example.com>\r\n"
    "\r\n"
    "Hi Bob,\r\n"
    "the body.\r\n";

constexpr std::string_view original_headers =
    "Received: from app.example.com (localhost [127.0.0.1])\r\n"
    "\tby relay.example.org (relayd) with ESMTP id 0123456789ABCDEF; Tue, 02 Jan 2024 "
    "03:04:05 +0000\r\n"
    "From: Alice <alice@example.com>\r\n"
    "To: bob@example.net\r\n"
    "Subject: Hello\r\n"
    "Message-ID: <m1@example.com>\r\n";

dsn_recipient bob() {
  dsn_recipient r;
  r.address = "bob@example.net";
  r.action = dsn_action::failed;
  r.status = "5.1.1";
  r.remote_mta = "mx1.example.net";
  r.diagnostic = "550 5.1.1 <bob@example.net>: Recipient address rejected";
  r.explanation =
      "host mx1.example.net[192.0.2.1] said: 550 5.1.1 <bob@example.net>: Recipient address "
      "rejected (in reply to RCPT TO command)";
  r.last_attempt = t0 + 60;
  return r;
}

dsn_recipient carol_delayed() {
  dsn_recipient r;
  r.address = "carol@example.org";
  r.action = dsn_action::delayed;
  r.status = "4.4.1";
  r.remote_mta = "mx.example.org";
  r.diagnostic = "451 4.4.1 Try again later";
  r.explanation = "host mx.example.org[192.0.2.7] said: 451 4.4.1 Try again later";
  r.last_attempt = t0 + 4 * 3600;
  r.will_retry_until = t0 + 5 * 86400;
  return r;
}

dsn_request request_with(std::vector<dsn_recipient> recipients) {
  dsn_request r;
  r.reporting_mta = "relay.example.org";
  r.queue_id = "0123456789ABCDEF";
  r.original_sender = "alice@example.com";
  r.arrival = t0;
  r.now = t0 + 3600;
  r.message_id = "<0123456789ABCDEF.dsn@relay.example.org>";
  r.recipients = std::move(recipients);
  r.original = original_message;
  return r;
}

TEST(dsn, failed_report_is_a_multipart_report_of_three_parts) {
  const std::string m = compose_dsn(request_with({bob()}));
  ASSERT_TRUE(well_formed(m));
  const report r = split(m);
  EXPECT_EQ(get(r.headers, "From"), "Mail Delivery System <MAILER-DAEMON@relay.example.org>");
  EXPECT_EQ(get(r.headers, "To"), "<alice@example.com>");
  EXPECT_EQ(get(r.headers, "Subject"), "Undelivered Mail Returned to Sender");
  EXPECT_EQ(get(r.headers, "Date"), "Tue, 02 Jan 2024 04:04:05 +0000");
  EXPECT_EQ(get(r.headers, "Message-ID"), "<0123456789ABCDEF.dsn@relay.example.org>");
  EXPECT_EQ(get(r.headers, "Auto-Submitted"), "auto-replied");
  EXPECT_EQ(get(r.headers, "MIME-Version"), "1.0");
  EXPECT_EQ(get(r.headers, "Content-Type").find("multipart/report; report-type=delivery-status;"),
            0u);
  EXPECT_EQ(count(r.headers, "Content-Transfer-Encoding"), 0u);  // all 7-bit
  EXPECT_FALSE(r.boundary.empty());
  EXPECT_NE(r.boundary.find("0123456789ABCDEF"), std::string::npos);
  ASSERT_EQ(r.parts.size(), 3u);
  EXPECT_TRUE(r.closed);

  EXPECT_EQ(get(r.parts[0].headers, "Content-Type"), "text/plain; charset=utf-8");
  EXPECT_EQ(get(r.parts[1].headers, "Content-Type"), "message/delivery-status");
  EXPECT_EQ(get(r.parts[2].headers, "Content-Type"), "text/rfc822-headers");
  for (const mime_part& p : r.parts) {
    EXPECT_EQ(count(p.headers, "Content-Transfer-Encoding"), 0u);
  }

  const std::string& text = r.parts[0].body;
  EXPECT_NE(text.find("relay.example.org"), std::string::npos);
  EXPECT_NE(text.find("could not be delivered"), std::string::npos);
  EXPECT_NE(text.find("<bob@example.net>"), std::string::npos);
  EXPECT_NE(text.find("host mx1.example.net[192.0.2.1] said: 550 5.1.1"), std::string::npos);

  const std::vector<fields> g = groups(r.parts[1].body);
  ASSERT_EQ(g.size(), 2u);
  EXPECT_EQ(g[0], (fields{{"Reporting-MTA", "dns; relay.example.org"},
                          {"X-Relayd-Queue-ID", "0123456789ABCDEF"},
                          {"Arrival-Date", "Tue, 02 Jan 2024 03:04:05 +0000"}}));
  EXPECT_EQ(
      g[1],
      (fields{{"Final-Recipient", "rfc822; bob@example.net"},
              {"Action", "failed"},
              {"Status", "5.1.1"},
              {"Remote-MTA", "dns; mx1.example.net"},
              {"Diagnostic-Code", "smtp; 550 5.1.1 <bob@example.net>: Recipient address rejected"},
              {"Last-Attempt-Date", "Tue, 02 Jan 2024 03:05:05 +0000"}}));

  // The original's header block, byte for byte, and not its body.
  EXPECT_EQ(r.parts[2].body, original_headers);
}

TEST(dsn, delayed_report_says_when_it_gives_up) {
  const std::string m = compose_dsn(request_with({carol_delayed()}));
  ASSERT_TRUE(well_formed(m));
  const report r = split(m);
  EXPECT_EQ(get(r.headers, "Subject"), "Delayed Mail (still being retried)");
  ASSERT_EQ(r.parts.size(), 3u);
  const std::string& text = r.parts[0].body;
  EXPECT_NE(text.find("not been delivered yet"), std::string::npos);
  EXPECT_EQ(text.find("could not be delivered"), std::string::npos);
  EXPECT_NE(text.find("<carol@example.org>"), std::string::npos);
  EXPECT_NE(text.find("Still being retried until Sun, 07 Jan 2024 03:04:05 +0000."),
            std::string::npos);
  const std::vector<fields> g = groups(r.parts[1].body);
  ASSERT_EQ(g.size(), 2u);
  EXPECT_EQ(get(g[1], "Final-Recipient"), "rfc822; carol@example.org");
  EXPECT_EQ(get(g[1], "Action"), "delayed");
  EXPECT_EQ(get(g[1], "Status"), "4.4.1");
  EXPECT_EQ(get(g[1], "Diagnostic-Code"), "smtp; 451 4.4.1 Try again later");
  EXPECT_EQ(get(g[1], "Will-Retry-Until"), "Sun, 07 Jan 2024 03:04:05 +0000");
}

TEST(dsn, failed_recipient_never_carries_will_retry_until) {
  dsn_recipient r = bob();
  r.will_retry_until = t0 + 86400;
  const report rep = split(compose_dsn(request_with({r})));
  ASSERT_EQ(rep.parts.size(), 3u);
  EXPECT_EQ(count(groups(rep.parts[1].body)[1], "Will-Retry-Until"), 0u);
}

TEST(dsn, every_recipient_gets_its_own_group) {
  dsn_recipient dave;
  dave.address = "dave@example.net";
  dave.status = "5.4.4";
  dave.explanation = "Host or domain name not found";
  const std::string m = compose_dsn(request_with({bob(), carol_delayed(), dave}));
  ASSERT_TRUE(well_formed(m));
  const report r = split(m);
  // One failed recipient is enough for the "returned" subject.
  EXPECT_EQ(get(r.headers, "Subject"), "Undelivered Mail Returned to Sender");
  ASSERT_EQ(r.parts.size(), 3u);
  const std::vector<fields> g = groups(r.parts[1].body);
  ASSERT_EQ(g.size(), 4u);
  EXPECT_EQ(get(g[1], "Final-Recipient"), "rfc822; bob@example.net");
  EXPECT_EQ(get(g[2], "Final-Recipient"), "rfc822; carol@example.org");
  EXPECT_EQ(get(g[2], "Action"), "delayed");
  // No remote host, no reply, no attempt: those fields are left out.
  EXPECT_EQ(g[3], (fields{{"Final-Recipient", "rfc822; dave@example.net"},
                          {"Action", "failed"},
                          {"Status", "5.4.4"}}));
  // The text part lists the failed ones, then the delayed ones.
  const std::string& text = r.parts[0].body;
  const std::size_t failed = text.find("could not be delivered");
  const std::size_t delayed = text.find("not been delivered yet");
  ASSERT_NE(failed, std::string::npos);
  ASSERT_NE(delayed, std::string::npos);
  EXPECT_LT(text.find("<bob@example.net>"), text.find("<dave@example.net>"));
  EXPECT_LT(text.find("<dave@example.net>"), delayed);
  EXPECT_LT(delayed, text.find("<carol@example.org>"));
  EXPECT_NE(text.find("Host or domain name not found"), std::string::npos);
}

TEST(dsn, non_ascii_recipient_is_typed_utf8_in_seven_bits) {
  dsn_recipient r = bob();
  r.address =
      "j\xC3\xB6rg+a=b\\c@b\xC3\xBC"
      "cher.example";  // jörg+a=b\c@bücher.example
  const std::string m = compose_dsn(request_with({r}));
  ASSERT_TRUE(well_formed(m));
  const report rep = split(m);
  ASSERT_EQ(rep.parts.size(), 3u);
  // RFC 6533 utf-8-addr-xtext: non-ASCII, '+', '=' and '\' as \x{HEX}.
  EXPECT_EQ(get(groups(rep.parts[1].body)[1], "Final-Recipient"),
            "utf-8; j\\x{F6}rg\\x{2B}a\\x{3D}b\\x{5C}c@b\\x{FC}cher.example");
  for (char c : rep.parts[1].body) EXPECT_LT(static_cast<unsigned char>(c), 0x80);
  // People read the address as it is, in the 8-bit text part.
  EXPECT_NE(rep.parts[0].body.find("<j\xC3\xB6rg+a=b\\c@b\xC3\xBC"
                                   "cher.example>"),
            std::string::npos);
  EXPECT_EQ(get(rep.parts[0].headers, "Content-Transfer-Encoding"), "8bit");
  EXPECT_EQ(get(rep.headers, "Content-Transfer-Encoding"), "8bit");
  EXPECT_EQ(count(rep.parts[1].headers, "Content-Transfer-Encoding"), 0u);
}

TEST(dsn, astral_and_ill_formed_utf8_in_an_address) {
  dsn_recipient r = bob();
  r.address = "\xF0\x9F\x93\xAB\xFF\xC3@x.example";  // U+1F4EB, then two bad octets
  const report rep = split(compose_dsn(request_with({r})));
  ASSERT_EQ(rep.parts.size(), 3u);
  EXPECT_EQ(get(groups(rep.parts[1].body)[1], "Final-Recipient"),
            "utf-8; \\x{1F4EB}\\x{FFFD}\\x{FFFD}@x.example");
}

TEST(dsn, a_remote_reply_cannot_add_fields_or_lines) {
  dsn_recipient r = bob();
  r.diagnostic =
      "550-5.1.1 first line\r\n550 5.1.1 second\rthird\nX-Injected: yes\x01\x7f\t end\r\n";
  r.explanation = "said:\r\n\r\n--fake-boundary\r\nContent-Type: text/html\r\n\r\n<b>hi</b>";
  r.remote_mta = "mx1.example.net\r\nX-Evil: 1";
  const std::string m = compose_dsn(request_with({r}));
  ASSERT_TRUE(well_formed(m));
  EXPECT_EQ(m.find("\r\nX-Injected"), std::string::npos);
  EXPECT_EQ(m.find("\r\nX-Evil"), std::string::npos);
  EXPECT_EQ(m.find("\r\n--fake-boundary"), std::string::npos);
  EXPECT_EQ(m.find("\r\nContent-Type: text/html"), std::string::npos);
  const report rep = split(m);
  ASSERT_EQ(rep.parts.size(), 3u);
  const fields g = groups(rep.parts[1].body)[1];
  EXPECT_EQ(get(g, "Diagnostic-Code"),
            "smtp; 550-5.1.1 first line 550 5.1.1 second third X-Injected: yes end");
  EXPECT_EQ(get(g, "Remote-MTA"), "dns; mx1.example.netX-Evil:1");
  EXPECT_NE(rep.parts[0].body.find("said: --fake-boundary Content-Type: text/html <b>hi</b>"),
            std::string::npos);
}

TEST(dsn, long_replies_are_folded_between_words) {
  std::string reply = "550 5.7.1";
  for (int i = 0; i < 500; ++i) reply += " word" + std::to_string(i);
  dsn_recipient r = bob();
  r.diagnostic = reply;
  r.explanation = reply;
  const std::string m = compose_dsn(request_with({r}));
  ASSERT_TRUE(well_formed(m));
  const report rep = split(m);
  ASSERT_EQ(rep.parts.size(), 3u);
  // Unfolding gives the reply back unchanged.
  EXPECT_EQ(get(groups(rep.parts[1].body)[1], "Diagnostic-Code"), "smtp; " + reply);
  // Folded near 78 columns, not just under 998.
  const std::size_t at = m.find("Diagnostic-Code:");
  const std::size_t eol = m.find("\r\n", at);
  EXPECT_LE(eol - at, 78u);
  EXPECT_EQ(m.substr(eol, 3), "\r\n ");
  // The text part wraps too, with the explanation indented.
  const std::string& text = rep.parts[0].body;
  EXPECT_NE(text.find("\r\n    550 5.7.1 word0 word1"), std::string::npos);
  EXPECT_NE(text.find("\r\n    word"), std::string::npos);
}

TEST(dsn, a_word_longer_than_a_line_is_cut) {
  dsn_recipient r = bob();
  r.diagnostic = "550 " + std::string(5000, 'x');
  r.explanation = std::string(3000, 'y');
  r.address = std::string(2000, 'a') + "@example.net";
  dsn_request req = request_with({r});
  req.original_sender = std::string(1500, 's') + "@example.com";
  const std::string m = compose_dsn(req);
  ASSERT_TRUE(well_formed(m));
  const report rep = split(m);
  ASSERT_EQ(rep.parts.size(), 3u);
  // The cut costs one inserted space per piece and nothing else.
  std::string diagnostic = get(groups(rep.parts[1].body)[1], "Diagnostic-Code");
  std::erase(diagnostic, ' ');
  EXPECT_EQ(diagnostic, "smtp;550" + std::string(5000, 'x'));
}

TEST(dsn, boundary_never_occurs_in_the_original) {
  const std::string first = split(compose_dsn(request_with({bob()}))).boundary;
  ASSERT_FALSE(first.empty());
  // Also plant the plain second candidate: the salted one steps over it.
  const std::string second_plain = first.substr(0, first.size() - 1) + "1";
  const std::string original = "X-Trap2: --" + second_plain + "\r\nX-Trap: " + first + "\r\n" +
                               std::string(original_message);
  dsn_request req = request_with({bob()});
  req.original = original;
  const std::string m = compose_dsn(req);
  ASSERT_TRUE(well_formed(m));
  const report rep = split(m);
  EXPECT_NE(rep.boundary, first);
  EXPECT_EQ(original.find(rep.boundary), std::string::npos);
  ASSERT_EQ(rep.parts.size(), 3u);
  EXPECT_TRUE(rep.closed);
  EXPECT_NE(rep.parts[2].body.find("X-Trap: " + first), std::string::npos);
}

TEST(dsn, boundary_never_occurs_in_remote_text) {
  const std::string first = split(compose_dsn(request_with({bob()}))).boundary;
  dsn_recipient r = bob();
  r.diagnostic = "550 --" + first;
  r.explanation = "said --" + first + "--";
  const std::string m = compose_dsn(request_with({r}));
  ASSERT_TRUE(well_formed(m));
  const report rep = split(m);
  EXPECT_NE(rep.boundary, first);
  ASSERT_EQ(rep.parts.size(), 3u);
  EXPECT_EQ(get(groups(rep.parts[1].body)[1], "Diagnostic-Code"), "smtp; 550 --" + first);
}

TEST(dsn, original_without_separator_is_included_whole) {
  dsn_request req = request_with({bob()});
  req.original = "Subject: no body\r\nFrom: a@example.com";  // no empty line, no final CRLF
  const std::string m = compose_dsn(req);
  ASSERT_TRUE(well_formed(m));
  const report rep = split(m);
  ASSERT_EQ(rep.parts.size(), 3u);
  EXPECT_EQ(rep.parts[2].body, "Subject: no body\r\nFrom: a@example.com\r\n");

  req.original = "";
  const report empty = split(compose_dsn(req));
  ASSERT_EQ(empty.parts.size(), 3u);
  EXPECT_EQ(empty.parts[2].body, "");
}

TEST(dsn, header_block_is_cut_to_sixty_four_ki_b_at_a_line_boundary) {
  std::string original;
  for (int i = 0; original.size() < 200 * 1024; ++i) {
    original += "X-Filler-" + std::to_string(i) + ": " + std::string(90, 'f') + "\r\n";
  }
  dsn_request req = request_with({bob()});
  req.original = original;  // all header, no separator
  const std::string m = compose_dsn(req);
  ASSERT_TRUE(well_formed(m));
  const report rep = split(m);
  ASSERT_EQ(rep.parts.size(), 3u);
  const std::string& headers = rep.parts[2].body;
  EXPECT_LE(headers.size(), 64u * 1024);
  EXPECT_GT(headers.size(), 63u * 1024);
  EXPECT_TRUE(headers.ends_with(std::string(90, 'f') + "\r\n"));
  EXPECT_EQ(original.substr(0, headers.size()), headers);
}

TEST(dsn, bare_line_ends_and_long_lines_in_the_original_are_repaired) {
  const std::string original = "Subject: lf\nX-Cr: cr\rX-Nul: a\0b\r\nX-Long: "s +
                               std::string(3000, 'L') + "\r\n\r\nbody\n" + std::string(2500, 'B') +
                               "\r\n";
  dsn_request req = request_with({bob()});
  req.original = std::string_view(original.data(), original.size());
  for (bool body : {false, true}) {
    req.include_body = body;
    const std::string m = compose_dsn(req);
    ASSERT_TRUE(well_formed(m)) << "include_body " << body;
    const report rep = split(m);
    ASSERT_EQ(rep.parts.size(), 3u);
    const fields f = parse_fields(rep.parts[2].body);
    EXPECT_EQ(get(f, "Subject"), "lf");
    EXPECT_EQ(get(f, "X-Cr"), "cr");
    EXPECT_EQ(get(f, "X-Nul"), "a b");
    // The long field is folded: it stays one field, its letters all there.
    std::string lng = get(f, "X-Long");
    std::erase(lng, ' ');
    EXPECT_EQ(lng, std::string(3000, 'L'));
    if (body) {
      // Long body lines are broken into lines of their own.
      const std::string& b = rep.parts[2].body;
      EXPECT_NE(b.find("\r\n\r\nbody\r\n" + std::string(998, 'B') + "\r\n" + std::string(998, 'B') +
                       "\r\n" + std::string(504, 'B') + "\r\n"),
                std::string::npos);
    }
  }
}

TEST(dsn, include_body_attaches_the_whole_message) {
  dsn_request req = request_with({bob()});
  req.include_body = true;
  const std::string m = compose_dsn(req);
  ASSERT_TRUE(well_formed(m));
  const report rep = split(m);
  ASSERT_EQ(rep.parts.size(), 3u);
  EXPECT_EQ(get(rep.parts[2].headers, "Content-Type"), "message/rfc822");
  EXPECT_EQ(rep.parts[2].body, original_message);
  EXPECT_NE(rep.parts[0].body.find("Your message is attached."), std::string::npos);
}

TEST(dsn, eight_bit_original_is_marked_and_typed) {
  dsn_request req = request_with({bob()});
  // SMTPUTF8 headers: message/global-headers (RFC 6533 6.3).
  req.original =
      "Subject: gr\xC3\xBC\xC3\x9F"
      "e\r\n\r\nbody\r\n";
  report rep = split(compose_dsn(req));
  ASSERT_EQ(rep.parts.size(), 3u);
  EXPECT_EQ(get(rep.parts[2].headers, "Content-Type"), "message/global-headers");
  EXPECT_EQ(get(rep.parts[2].headers, "Content-Transfer-Encoding"), "8bit");
  EXPECT_EQ(get(rep.headers, "Content-Transfer-Encoding"), "8bit");
  req.include_body = true;
  rep = split(compose_dsn(req));
  ASSERT_EQ(rep.parts.size(), 3u);
  EXPECT_EQ(get(rep.parts[2].headers, "Content-Type"), "message/global");

  // ASCII headers with an 8-bit body: message/rfc822 in 8bit.
  req.original =
      "Subject: plain\r\n\r\nb\xC3\xBC"
      "ro\r\n";
  rep = split(compose_dsn(req));
  ASSERT_EQ(rep.parts.size(), 3u);
  EXPECT_EQ(get(rep.parts[2].headers, "Content-Type"), "message/rfc822");
  EXPECT_EQ(get(rep.parts[2].headers, "Content-Transfer-Encoding"), "8bit");
  req.include_body = false;
  rep = split(compose_dsn(req));
  ASSERT_EQ(rep.parts.size(), 3u);
  EXPECT_EQ(get(rep.parts[2].headers, "Content-Type"), "text/rfc822-headers");
  EXPECT_EQ(get(rep.headers, "Content-Transfer-Encoding"), "<absent>");
}

TEST(dsn, malformed_status_falls_back_to_the_action_class) {
  dsn_recipient failed = bob();
  dsn_recipient delayed = carol_delayed();
  for (const std::string bad :
       {"", "550", "5.1", "5.1.1 x", "3.1.1", "5.1234.1", "5..1", "5.1.1."}) {
    failed.status = bad;
    delayed.status = bad;
    const report rep = split(compose_dsn(request_with({failed, delayed})));
    ASSERT_EQ(rep.parts.size(), 3u);
    const std::vector<fields> g = groups(rep.parts[1].body);
    ASSERT_EQ(g.size(), 3u);
    EXPECT_EQ(get(g[1], "Status"), "5.0.0") << bad;
    EXPECT_EQ(get(g[2], "Status"), "4.0.0") << bad;
  }
  failed.status = "2.123.45";
  EXPECT_EQ(get(groups(split(compose_dsn(request_with({failed}))).parts[1].body)[1], "Status"),
            "2.123.45");
}

TEST(dsn, dates_out_of_range_are_clamped) {
  dsn_recipient r = carol_delayed();
  r.last_attempt = std::numeric_limits<std::int64_t>::min();
  r.will_retry_until = std::numeric_limits<std::int64_t>::max();
  dsn_request req = request_with({r});
  req.now = std::numeric_limits<std::int64_t>::max();
  req.arrival = -5;
  const report rep = split(compose_dsn(req));
  EXPECT_EQ(get(rep.headers, "Date"), "Fri, 31 Dec 9999 23:59:59 +0000");
  ASSERT_EQ(rep.parts.size(), 3u);
  const std::vector<fields> g = groups(rep.parts[1].body);
  EXPECT_EQ(get(g[0], "Arrival-Date"), "Thu, 01 Jan 1970 00:00:00 +0000");
  EXPECT_EQ(get(g[1], "Will-Retry-Until"), "Fri, 31 Dec 9999 23:59:59 +0000");
}

// Random octets in every field and in the original: the result always parses
// into three parts and keeps CRLF-only lines of at most 998 octets.
TEST(dsn, random_input_keeps_the_invariants) {
  std::mt19937 rng(20240102);
  const auto junk = [&](std::size_t max) {
    static constexpr std::string_view alphabet =
        "\r\n\r\n \t\0\x01\x7f\x80\xC3\xBC\xFF-=_.:;<>\""sv;
    std::string s(std::uniform_int_distribution<std::size_t>(0, max)(rng), ' ');
    for (char& c : s) {
      const auto k = std::uniform_int_distribution<int>(0, 9)(rng);
      c = k < 4 ? alphabet[std::uniform_int_distribution<std::size_t>(0, alphabet.size() - 1)(rng)]
                : static_cast<char>(std::uniform_int_distribution<int>(0, 255)(rng));
    }
    return s;
  };
  for (int i = 0; i < 300; ++i) {
    std::vector<dsn_recipient> recipients;
    const int n = std::uniform_int_distribution<int>(1, 3)(rng);
    for (int k = 0; k < n; ++k) {
      dsn_recipient r;
      r.address = junk(300);
      r.action = k % 2 ? dsn_action::delayed : dsn_action::failed;
      r.status = junk(8);
      r.remote_mta = junk(40);
      r.diagnostic = junk(3000);
      r.explanation = junk(3000);
      r.last_attempt = static_cast<std::int64_t>(rng());
      r.will_retry_until = static_cast<std::int64_t>(rng());
      recipients.push_back(std::move(r));
    }
    dsn_request req = request_with(std::move(recipients));
    req.reporting_mta = junk(30);
    req.queue_id = junk(30);
    req.original_sender = junk(300);
    req.message_id = junk(100);
    const std::string original = junk(6000);
    req.original = original;
    req.include_body = i % 2 == 1;
    const std::string m = compose_dsn(req);
    ASSERT_TRUE(well_formed(m)) << "iteration " << i;
    const report rep = split(m);
    ASSERT_EQ(rep.parts.size(), 3u) << "iteration " << i;
    EXPECT_TRUE(rep.closed);
    EXPECT_EQ(groups(rep.parts[1].body).size(), static_cast<std::size_t>(n) + 1);
    for (char c : rep.parts[1].body) ASSERT_LT(static_cast<unsigned char>(c), 0x80);
  }
}

}  // namespace
}  // namespace smtp

namespace smtp {
namespace {

// RFC 3461 6.3 / RFC 3464 2.2.1, 2.3.1: ENVID and ORCPT are echoed.
TEST(dsn, envelope_id_and_original_recipient_are_echoed) {
  dsn_recipient b = bob();
  b.original_recipient = "rfc822;Bob.Original@example.net";
  dsn_request req = request_with({b, carol_delayed()});
  req.envelope_id = "QQ314159 batch+7";
  const std::string m = compose_dsn(req);
  ASSERT_TRUE(well_formed(m));
  const report r = split(m);
  ASSERT_EQ(r.parts.size(), 3u);
  const std::vector<fields> g = groups(r.parts[1].body);
  ASSERT_EQ(g.size(), 3u);
  // Original-Envelope-Id opens the per-message fields (RFC 3464 2.2).
  ASSERT_FALSE(g[0].empty());
  EXPECT_EQ(g[0][0], (std::pair<std::string, std::string>{"Original-Envelope-Id",
                                                           "QQ314159 batch+7"}));
  // Original-Recipient opens the recipient's group, before Final-Recipient.
  ASSERT_GE(g[1].size(), 2u);
  EXPECT_EQ(g[1][0], (std::pair<std::string, std::string>{"Original-Recipient",
                                                           "rfc822; Bob.Original@example.net"}));
  EXPECT_EQ(g[1][1].first, "Final-Recipient");
  // A recipient without ORCPT gets no Original-Recipient.
  EXPECT_EQ(count(g[2], "Original-Recipient"), 0u);
}

TEST(dsn, without_envid_there_is_no_original_envelope_id) {
  const report r = split(compose_dsn(request_with({bob()})));
  ASSERT_EQ(r.parts.size(), 3u);
  EXPECT_EQ(r.parts[1].body.find("Original-Envelope-Id"), std::string::npos);
  EXPECT_EQ(r.parts[1].body.find("Original-Recipient"), std::string::npos);
}

// RFC 3461 5.2.2: NOTIFY=SUCCESS and a next hop without DSN give "relayed".
TEST(dsn, relayed_report_is_a_success_notice) {
  dsn_recipient d;
  d.address = "dave@example.net";
  d.original_recipient = "rfc822;dave@example.net";
  d.action = dsn_action::relayed;
  d.status = "2.0.0";
  d.remote_mta = "mx1.example.net";
  d.diagnostic = "250 2.0.0 Ok: queued as 4F2";
  d.explanation = "host mx1.example.net[192.0.2.1] said: 250 2.0.0 Ok: queued as 4F2";
  const std::string m = compose_dsn(request_with({d}));
  ASSERT_TRUE(well_formed(m));
  const report r = split(m);
  EXPECT_EQ(get(r.headers, "Subject"), "Relayed Mail Delivery Report");
  ASSERT_EQ(r.parts.size(), 3u);
  const std::string& text = r.parts[0].body;
  EXPECT_NE(text.find("was relayed"), std::string::npos);
  EXPECT_EQ(text.find("could not be delivered"), std::string::npos);
  EXPECT_NE(text.find("<dave@example.net>"), std::string::npos);
  const std::vector<fields> g = groups(r.parts[1].body);
  ASSERT_EQ(g.size(), 2u);
  EXPECT_EQ(get(g[1], "Action"), "relayed");
  EXPECT_EQ(get(g[1], "Status"), "2.0.0");
  EXPECT_EQ(get(g[1], "Remote-MTA"), "dns; mx1.example.net");
  EXPECT_EQ(count(g[1], "Will-Retry-Until"), 0u);
  // A missing status reads as success, not as failure.
  d.status.clear();
  const report r2 = split(compose_dsn(request_with({d})));
  ASSERT_EQ(r2.parts.size(), 3u);
  EXPECT_EQ(get(groups(r2.parts[1].body)[1], "Status"), "2.0.0");
}

// Failure wins the subject over success in one report.
TEST(dsn, mixed_failed_and_relayed_report_says_failed) {
  dsn_recipient d = bob();
  d.address = "dave@example.net";
  d.action = dsn_action::relayed;
  d.status = "2.0.0";
  const report r = split(compose_dsn(request_with({d, bob()})));
  EXPECT_EQ(get(r.headers, "Subject"), "Undelivered Mail Returned to Sender");
}

}  // namespace
}  // namespace smtp
