// smtp::server_session dialogues: every reply the session sends, pipelining,
// limits, relay control, smuggling, shutdown and timeouts. Each dialogue also
// runs through parsegrind: the same input split at every byte position and fed
// byte by byte must give exactly the same output, events and messages.
#include "smtp/server_session.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <tuple>
#include <vector>

namespace smtp {
namespace {

constexpr std::int64_t fixed_now = 1700000000;  // Tue, 14 Nov 2023 22:13:20 +0000

struct setup {
  std::size_t max_message_size = 10000;
  std::size_t max_recipients = 3;
  std::size_t max_line_length = 1000;
  bool relay_allowed = true;
  std::string client_ip = "192.0.2.7";
  std::string client_hostname = "client.example";
  bool use_id_generator = true;
  // What the spool answers for the n-th message (0-based): nullopt = queued.
  std::function<std::optional<reply>(std::size_t)> spool = [](std::size_t) { return std::nullopt; };
};

auto fields(const envelope& e) {
  return std::tie(e.sender, e.recipients, e.body, e.smtputf8, e.declared_size, e.client_ip, e.helo);
}

struct message_record {
  std::string id;
  envelope env;
  std::string data;
  bool operator==(const message_record& o) const {
    return id == o.id && fields(env) == fields(o.env) && data == o.data;
  }
};

// Everything observable from one run of a dialogue.
struct transcript {
  std::string output;               // all replies, in order
  std::vector<std::string> events;  // "message ID", "close"
  std::vector<message_record> messages;
  std::vector<std::string> rejects;  // on_reject: "reply | command"
  std::size_t consumed = 0;
  bool operator==(const transcript&) const = default;
};

std::ostream& operator<<(std::ostream& os, const transcript& t) {
  os << "output:\n" << t.output << "events:";
  for (const auto& e : t.events) os << " [" << e << "]";
  return os << "\nconsumed " << t.consumed;
}

session_options make_options(const setup& s, transcript& t, int& next_id) {
  session_options o;
  o.hostname = "mx.test";
  o.max_message_size = s.max_message_size;
  o.max_recipients = s.max_recipients;
  o.max_line_length = s.max_line_length;
  if (s.use_id_generator) o.new_id = [&next_id] { return "ID" + std::to_string(++next_id); };
  o.now = [] { return fixed_now; };
  o.on_reject = [&t](const reply& r, std::string_view command) {
    t.rejects.push_back(r.to_string() + " | " + std::string(command));
  };
  return o;
}

// Runs the dialogue with `input` cut into the given chunks.
transcript run_chunks(const setup& s, const std::vector<std::string_view>& chunks) {
  transcript t;
  int next_id = 0;
  server_session session(make_options(s, t, next_id),
                         client_info{s.client_ip, s.client_hostname, s.relay_allowed});
  session.start();
  t.output += session.output();
  session.clear_output();
  bool closed = false;
  for (std::string_view chunk : chunks) {
    std::string_view rest = chunk;
    while (!closed) {
      const auto step = session.feed(rest);
      EXPECT_LE(step.consumed, rest.size());
      rest.remove_prefix(step.consumed);
      t.consumed += step.consumed;
      t.output += session.output();
      session.clear_output();
      if (step.what == server_session::event::need_more) {
        EXPECT_TRUE(rest.empty());
        break;
      }
      if (step.what == server_session::event::close) {
        t.events.push_back("close");
        closed = true;
        break;
      }
      // event::message
      EXPECT_TRUE(session.in_transaction());
      message_record m{session.message_id(), session.message_envelope(), session.take_message()};
      t.events.push_back("message " + m.id);
      const auto refusal = s.spool(t.messages.size());
      t.messages.push_back(std::move(m));
      if (refusal) {
        session.message_failed(*refusal);
      } else {
        session.message_queued();
      }
      EXPECT_FALSE(session.in_transaction());
      t.output += session.output();
      session.clear_output();
    }
    if (closed) break;
  }
  return t;
}

// parsegrind: one buffer, every two-way split and byte by byte must all agree.
transcript run(const std::string& input, const setup& s = {}) {
  const transcript whole = run_chunks(s, {input});
  for (std::size_t cut = 0; cut <= input.size(); ++cut) {
    const std::string_view in = input;
    const transcript split = run_chunks(s, {in.substr(0, cut), in.substr(cut)});
    EXPECT_EQ(split, whole) << "split at " << cut;
    if (split != whole) break;
  }
  std::vector<std::string_view> bytes;
  for (std::size_t i = 0; i < input.size(); ++i)
    bytes.push_back(std::string_view(input).substr(i, 1));
  EXPECT_EQ(run_chunks(s, bytes), whole) << "byte by byte";
  return whole;
}

// The final reply lines (code + enhanced code) in order, e.g. "250 2.1.0" or "220".
std::vector<std::string> codes(const std::string& output) {
  std::vector<std::string> out;
  std::size_t pos = 0;
  while (pos < output.size()) {
    const std::size_t eol = output.find("\r\n", pos);
    EXPECT_NE(eol, std::string::npos) << "reply not CRLF-terminated";
    if (eol == std::string::npos) break;
    const std::string line = output.substr(pos, eol - pos);
    pos = eol + 2;
    EXPECT_GE(line.size(), 3u);
    if (line.size() > 3 && line[3] == '-') continue;
    std::string code = line.substr(0, 3);
    // An enhanced code follows when the text starts with "d.d".
    if (line.size() > 8 && line[5] == '.' && (line[4] == '2' || line[4] == '4' || line[4] == '5')) {
      code += " " + line.substr(4, line.find(' ', 4) - 4);
    }
    out.push_back(code);
  }
  return out;
}

using codes_t = std::vector<std::string>;

const std::string ehlo = "EHLO client.example\r\n";
const std::string mail = "MAIL FROM:<alice@example.org>\r\n";
const std::string rcpt = "RCPT TO:<bob@dest.example>\r\n";
const std::string body = "Subject: test\r\n\r\nHello.\r\n.\r\n";

TEST(ServerSession, GreetingAndFullTransaction) {
  const transcript t = run(ehlo + mail + rcpt + "DATA\r\n" + body + "QUIT\r\n");
  EXPECT_EQ(t.output,
            "220 mx.test ESMTP relayd\r\n"
            "250-mx.test\r\n250-PIPELINING\r\n250-SIZE 10000\r\n250-8BITMIME\r\n"
            "250-ENHANCEDSTATUSCODES\r\n250 SMTPUTF8\r\n"
            "250 2.1.0 Ok\r\n"
            "250 2.1.5 Ok\r\n"
            "354 End data with <CR><LF>.<CR><LF>\r\n"
            "250 2.0.0 Ok: queued as ID1\r\n"
            "221 2.0.0 Bye\r\n");
  EXPECT_EQ(t.events, (std::vector<std::string>{"message ID1", "close"}));
  ASSERT_EQ(t.messages.size(), 1u);
  const message_record& m = t.messages[0];
  EXPECT_EQ(m.env.sender, "alice@example.org");
  EXPECT_EQ(m.env.recipients, (std::vector<std::string>{"bob@dest.example"}));
  EXPECT_EQ(m.env.helo, "client.example");
  EXPECT_EQ(m.env.client_ip, "192.0.2.7");
  EXPECT_EQ(m.env.body, body_type::seven_bit);
  EXPECT_FALSE(m.env.smtputf8);
  EXPECT_EQ(m.data,
            "Received: from client.example (client.example [192.0.2.7])\r\n"
            "\tby mx.test (relayd) with ESMTP id ID1\r\n"
            "\tfor <bob@dest.example>; Tue, 14 Nov 2023 22:13:20 +0000\r\n"
            "Subject: test\r\n"
            "Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n"
            "Message-ID: <ID1@mx.test>\r\n"
            "\r\nHello.\r\n");
  EXPECT_TRUE(t.rejects.empty());
}

TEST(ServerSession, HeloDialogueSaysSmtpInReceived) {
  const transcript t = run("HELO old.example\r\n" + mail + rcpt + "DATA\r\n" +
                           "Date: x\r\nMessage-ID: <m@x>\r\n\r\nb\r\n.\r\n");
  EXPECT_EQ(codes(t.output), (codes_t{"220", "250", "250 2.1.0", "250 2.1.5", "354", "250 2.0.0"}));
  EXPECT_NE(t.output.find("\r\n250 mx.test\r\n"), std::string::npos);
  ASSERT_EQ(t.messages.size(), 1u);
  EXPECT_EQ(t.messages[0].data,
            "Received: from old.example (client.example [192.0.2.7])\r\n"
            "\tby mx.test (relayd) with SMTP id ID1\r\n"
            "\tfor <bob@dest.example>; Tue, 14 Nov 2023 22:13:20 +0000\r\n"
            "Date: x\r\nMessage-ID: <m@x>\r\n\r\nb\r\n");
}

TEST(ServerSession, PipelinedCommandsAreAnsweredInOrder) {
  const transcript t =
      run(ehlo + mail + rcpt + "RCPT TO:<carol@dest.example>\r\nNOOP\r\nDATA\r\n" + body +
          "RSET\r\n" + mail + "RCPT TO:<dave@dest.example>\r\nDATA\r\n" + "x\r\n.\r\nQUIT\r\n");
  EXPECT_EQ(codes(t.output), (codes_t{"220", "250", "250 2.1.0", "250 2.1.5", "250 2.1.5",
                                      "250 2.0.0", "354", "250 2.0.0", "250 2.0.0", "250 2.1.0",
                                      "250 2.1.5", "354", "250 2.0.0", "221 2.0.0"}));
  EXPECT_EQ(t.events, (std::vector<std::string>{"message ID1", "message ID2", "close"}));
  ASSERT_EQ(t.messages.size(), 2u);
  EXPECT_EQ(t.messages[0].env.recipients,
            (std::vector<std::string>{"bob@dest.example", "carol@dest.example"}));
  // Two recipients: no "for" clause.
  EXPECT_EQ(t.messages[0].data.find("\tfor <"), std::string::npos);
  EXPECT_EQ(t.messages[1].env.recipients, (std::vector<std::string>{"dave@dest.example"}));
  EXPECT_NE(t.output.find("250 2.0.0 Ok: queued as ID2\r\n"), std::string::npos);
}

TEST(ServerSession, MailBeforeHeloIsABadSequence) {
  const transcript t = run(mail + "RCPT TO:<b@c.d>\r\nDATA\r\n");
  EXPECT_EQ(codes(t.output), (codes_t{"220", "503 5.5.1", "503 5.5.1", "503 5.5.1"}));
  EXPECT_NE(t.output.find("503 5.5.1 Bad sequence of commands: send EHLO or HELO first\r\n"),
            std::string::npos);
}

TEST(ServerSession, SequenceErrors) {
  const transcript t = run(ehlo + rcpt + "DATA\r\n" + mail + mail + "DATA\r\n");
  EXPECT_EQ(codes(t.output), (codes_t{"220", "250", "503 5.5.1", "503 5.5.1", "250 2.1.0",
                                      "503 5.5.1", "503 5.5.1"}));
  EXPECT_NE(t.output.find("503 5.5.1 Bad sequence of commands: send MAIL first\r\n"),
            std::string::npos);
  EXPECT_NE(t.output.find("503 5.5.1 Bad sequence of commands: MAIL already given\r\n"),
            std::string::npos);
  EXPECT_NE(t.output.find("503 5.5.1 Bad sequence of commands: send RCPT first\r\n"),
            std::string::npos);
}

TEST(ServerSession, DataAfterOnlyRefusedRecipientsHasNoValidRecipients) {
  const transcript t = run(ehlo + mail + "RCPT TO:<bad address>\r\nDATA\r\n");
  EXPECT_EQ(codes(t.output), (codes_t{"220", "250", "250 2.1.0", "501 5.1.3", "554 5.5.1"}));
  EXPECT_NE(t.output.find("554 5.5.1 No valid recipients\r\n"), std::string::npos);
}

TEST(ServerSession, RsetNoopVrfyHelp) {
  const transcript t = run(ehlo + mail + rcpt + "RSET\r\n" + rcpt + "NOOP\r\nVRFY bob\r\nHELP\r\n");
  EXPECT_EQ(codes(t.output), (codes_t{"220", "250", "250 2.1.0", "250 2.1.5", "250 2.0.0",
                                      "503 5.5.1", "250 2.0.0", "252 2.5.0", "214 2.0.0"}));
}

TEST(ServerSession, CommandsWorkBeforeHelo) {
  const transcript t = run("NOOP\r\nRSET\r\nVRFY x\r\nHELP\r\nQUIT\r\n");
  EXPECT_EQ(codes(t.output),
            (codes_t{"220", "250 2.0.0", "250 2.0.0", "252 2.5.0", "214 2.0.0", "221 2.0.0"}));
  EXPECT_EQ(t.events, (std::vector<std::string>{"close"}));
}

TEST(ServerSession, QuitClosesAndLeavesTheRestUnread) {
  const std::string input = ehlo + "QUIT\r\nNOOP\r\n";
  const transcript t = run(input);
  EXPECT_EQ(codes(t.output), (codes_t{"220", "250", "221 2.0.0"}));
  EXPECT_EQ(t.events, (std::vector<std::string>{"close"}));
  EXPECT_EQ(t.consumed, input.find("NOOP"));
}

TEST(ServerSession, UnknownAndUnimplementedCommands) {
  const transcript t =
      run(ehlo + "EXPN list\r\nSTARTTLS\r\nAUTH PLAIN AHVzZXIAcGFzcw==\r\nBDAT 10 LAST\r\n");
  EXPECT_EQ(codes(t.output),
            (codes_t{"220", "250", "500 5.5.1", "502 5.5.1", "502 5.5.1", "502 5.5.1"}));
  // The AUTH initial response (a password) never reaches the log.
  EXPECT_EQ(t.rejects, (std::vector<std::string>{
                           "500 5.5.1 Command unrecognized | EXPN list",
                           "502 5.5.1 Command not implemented | STARTTLS",
                           "502 5.5.1 Command not implemented | AUTH PLAIN",
                           "502 5.5.1 Command not implemented | BDAT 10 LAST",
                       }));
}

TEST(ServerSession, SyntaxErrorsGet501WithTheirReason) {
  const transcript t = run("EHLO\r\n" + ehlo + "MAIL FROM:<bad@@example.org>\r\n" +
                           "MAIL FROM:alice@example.org\r\n" + "MAIL FROM:<a@b.c> SIZE=x\r\n" +
                           "MAIL FROM:<a@b.c> RET=FULL\r\n" + "DATA now\r\n" + mail +
                           "RCPT TO:<bob@dest..example>\r\n" + "RCPT TO:bob@dest.example\r\n" +
                           "VRFY\r\n" + "NO\001OP\r\n");
  EXPECT_EQ(codes(t.output), (codes_t{"220", "501 5.5.4", "250", "501 5.1.7", "501 5.5.4",
                                      "501 5.5.4", "555 5.5.4", "501 5.5.4", "250 2.1.0",
                                      "501 5.1.3", "501 5.5.4", "501 5.5.4", "500 5.5.2"}));
  EXPECT_NE(t.output.find("501 5.1.7 Bad sender address syntax\r\n"), std::string::npos);
  EXPECT_NE(t.output.find("501 5.1.3 Bad recipient address syntax\r\n"), std::string::npos);
}

TEST(ServerSession, SizeParameterOverTheLimitIsRefusedAtMail) {
  setup s;
  s.max_message_size = 100;
  const transcript t =
      run(ehlo + "MAIL FROM:<a@b.c> SIZE=101\r\nMAIL FROM:<a@b.c> SIZE=100\r\n", s);
  EXPECT_EQ(codes(t.output), (codes_t{"220", "250", "552 5.3.4", "250 2.1.0"}));
  EXPECT_NE(t.output.find("250-SIZE 100\r\n"), std::string::npos);
  EXPECT_NE(t.output.find("552 5.3.4 Message size exceeds fixed limit\r\n"), std::string::npos);
}

TEST(ServerSession, OversizeMessageWithoutSizeIsRefusedAfterData) {
  setup s;
  s.max_message_size = 20;
  const transcript t = run(ehlo + mail + rcpt + "DATA\r\n" + "0123456789\r\n0123456789\r\n.\r\n" +
                               mail + rcpt + "DATA\r\nsmall\r\n.\r\n",
                           s);
  EXPECT_EQ(codes(t.output), (codes_t{"220", "250", "250 2.1.0", "250 2.1.5", "354", "552 5.3.4",
                                      "250 2.1.0", "250 2.1.5", "354", "250 2.0.0"}));
  EXPECT_EQ(t.events, (std::vector<std::string>{"message ID1"}));
  ASSERT_EQ(t.messages.size(), 1u);
  EXPECT_NE(t.messages[0].data.find("\r\nsmall\r\n"), std::string::npos);
  EXPECT_EQ(t.rejects, (std::vector<std::string>{"552 5.3.4 Message size exceeds fixed limit | "}));
}

TEST(ServerSession, MessageExactlyAtTheLimitIsAccepted) {
  setup s;
  s.max_message_size = 24;
  const transcript t = run(ehlo + mail + rcpt + "DATA\r\n0123456789\r\n0123456789\r\n.\r\n", s);
  EXPECT_EQ(codes(t.output).back(), "250 2.0.0");
}

TEST(ServerSession, OverlongTextLineInDataIsRefused) {
  setup s;
  s.max_line_length = 20;
  const transcript t = run(ehlo + mail + rcpt + "DATA\r\n" + std::string(19, 'x') + "\r\n.\r\n" +
                               mail + rcpt + "DATA\r\n" + std::string(18, 'x') + "\r\n.\r\n",
                           s);
  EXPECT_EQ(codes(t.output), (codes_t{"220", "250", "250 2.1.0", "250 2.1.5", "354", "500 5.5.2",
                                      "250 2.1.0", "250 2.1.5", "354", "250 2.0.0"}));
  EXPECT_NE(t.output.find("500 5.5.2 Line too long in message; text lines are limited to 20 "
                          "octets\r\n"),
            std::string::npos);
}

TEST(ServerSession, TooManyRecipients) {
  const transcript t =
      run(ehlo + mail + "RCPT TO:<r1@d.example>\r\nRCPT TO:<r2@d.example>\r\n" +
          "RCPT TO:<r3@d.example>\r\nRCPT TO:<r4@d.example>\r\nDATA\r\nx\r\n.\r\n");
  EXPECT_EQ(codes(t.output), (codes_t{"220", "250", "250 2.1.0", "250 2.1.5", "250 2.1.5",
                                      "250 2.1.5", "452 4.5.3", "354", "250 2.0.0"}));
  EXPECT_NE(t.output.find("452 4.5.3 Too many recipients\r\n"), std::string::npos);
  ASSERT_EQ(t.messages.size(), 1u);
  EXPECT_EQ(t.messages[0].env.recipients.size(), 3u);
}

TEST(ServerSession, RelayDeniedForClientsOutsideMynetworks) {
  setup s;
  s.relay_allowed = false;
  const transcript t = run(ehlo + mail + rcpt + "DATA\r\nQUIT\r\n", s);
  EXPECT_EQ(codes(t.output),
            (codes_t{"220", "250", "250 2.1.0", "554 5.7.1", "554 5.5.1", "221 2.0.0"}));
  EXPECT_NE(t.output.find("554 5.7.1 Relay access denied\r\n"), std::string::npos);
  EXPECT_EQ(t.rejects[0], "554 5.7.1 Relay access denied | RCPT TO:<bob@dest.example>");
  EXPECT_TRUE(t.messages.empty());
}

TEST(ServerSession, PostmasterWithoutDomainIsNotDeliveredLocally) {
  const transcript t = run(ehlo + mail + "RCPT TO:<postmaster>\r\n");
  EXPECT_EQ(codes(t.output), (codes_t{"220", "250", "250 2.1.0", "550 5.1.1"}));
}

TEST(ServerSession, NullSenderAndParameters) {
  const transcript t = run(ehlo + "MAIL FROM:<> SIZE=50 BODY=8BITMIME\r\n" + rcpt +
                           "DATA\r\n\xc3\xa9t\xc3\xa9\r\n.\r\n");
  ASSERT_EQ(t.messages.size(), 1u);
  EXPECT_EQ(t.messages[0].env.sender, "");
  EXPECT_EQ(t.messages[0].env.body, body_type::eight_bit_mime);
  EXPECT_EQ(t.messages[0].env.declared_size, 50u);
}

TEST(ServerSession, NonAsciiAddressesNeedSmtputf8) {
  const std::string utf8_sender = "MAIL FROM:<j\xc3\xb6rg@example.org>";
  const std::string utf8_rcpt = "RCPT TO:<b\xc3\xb8@dest.example>\r\n";
  const transcript t = run(ehlo + utf8_sender + "\r\n" + mail + utf8_rcpt + "RSET\r\n" +
                           utf8_sender + " SMTPUTF8\r\n" + utf8_rcpt + "DATA\r\nx\r\n.\r\n");
  EXPECT_EQ(codes(t.output), (codes_t{"220", "250", "553 5.6.7", "250 2.1.0", "553 5.6.7",
                                      "250 2.0.0", "250 2.1.0", "250 2.1.5", "354", "250 2.0.0"}));
  ASSERT_EQ(t.messages.size(), 1u);
  EXPECT_TRUE(t.messages[0].env.smtputf8);
  EXPECT_EQ(t.messages[0].env.sender, "j\xc3\xb6rg@example.org");
  EXPECT_NE(t.messages[0].data.find("with UTF8SMTP id ID1"), std::string::npos);
}

TEST(ServerSession, DotStuffingIsRemovedInTheStoredMessage) {
  const transcript t = run(ehlo + mail + rcpt + "DATA\r\n\r\n..leading dot\r\n...\r\n.\r\n");
  ASSERT_EQ(t.messages.size(), 1u);
  const std::string& data = t.messages[0].data;
  EXPECT_TRUE(data.ends_with("\r\n\r\n.leading dot\r\n..\r\n")) << data;
}

TEST(ServerSession, CommandLineLimits) {
  const std::string long_line = "NOOP " + std::string(600, 'x') + "\r\n";
  const std::string max_line = "NOOP " + std::string(505, 'x') + "\r\n";  // 512 octets
  const transcript t = run(long_line + max_line + "NOOP\nNOOP\r\n");
  EXPECT_EQ(codes(t.output), (codes_t{"220", "500 5.5.2", "250 2.0.0", "500 5.5.2", "250 2.0.0"}));
  EXPECT_NE(t.output.find("500 5.5.2 Line too long\r\n"), std::string::npos);
  EXPECT_NE(t.output.find("500 5.5.2 Bare LF in command; lines must end with CRLF\r\n"),
            std::string::npos);
}

// The SMTP smuggling sequences: the session refuses at the first bare CR/LF and
// closes, so the smuggled MAIL FROM is never answered and no message is made.
void expect_smuggling_refused(const std::string& trick) {
  const std::string smuggled =
      "MAIL FROM:<evil@example.org>\r\nRCPT TO:<victim@dest.example>\r\n"
      "DATA\r\nSpoofed\r\n.\r\n";
  const std::string input =
      ehlo + mail + rcpt + "DATA\r\nSubject: hi\r\n\r\nhello" + trick + smuggled + ".\r\n";
  const transcript t = run(input);
  EXPECT_EQ(codes(t.output), (codes_t{"220", "250", "250 2.1.0", "250 2.1.5", "354", "550 5.6.0"}))
      << "trick " << testing::PrintToString(trick);
  EXPECT_TRUE(
      t.output.ends_with("550 5.6.0 Bare CR or LF in message; lines must end with CRLF\r\n"));
  EXPECT_EQ(t.events, (std::vector<std::string>{"close"}));
  EXPECT_TRUE(t.messages.empty());
  // Nothing past the trick is read (a bare CR shows only at the byte after it).
  EXPECT_LE(t.consumed, input.find("hello") + 5 + trick.size() + 1);
}

TEST(ServerSession, SmugglingLfDotLf) {
  expect_smuggling_refused("\n.\n");
}
TEST(ServerSession, SmugglingCrDotCr) {
  expect_smuggling_refused("\r.\r");
}
TEST(ServerSession, SmugglingLfDotCrlf) {
  expect_smuggling_refused("\n.\r\n");
}
TEST(ServerSession, SmugglingCrlfDotLf) {
  expect_smuggling_refused("\r\n.\n");
}
TEST(ServerSession, SmugglingCrlfDotCr) {
  expect_smuggling_refused("\r\n.\r");
}
TEST(ServerSession, SmugglingBareCrInText) {
  expect_smuggling_refused("\rx\r\n.\r\n");
}

TEST(ServerSession, TooManyErrorsCloseTheConnection) {
  std::string input = ehlo;
  for (int i = 0; i < 25; ++i) input += "BOGUS\r\n";
  const transcript t = run(input);
  codes_t expected{"220", "250"};
  for (int i = 0; i < 20; ++i) expected.push_back("500 5.5.1");
  expected.push_back("421 4.7.0");
  EXPECT_EQ(codes(t.output), expected);
  EXPECT_EQ(t.events, (std::vector<std::string>{"close"}));
  EXPECT_EQ(t.consumed, ehlo.size() + 20 * 7);
}

TEST(ServerSession, RecipientLimitRefusalsDoNotCountAsErrors) {
  std::string input = ehlo + mail;
  for (int i = 0; i < 30; ++i) input += "RCPT TO:<r" + std::to_string(i) + "@d.example>\r\n";
  const transcript t = run(input);
  EXPECT_TRUE(t.events.empty());
  EXPECT_EQ(codes(t.output).back(), "452 4.5.3");
}

TEST(ServerSession, SpoolFailureIsReportedAndTheSessionGoesOn) {
  setup s;
  s.spool = [](std::size_t n) -> std::optional<reply> {
    if (n == 0) return reply{452, "4.3.1", "Insufficient system storage"};
    return std::nullopt;
  };
  const transcript t =
      run(ehlo + mail + rcpt + "DATA\r\nx\r\n.\r\n" + mail + rcpt + "DATA\r\ny\r\n.\r\n", s);
  EXPECT_EQ(codes(t.output), (codes_t{"220", "250", "250 2.1.0", "250 2.1.5", "354", "452 4.3.1",
                                      "250 2.1.0", "250 2.1.5", "354", "250 2.0.0"}));
  EXPECT_EQ(t.events, (std::vector<std::string>{"message ID1", "message ID2"}));
  EXPECT_EQ(t.rejects, (std::vector<std::string>{"452 4.3.1 Insufficient system storage | "}));
}

TEST(ServerSession, EhloResetsTheTransaction) {
  const transcript t = run(ehlo + mail + rcpt + ehlo + "DATA\r\n");
  EXPECT_EQ(codes(t.output), (codes_t{"220", "250", "250 2.1.0", "250 2.1.5", "250", "503 5.5.1"}));
}

TEST(ServerSession, GeneratedIdWhenNoGenerator) {
  setup s;
  s.use_id_generator = false;
  // Not ground: generated IDs differ from run to run by design.
  const transcript t = run_chunks(s, {ehlo + mail + rcpt + "DATA\r\nx\r\n.\r\n"});
  ASSERT_EQ(t.messages.size(), 1u);
  const std::string& id = t.messages[0].id;
  EXPECT_FALSE(id.empty());
  EXPECT_NE(t.output.find("250 2.0.0 Ok: queued as " + id + "\r\n"), std::string::npos);
  EXPECT_NE(t.messages[0].data.find("Message-ID: <" + id + "@mx.test>"), std::string::npos);
}

// Direct API tests (no grinding) for shutdown, timeout and counters.

struct direct {
  std::vector<std::string> rejects;
  server_session session;
  explicit direct(bool relay = true)
      : session(
            [this] {
              session_options o;
              o.hostname = "mx.test";
              o.new_id = [] { return std::string("QID"); };
              o.now = [] { return fixed_now; };
              o.on_reject = [this](const reply& r, std::string_view) {
                rejects.push_back(r.to_string());
              };
              return o;
            }(),
            client_info{"127.0.0.1", "", relay}) {
    session.start();
  }
  std::string take() {
    std::string out = session.output();
    session.clear_output();
    return out;
  }
};

TEST(ServerSessionApi, ShutdownWhenIdleSays421AndCloses) {
  direct d;
  d.take();
  EXPECT_TRUE(d.session.shutdown());
  EXPECT_EQ(d.take(), "421 4.3.2 Service shutting down\r\n");
  EXPECT_EQ(d.session.feed("NOOP\r\n").what, server_session::event::close);
  EXPECT_EQ(d.session.feed("").what, server_session::event::close);
  EXPECT_EQ(d.rejects, (std::vector<std::string>{"421 4.3.2 Service shutting down"}));
}

TEST(ServerSessionApi, ShutdownDuringATransactionFinishesItFirst) {
  direct d;
  const std::string start = ehlo + mail + rcpt + "DATA\r\nbody\r\n";
  auto step = d.session.feed(start);
  EXPECT_EQ(step.what, server_session::event::need_more);
  EXPECT_TRUE(d.session.in_transaction());
  EXPECT_FALSE(d.session.shutdown());
  d.take();
  step = d.session.feed(".\r\nNOOP\r\n");
  EXPECT_EQ(step.what, server_session::event::message);
  EXPECT_EQ(step.consumed, 3u);
  EXPECT_EQ(d.session.message_id(), "QID");
  EXPECT_EQ(d.session.message_envelope().recipients.size(), 1u);
  EXPECT_NE(d.session.take_message().find("\r\nbody\r\n"), std::string::npos);
  d.session.message_queued();
  EXPECT_EQ(d.take(), "250 2.0.0 Ok: queued as QID\r\n421 4.3.2 Service shutting down\r\n");
  EXPECT_EQ(d.session.feed("NOOP\r\n").what, server_session::event::close);
  EXPECT_EQ(d.session.messages_accepted(), 1u);
}

TEST(ServerSessionApi, ShutdownAfterMailClosesOnRset) {
  direct d;
  d.session.feed(ehlo + mail);
  EXPECT_FALSE(d.session.shutdown());
  d.take();
  const auto step = d.session.feed("RSET\r\nNOOP\r\n");
  EXPECT_EQ(step.what, server_session::event::close);
  EXPECT_EQ(step.consumed, 6u);
  EXPECT_EQ(d.take(), "250 2.0.0 Ok\r\n421 4.3.2 Service shutting down\r\n");
}

TEST(ServerSessionApi, TimeoutSays421AndCloses) {
  direct d;
  d.session.feed(ehlo + "NOOP");
  d.take();
  d.session.timeout();
  EXPECT_EQ(d.take(), "421 4.4.2 Idle timeout, closing connection\r\n");
  EXPECT_EQ(d.session.feed("\r\n").what, server_session::event::close);
}

TEST(ServerSessionApi, MessageStopsFeedAndTheRestIsFedAgain) {
  direct d;
  const std::string input = ehlo + mail + rcpt + "DATA\r\nx\r\n.\r\n" + "QUIT\r\n";
  auto step = d.session.feed(input);
  EXPECT_EQ(step.what, server_session::event::message);
  EXPECT_EQ(step.consumed, input.find("QUIT"));
  EXPECT_EQ(d.session.messages_accepted(), 0u);
  d.session.message_queued();
  step = d.session.feed(std::string_view(input).substr(step.consumed));
  EXPECT_EQ(step.what, server_session::event::close);
  EXPECT_TRUE(d.take().ends_with("250 2.0.0 Ok: queued as QID\r\n221 2.0.0 Bye\r\n"));
}

TEST(ServerSessionApi, EmptyFeedNeedsMore) {
  direct d;
  const auto step = d.session.feed("");
  EXPECT_EQ(step.what, server_session::event::need_more);
  EXPECT_EQ(step.consumed, 0u);
}

// Random garbage and random mixtures of valid commands never crash, throw or
// produce anything but well-formed replies; and grinding gives the same result.
TEST(ServerSessionRobustness, RandomInput) {
  std::mt19937 rng(12345);
  const std::vector<std::string> pieces = {ehlo,
                                           mail,
                                           rcpt,
                                           "DATA\r\n",
                                           ".\r\n",
                                           "\r\n",
                                           "\n",
                                           "\r",
                                           ".",
                                           "..",
                                           "QUIT\r\n",
                                           "RSET\r\n",
                                           "MAIL FROM:<> SIZE=9999999999\r\n",
                                           "x",
                                           std::string(300, 'y'),
                                           std::string(1, '\0'),
                                           "\xff"};
  for (int round = 0; round < 200; ++round) {
    std::string input;
    const int n = static_cast<int>(rng() % 30);
    for (int i = 0; i < n; ++i) input += pieces[rng() % pieces.size()];
    setup s;
    s.max_message_size = 200;
    s.max_line_length = 100;
    const transcript whole = run_chunks(s, {input});
    for (const std::string& c : codes(whole.output)) {
      const int code = std::stoi(c.substr(0, 3));
      EXPECT_TRUE(code >= 200 && code < 600) << c;
    }
    std::vector<std::string_view> chunks;
    std::string_view rest = input;
    while (!rest.empty()) {
      const std::size_t len = std::min<std::size_t>(rest.size(), 1 + rng() % 7);
      chunks.push_back(rest.substr(0, len));
      rest.remove_prefix(len);
    }
    EXPECT_EQ(run_chunks(s, chunks), whole) << "round " << round;
  }
}

}  // namespace
}  // namespace smtp

namespace smtp {
namespace {
// A recipient given twice is stored once (and so delivered once).
TEST(ServerSessionDedupe, DuplicateRecipientIsKeptOnce) {
  session_options o;
  o.hostname = "relay.test";
  o.new_id = [] { return std::string("ID1"); };
  o.now = [] { return std::int64_t{1'700'000'000}; };
  server_session s(std::move(o), client_info{"127.0.0.1", "", true});
  s.start();
  auto step = s.feed(
      "EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<x@y.example>\r\nRCPT TO:<x@y.example>\r\n"
      "RCPT TO:<z@y.example>\r\nDATA\r\nhi\r\n.\r\n");
  ASSERT_EQ(step.what, server_session::event::message);
  EXPECT_EQ(s.message_envelope().recipients, (std::vector<std::string>{"x@y.example", "z@y.example"}));
}
}  // namespace
}  // namespace smtp
