// smtp::server_session dialogues: every reply the session sends, pipelining,
// limits, relay control, smuggling, STARTTLS and AUTH, shutdown and timeouts.
// Each dialogue also runs through parsegrind: the same input split at every byte
// position and fed byte by byte must give exactly the same output, events and
// messages. A dialogue with STARTTLS is given in phases, one per side of the
// handshake: what the client sent before the handshake and was not read by the
// session is dropped, as the daemon does.
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
  // STARTTLS and AUTH.
  bool starttls = false;
  bool tls_active = false;
  bool auth = false;
  bool auth_without_tls = false;
  bool auth_required = false;
  std::size_t max_auth_failures = 3;
  std::size_t max_errors = 10;
  std::size_t max_header_size = 1024 * 1024;
  std::string qualify_domain;
  // The user database: alice / secret.
  std::function<bool(const std::string&, const std::string&)> check =
      [](const std::string& user, const std::string& password) {
        return user == "alice" && password == "secret";
      };
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
  o.starttls = s.starttls;
  o.tls_active = s.tls_active;
  o.auth = s.auth;
  o.auth_without_tls = s.auth_without_tls;
  o.auth_required = s.auth_required;
  o.max_auth_failures = s.max_auth_failures;
  o.max_errors = s.max_errors;
  o.max_header_size = s.max_header_size;
  o.qualify_domain = s.qualify_domain;
  return o;
}

// Runs the dialogue with its phases cut into the given chunks. After
// event::starttls the rest of the phase is dropped and the next phase is what
// the client sends under TLS.
transcript run_phases(const setup& s, const std::vector<std::vector<std::string_view>>& phases) {
  transcript t;
  int next_id = 0;
  server_session session(make_options(s, t, next_id),
                         client_info{s.client_ip, s.client_hostname, s.relay_allowed});
  session.start();
  t.output += session.output();
  session.clear_output();
  bool closed = false;
  for (std::size_t p = 0; p < phases.size() && !closed; ++p) {
    bool handshake = false;
    for (std::string_view chunk : phases[p]) {
      if (handshake) break;
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
        if (step.what == server_session::event::starttls) {
          t.events.push_back("starttls");
          EXPECT_FALSE(session.tls_active());
          session.tls_started();
          EXPECT_TRUE(session.tls_active());
          handshake = true;
          break;
        }
        if (step.what == server_session::event::auth) {
          const std::string user = session.auth_user();
          const std::string password = session.auth_password();
          t.events.push_back("auth " + user + ":" + password);
          session.auth_result(s.check(user, password));
          EXPECT_TRUE(session.auth_password().empty());
          t.output += session.output();
          session.clear_output();
          if (session.closed()) {  // the pump closes without reading again
            t.events.push_back("close");
            closed = true;
            break;
          }
          continue;
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
  }
  return t;
}

transcript run_chunks(const setup& s, const std::vector<std::string_view>& chunks) {
  return run_phases(s, {chunks});
}

// parsegrind over phases: each phase split at every byte (the others whole), and
// everything byte by byte, must agree with the phases fed whole.
transcript run_tls(const std::vector<std::string>& phases, const setup& s = {}) {
  std::vector<std::vector<std::string_view>> whole_phases;
  for (const std::string& p : phases) whole_phases.push_back({p});
  const transcript whole = run_phases(s, whole_phases);
  for (std::size_t p = 0; p < phases.size(); ++p) {
    const std::string_view in = phases[p];
    for (std::size_t cut = 0; cut <= in.size(); ++cut) {
      auto split_phases = whole_phases;
      split_phases[p] = {in.substr(0, cut), in.substr(cut)};
      const transcript split = run_phases(s, split_phases);
      EXPECT_EQ(split, whole) << "phase " << p << " split at " << cut;
      if (split != whole) return whole;
    }
  }
  std::vector<std::vector<std::string_view>> bytes;
  for (const std::string& p : phases) {
    bytes.emplace_back();
    for (std::size_t i = 0; i < p.size(); ++i)
      bytes.back().push_back(std::string_view(p).substr(i, 1));
  }
  EXPECT_EQ(run_phases(s, bytes), whole) << "byte by byte";
  return whole;
}

// parsegrind: one buffer, every two-way split and byte by byte must all agree.
transcript run(const std::string& input, const setup& s = {}) {
  return run_tls({input}, s);
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
std::string data_body(const std::string& body) {
  return "DATA\r\n" + body + ".\r\n";
}
const std::string body = "Subject: test\r\n\r\nHello.\r\n.\r\n";

TEST(server_session, greeting_and_full_transaction) {
  const transcript t = run(ehlo + mail + rcpt + "DATA\r\n" + body + "QUIT\r\n");
  EXPECT_EQ(t.output,
            "220 mx.test ESMTP relayd\r\n"
            "250-mx.test\r\n250-PIPELINING\r\n250-SIZE 10000\r\n250-8BITMIME\r\n"
            "250-ENHANCEDSTATUSCODES\r\n250-SMTPUTF8\r\n250-CHUNKING\r\n250 DSN\r\n"
            "250 2.1.0 Ok\r\n"
            "250 2.1.5 Ok\r\n"
            "354 End data with <CR><LF>.<CR><LF>\r\n"
            "250 2.0.0 Ok: queued as ID1\r\n"
            "221 2.0.0 Bye\r\n");
  EXPECT_EQ(t.events, (std::vector<std::string>{"message ID1", "close"}));
  ASSERT_EQ(t.messages.size(), 1u);
  const message_record& m = t.messages[0];
  EXPECT_EQ(m.env.sender, "alice@example.org");
  EXPECT_EQ(smtp::addresses(m.env), (std::vector<std::string>{"bob@dest.example"}));
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

TEST(server_session, helo_dialogue_says_smtp_in_received) {
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

TEST(server_session, pipelined_commands_are_answered_in_order) {
  const transcript t =
      run(ehlo + mail + rcpt + "RCPT TO:<carol@dest.example>\r\nNOOP\r\nDATA\r\n" + body +
          "RSET\r\n" + mail + "RCPT TO:<dave@dest.example>\r\nDATA\r\n" + "x\r\n.\r\nQUIT\r\n");
  EXPECT_EQ(codes(t.output), (codes_t{"220", "250", "250 2.1.0", "250 2.1.5", "250 2.1.5",
                                      "250 2.0.0", "354", "250 2.0.0", "250 2.0.0", "250 2.1.0",
                                      "250 2.1.5", "354", "250 2.0.0", "221 2.0.0"}));
  EXPECT_EQ(t.events, (std::vector<std::string>{"message ID1", "message ID2", "close"}));
  ASSERT_EQ(t.messages.size(), 2u);
  EXPECT_EQ(smtp::addresses(t.messages[0].env),
            (std::vector<std::string>{"bob@dest.example", "carol@dest.example"}));
  // Two recipients: no "for" clause.
  EXPECT_EQ(t.messages[0].data.find("\tfor <"), std::string::npos);
  EXPECT_EQ(smtp::addresses(t.messages[1].env), (std::vector<std::string>{"dave@dest.example"}));
  EXPECT_NE(t.output.find("250 2.0.0 Ok: queued as ID2\r\n"), std::string::npos);
}

TEST(server_session, mail_before_helo_is_a_bad_sequence) {
  const transcript t = run(mail + "RCPT TO:<b@c.d>\r\nDATA\r\n");
  EXPECT_EQ(codes(t.output), (codes_t{"220", "503 5.5.1", "503 5.5.1", "503 5.5.1"}));
  EXPECT_NE(t.output.find("503 5.5.1 Bad sequence of commands: send EHLO or HELO first\r\n"),
            std::string::npos);
}

TEST(server_session, sequence_errors) {
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

TEST(server_session, data_after_only_refused_recipients_has_no_valid_recipients) {
  const transcript t = run(ehlo + mail + "RCPT TO:<bad address>\r\nDATA\r\n");
  EXPECT_EQ(codes(t.output), (codes_t{"220", "250", "250 2.1.0", "501 5.1.3", "554 5.5.1"}));
  EXPECT_NE(t.output.find("554 5.5.1 No valid recipients\r\n"), std::string::npos);
}

TEST(server_session, rset_noop_vrfy_help) {
  const transcript t = run(ehlo + mail + rcpt + "RSET\r\n" + rcpt + "NOOP\r\nVRFY bob\r\nHELP\r\n");
  EXPECT_EQ(codes(t.output), (codes_t{"220", "250", "250 2.1.0", "250 2.1.5", "250 2.0.0",
                                      "503 5.5.1", "250 2.0.0", "252 2.5.0", "214 2.0.0"}));
}

TEST(server_session, commands_work_before_helo) {
  const transcript t = run("NOOP\r\nRSET\r\nVRFY x\r\nHELP\r\nQUIT\r\n");
  EXPECT_EQ(codes(t.output),
            (codes_t{"220", "250 2.0.0", "250 2.0.0", "252 2.5.0", "214 2.0.0", "221 2.0.0"}));
  EXPECT_EQ(t.events, (std::vector<std::string>{"close"}));
}

TEST(server_session, quit_closes_and_leaves_the_rest_unread) {
  const std::string input = ehlo + "QUIT\r\nNOOP\r\n";
  const transcript t = run(input);
  EXPECT_EQ(codes(t.output), (codes_t{"220", "250", "221 2.0.0"}));
  EXPECT_EQ(t.events, (std::vector<std::string>{"close"}));
  EXPECT_EQ(t.consumed, input.find("NOOP"));
}

TEST(server_session, unknown_and_unimplemented_commands) {
  const transcript t = run(ehlo + "EXPN list\r\nSTARTTLS\r\nAUTH PLAIN AHVzZXIAcGFzcw==\r\n");
  EXPECT_EQ(codes(t.output), (codes_t{"220", "250", "500 5.5.1", "502 5.5.1", "502 5.5.1"}));
  // The AUTH initial response (a password) never reaches the log.
  EXPECT_EQ(t.rejects, (std::vector<std::string>{
                           "500 5.5.1 Command unrecognized | EXPN list",
                           "502 5.5.1 Command not implemented | STARTTLS",
                           "502 5.5.1 Command not implemented | AUTH PLAIN",
                       }));
}

TEST(server_session, syntax_errors_get_501_with_their_reason) {
  setup s;
  s.max_errors = 20;  // eleven errors here
  const transcript t = run("EHLO\r\n" + ehlo + "MAIL FROM:<bad@@example.org>\r\n" +
                           "MAIL FROM:alice@example.org\r\n" + "MAIL FROM:<a@b.c> SIZE=x\r\n" +
                           "MAIL FROM:<a@b.c> XFOO=1\r\n" + "DATA now\r\n" + mail +
                           "RCPT TO:<bob@dest..example>\r\n" + "RCPT TO:bob@dest.example\r\n" +
                           "VRFY\r\n" + "NO\001OP\r\n",
                           s);
  EXPECT_EQ(codes(t.output), (codes_t{"220", "501 5.5.4", "250", "501 5.1.7", "501 5.5.4",
                                      "501 5.5.4", "555 5.5.4", "501 5.5.4", "250 2.1.0",
                                      "501 5.1.3", "501 5.5.4", "501 5.5.4", "500 5.5.2"}));
  EXPECT_NE(t.output.find("501 5.1.7 Bad sender address syntax\r\n"), std::string::npos);
  EXPECT_NE(t.output.find("501 5.1.3 Bad recipient address syntax\r\n"), std::string::npos);
}

TEST(server_session, size_parameter_over_the_limit_is_refused_at_mail) {
  setup s;
  s.max_message_size = 100;
  const transcript t =
      run(ehlo + "MAIL FROM:<a@b.c> SIZE=101\r\nMAIL FROM:<a@b.c> SIZE=100\r\n", s);
  EXPECT_EQ(codes(t.output), (codes_t{"220", "250", "552 5.3.4", "250 2.1.0"}));
  EXPECT_NE(t.output.find("250-SIZE 100\r\n"), std::string::npos);
  EXPECT_NE(t.output.find("552 5.3.4 Message size exceeds fixed limit\r\n"), std::string::npos);
}

TEST(server_session, oversize_message_without_size_is_refused_after_data) {
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

TEST(server_session, message_exactly_at_the_limit_is_accepted) {
  setup s;
  s.max_message_size = 24;
  const transcript t = run(ehlo + mail + rcpt + "DATA\r\n0123456789\r\n0123456789\r\n.\r\n", s);
  EXPECT_EQ(codes(t.output).back(), "250 2.0.0");
}

TEST(server_session, overlong_text_line_in_data_is_refused) {
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

TEST(server_session, too_many_recipients) {
  const transcript t =
      run(ehlo + mail + "RCPT TO:<r1@d.example>\r\nRCPT TO:<r2@d.example>\r\n" +
          "RCPT TO:<r3@d.example>\r\nRCPT TO:<r4@d.example>\r\nDATA\r\nx\r\n.\r\n");
  EXPECT_EQ(codes(t.output), (codes_t{"220", "250", "250 2.1.0", "250 2.1.5", "250 2.1.5",
                                      "250 2.1.5", "452 4.5.3", "354", "250 2.0.0"}));
  EXPECT_NE(t.output.find("452 4.5.3 Too many recipients\r\n"), std::string::npos);
  ASSERT_EQ(t.messages.size(), 1u);
  EXPECT_EQ(t.messages[0].env.recipients.size(), 3u);
}

TEST(server_session, relay_denied_for_clients_outside_mynetworks) {
  setup s;
  s.relay_allowed = false;
  const transcript t = run(ehlo + mail + rcpt + "DATA\r\nQUIT\r\n", s);
  EXPECT_EQ(codes(t.output),
            (codes_t{"220", "250", "250 2.1.0", "554 5.7.1", "554 5.5.1", "221 2.0.0"}));
  EXPECT_NE(t.output.find("554 5.7.1 Relay access denied\r\n"), std::string::npos);
  EXPECT_EQ(t.rejects[0], "554 5.7.1 Relay access denied | RCPT TO:<bob@dest.example>");
  EXPECT_TRUE(t.messages.empty());
}

TEST(server_session, postmaster_without_domain_is_not_delivered_locally) {
  const transcript t = run(ehlo + mail + "RCPT TO:<postmaster>\r\n");
  EXPECT_EQ(codes(t.output), (codes_t{"220", "250", "250 2.1.0", "550 5.1.1"}));
}

TEST(server_session, null_sender_and_parameters) {
  const transcript t = run(ehlo + "MAIL FROM:<> SIZE=50 BODY=8BITMIME\r\n" + rcpt +
                           "DATA\r\n\xc3\xa9t\xc3\xa9\r\n.\r\n");
  ASSERT_EQ(t.messages.size(), 1u);
  EXPECT_EQ(t.messages[0].env.sender, "");
  EXPECT_EQ(t.messages[0].env.body, body_type::eight_bit_mime);
  EXPECT_EQ(t.messages[0].env.declared_size, 50u);
}

TEST(server_session, non_ascii_addresses_need_smtputf8) {
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

TEST(server_session, dot_stuffing_is_removed_in_the_stored_message) {
  const transcript t = run(ehlo + mail + rcpt + "DATA\r\n\r\n..leading dot\r\n...\r\n.\r\n");
  ASSERT_EQ(t.messages.size(), 1u);
  const std::string& data = t.messages[0].data;
  EXPECT_TRUE(data.ends_with("\r\n\r\n.leading dot\r\n..\r\n")) << data;
}

TEST(server_session, command_line_limits) {
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

TEST(server_session, smuggling_lf_dot_lf) {
  expect_smuggling_refused("\n.\n");
}
TEST(server_session, smuggling_cr_dot_cr) {
  expect_smuggling_refused("\r.\r");
}
TEST(server_session, smuggling_lf_dot_crlf) {
  expect_smuggling_refused("\n.\r\n");
}
TEST(server_session, smuggling_crlf_dot_lf) {
  expect_smuggling_refused("\r\n.\n");
}
TEST(server_session, smuggling_crlf_dot_cr) {
  expect_smuggling_refused("\r\n.\r");
}
TEST(server_session, smuggling_bare_cr_in_text) {
  expect_smuggling_refused("\rx\r\n.\r\n");
}

TEST(server_session, too_many_errors_close_the_connection) {
  std::string input = ehlo;
  for (int i = 0; i < 25; ++i) input += "BOGUS\r\n";
  const transcript t = run(input);
  codes_t expected{"220", "250"};
  for (int i = 0; i < 10; ++i) expected.push_back("500 5.5.1");  // default max_errors
  expected.push_back("421 4.7.0");
  EXPECT_EQ(codes(t.output), expected);
  EXPECT_TRUE(t.output.ends_with("421 4.7.0 Too many errors, closing connection\r\n"));
  EXPECT_EQ(t.events, (std::vector<std::string>{"close"}));
  EXPECT_EQ(t.consumed, ehlo.size() + 10 * 7);
}

// Syntax errors, unknown commands and bad sequences all count; good commands in
// between do not reset the count; the max_errors-th 5xx is followed by 421.
TEST(server_session, mixed_errors_count_towards_max_errors) {
  setup s;
  s.max_errors = 4;
  const std::string input = ehlo + "BOGUS\r\n" + "NOOP\r\n" + "MAIL FROM:<bad\r\n" + rcpt +
                            "NOOP\r\n" + "DATA\r\n" + "NOOP\r\n";
  const transcript t = run(input, s);
  EXPECT_EQ(codes(t.output), (codes_t{"220", "250", "500 5.5.1", "250 2.0.0", "501 5.1.7",
                                      "503 5.5.1", "250 2.0.0", "503 5.5.1", "421 4.7.0"}));
  EXPECT_EQ(t.events, (std::vector<std::string>{"close"}));
  EXPECT_EQ(t.consumed, input.size() - 6);  // the last NOOP is never read
}

TEST(server_session, one_error_below_the_cap_keeps_the_session_open) {
  setup s;
  s.max_errors = 3;
  const transcript t = run(ehlo + "BOGUS\r\nBOGUS\r\n" + mail + rcpt + data_body("x\r\n"), s);
  EXPECT_TRUE(t.events.size() == 1 && t.events[0].starts_with("message"));
  EXPECT_EQ(codes(t.output).back(), "250 2.0.0");
}

TEST(server_session, header_over_the_limit_is_refused_after_data) {
  setup s;
  s.max_header_size = 100;
  const std::string big_header = "Subject: " + std::string(95, 'h') + "\r\n";  // 106 octets
  const transcript t =
      run(ehlo + mail + rcpt + data_body(big_header + "\r\nbody\r\n") + mail + rcpt +
              data_body("Subject: " + std::string(80, 's') + "\r\n\r\n" + std::string(500, 'b') +
                        "\r\n"),
          s);
  EXPECT_EQ(codes(t.output), (codes_t{"220", "250", "250 2.1.0", "250 2.1.5", "354", "552 5.3.4",
                                      "250 2.1.0", "250 2.1.5", "354", "250 2.0.0"}));
  EXPECT_NE(t.output.find("552 5.3.4 Message header too big\r\n"), std::string::npos);
  ASSERT_EQ(t.messages.size(), 1u);  // only the second one, whose body is big but header small
  EXPECT_NE(t.messages[0].data.find(std::string(500, 'b')), std::string::npos);
}

TEST(server_session, header_only_message_counts_whole_as_header) {
  setup s;
  s.max_header_size = 50;
  std::string headers;
  for (int i = 0; i < 5; ++i) headers += "X-H" + std::to_string(i) + ": 0123456789\r\n";
  const transcript t = run(ehlo + mail + rcpt + data_body(headers), s);
  EXPECT_EQ(codes(t.output).back(), "552 5.3.4");
  EXPECT_TRUE(t.messages.empty());
}

TEST(server_session, recipient_limit_refusals_do_not_count_as_errors) {
  std::string input = ehlo + mail;
  for (int i = 0; i < 30; ++i) input += "RCPT TO:<r" + std::to_string(i) + "@d.example>\r\n";
  const transcript t = run(input);
  EXPECT_TRUE(t.events.empty());
  EXPECT_EQ(codes(t.output).back(), "452 4.5.3");
}

TEST(server_session, spool_failure_is_reported_and_the_session_goes_on) {
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

TEST(server_session, ehlo_resets_the_transaction) {
  const transcript t = run(ehlo + mail + rcpt + ehlo + "DATA\r\n");
  EXPECT_EQ(codes(t.output), (codes_t{"220", "250", "250 2.1.0", "250 2.1.5", "250", "503 5.5.1"}));
}

TEST(server_session, generated_id_when_no_generator) {
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

// ---- STARTTLS (RFC 3207) ------------------------------------------------------

const std::string starttls = "STARTTLS\r\n";
// base64("\0alice\0secret"), base64("\0alice\0wrong")
const std::string plain_ok = "AGFsaWNlAHNlY3JldA==";
const std::string plain_bad = "AGFsaWNlAHdyb25n";

setup tls_setup() {
  setup s;
  s.starttls = true;
  s.auth = true;
  return s;
}

TEST(server_session_tls, ehlo_offers_starttls_only_when_configured) {
  EXPECT_EQ(run(ehlo).output.find("STARTTLS"), std::string::npos);
  setup s;
  s.starttls = true;
  EXPECT_TRUE(run(ehlo, s).output.ends_with("250-CHUNKING\r\n250-DSN\r\n250 STARTTLS\r\n"));
}

TEST(server_session_tls, starttls_starts_over_and_is_not_offered_again) {
  const transcript t =
      run_tls({ehlo + starttls, ehlo + mail + rcpt + "DATA\r\n" + body + "QUIT\r\n"}, tls_setup());
  EXPECT_EQ(codes(t.output), (codes_t{"220", "250", "220 2.0.0", "250", "250 2.1.0", "250 2.1.5",
                                      "354", "250 2.0.0", "221 2.0.0"}));
  // Before TLS: STARTTLS, no AUTH. Under TLS: AUTH, no STARTTLS.
  const std::size_t ready = t.output.find("220 2.0.0 Ready to start TLS\r\n");
  ASSERT_NE(ready, std::string::npos);
  const std::string before = t.output.substr(0, ready), after = t.output.substr(ready);
  EXPECT_NE(before.find("250 STARTTLS\r\n"), std::string::npos);
  EXPECT_EQ(before.find("AUTH"), std::string::npos);
  EXPECT_EQ(after.find("STARTTLS"), std::string::npos);
  EXPECT_NE(after.find("250 AUTH PLAIN LOGIN\r\n"), std::string::npos);
  EXPECT_EQ(t.events, (std::vector<std::string>{"starttls", "message ID1", "close"}));
  ASSERT_EQ(t.messages.size(), 1u);
  EXPECT_NE(t.messages[0].data.find("with ESMTPS id ID1"), std::string::npos);
}

// CVE-2011-0411: commands pipelined after STARTTLS in the same packet are never
// read, neither before nor after the handshake.
TEST(server_session_tls, commands_pipelined_after_starttls_are_discarded) {
  const std::string before = ehlo + starttls + "RSET\r\n" + mail + "NOOP\r\nMAIL FR";
  const transcript t = run_tls({before, ehlo + rcpt + "OM:<x@y.z>\r\n"}, tls_setup());
  // The injected MAIL did not open a transaction: RCPT needs MAIL; the partial
  // "MAIL FR" does not join the first line after the handshake.
  EXPECT_EQ(codes(t.output), (codes_t{"220", "250", "220 2.0.0", "250", "503 5.5.1", "500 5.5.1"}));
  EXPECT_EQ(t.consumed, ehlo.size() + starttls.size() + ehlo.size() + rcpt.size() + 12);
  EXPECT_EQ(t.events, (std::vector<std::string>{"starttls"}));
}

TEST(server_session_tls, client_must_greet_again_under_tls) {
  const transcript t = run_tls({ehlo + starttls, mail + ehlo + mail}, tls_setup());
  EXPECT_EQ(codes(t.output), (codes_t{"220", "250", "220 2.0.0", "503 5.5.1", "250", "250 2.1.0"}));
}

TEST(server_session_tls, starttls_refusals) {
  // Not configured: not implemented.
  EXPECT_EQ(codes(run(ehlo + starttls).output), (codes_t{"220", "250", "502 5.5.1"}));
  setup s = tls_setup();
  const transcript t = run(ehlo + "STARTTLS now\r\n" + mail + starttls + "RSET\r\n", s);
  EXPECT_EQ(codes(t.output),
            (codes_t{"220", "250", "501 5.5.4", "250 2.1.0", "503 5.5.1", "250 2.0.0"}));
  EXPECT_NE(t.output.find("503 5.5.1 Bad sequence of commands: MAIL transaction in progress\r\n"),
            std::string::npos);
  EXPECT_TRUE(t.events.empty());
  // Already under TLS (implicit TLS, or a second STARTTLS).
  s.tls_active = true;
  const transcript implicit = run(ehlo + starttls, s);
  EXPECT_EQ(codes(implicit.output), (codes_t{"220", "250", "503 5.5.1"}));
  EXPECT_EQ(implicit.output.find("STARTTLS\r\n"), std::string::npos);
  const transcript twice = run_tls({ehlo + starttls, ehlo + starttls}, tls_setup());
  EXPECT_EQ(codes(twice.output), (codes_t{"220", "250", "220 2.0.0", "250", "503 5.5.1"}));
  EXPECT_NE(twice.output.find("503 5.5.1 Bad sequence of commands: TLS already active\r\n"),
            std::string::npos);
}

// ---- AUTH (RFC 4954) -----------------------------------------------------------

setup under_tls() {
  setup s;
  s.starttls = true;
  s.tls_active = true;
  s.auth = true;
  return s;
}

TEST(server_session_auth, plain_with_initial_response) {
  setup s = under_tls();
  s.relay_allowed = false;
  const transcript t = run(
      ehlo + "AUTH PLAIN " + plain_ok + "\r\n" + mail + rcpt + "DATA\r\n" + body + "QUIT\r\n", s);
  EXPECT_EQ(codes(t.output), (codes_t{"220", "250", "235 2.7.0", "250 2.1.0", "250 2.1.5", "354",
                                      "250 2.0.0", "221 2.0.0"}));
  EXPECT_NE(t.output.find("235 2.7.0 Authentication successful\r\n"), std::string::npos);
  EXPECT_EQ(t.events, (std::vector<std::string>{"auth alice:secret", "message ID1", "close"}));
  ASSERT_EQ(t.messages.size(), 1u);
  EXPECT_NE(t.messages[0].data.find("with ESMTPSA id ID1"), std::string::npos);
  EXPECT_TRUE(t.rejects.empty());
}

TEST(server_session_auth, plain_with_empty_challenge) {
  const transcript t = run(ehlo + "auth plain\r\n" + plain_ok + "\r\n", under_tls());
  EXPECT_TRUE(t.output.ends_with("\r\n334 \r\n235 2.7.0 Authentication successful\r\n"))
      << t.output;
  EXPECT_EQ(t.events, (std::vector<std::string>{"auth alice:secret"}));
}

TEST(server_session_auth, login) {
  const transcript t = run(ehlo + "AUTH LOGIN\r\n" + "YWxpY2U=\r\n" + "c2VjcmV0\r\n", under_tls());
  EXPECT_TRUE(
      t.output.ends_with("\r\n334 VXNlcm5hbWU6\r\n334 UGFzc3dvcmQ6\r\n"
                         "235 2.7.0 Authentication successful\r\n"))
      << t.output;
  EXPECT_EQ(t.events, (std::vector<std::string>{"auth alice:secret"}));
  // The user name as initial response.
  const transcript ir = run(ehlo + "AUTH LOGIN YWxpY2U=\r\n" + "c2VjcmV0\r\n", under_tls());
  EXPECT_EQ(codes(ir.output), (codes_t{"220", "250", "334", "235 2.7.0"}));
  EXPECT_NE(ir.output.find("334 UGFzc3dvcmQ6\r\n"), std::string::npos);
}

TEST(server_session_auth, equals_sign_is_an_empty_response) {
  // An empty PLAIN message is malformed: it fails like a wrong password.
  const transcript plain = run(ehlo + "AUTH PLAIN =\r\n", under_tls());
  EXPECT_EQ(codes(plain.output), (codes_t{"220", "250", "535 5.7.8"}));
  EXPECT_EQ(plain.events, (std::vector<std::string>{"auth :"}));
  // LOGIN with an empty password.
  setup s = under_tls();
  s.check = [](const std::string& u, const std::string& p) { return u == "alice" && p.empty(); };
  const transcript login = run(ehlo + "AUTH LOGIN YWxpY2U=\r\n=\r\n", s);
  EXPECT_EQ(codes(login.output), (codes_t{"220", "250", "334", "235 2.7.0"}));
  EXPECT_EQ(login.events, (std::vector<std::string>{"auth alice:"}));
}

TEST(server_session_auth, star_cancels) {
  const transcript t =
      run(ehlo + "AUTH PLAIN\r\n*\r\nAUTH LOGIN\r\nYWxpY2U=\r\n*\r\nNOOP\r\n", under_tls());
  EXPECT_EQ(codes(t.output),
            (codes_t{"220", "250", "334", "501 5.0.0", "334", "334", "501 5.0.0", "250 2.0.0"}));
  EXPECT_NE(t.output.find("501 5.0.0 Authentication cancelled\r\n"), std::string::npos);
  EXPECT_TRUE(t.events.empty());
}

TEST(server_session_auth, bad_base64) {
  const transcript t =
      run(ehlo + "AUTH PLAIN AGFsaWNl!\r\nAUTH LOGIN\r\nYWxpY2U\r\nNOOP\r\n", under_tls());
  EXPECT_EQ(codes(t.output), (codes_t{"220", "250", "501 5.5.2", "334", "501 5.5.2", "250 2.0.0"}));
  EXPECT_TRUE(t.events.empty());
}

TEST(server_session_auth, acting_for_another_user_fails) {
  // authzid "bob", authcid "alice": proxy authorization is not supported.
  const transcript t = run(
      ehlo + "AUTH PLAIN Ym9iAGFsaWNlAHNlY3JldA==\r\n" + "AUTH PLAIN YWxpY2UAYWxpY2UAc2VjcmV0\r\n",
      under_tls());
  EXPECT_EQ(codes(t.output), (codes_t{"220", "250", "535 5.7.8", "235 2.7.0"}));
  EXPECT_EQ(t.events, (std::vector<std::string>{"auth :", "auth alice:secret"}));
}

TEST(server_session_auth, failures_end_the_session_at_the_limit) {
  const std::string bad = "AUTH PLAIN " + plain_bad + "\r\n";
  const std::string input = ehlo + bad + bad + bad + "NOOP\r\n";
  const transcript t = run(input, under_tls());
  EXPECT_EQ(codes(t.output),
            (codes_t{"220", "250", "535 5.7.8", "535 5.7.8", "535 5.7.8", "421 4.7.0"}));
  EXPECT_TRUE(
      t.output.ends_with("535 5.7.8 Authentication credentials invalid\r\n"
                         "421 4.7.0 Too many authentication failures, closing connection\r\n"));
  EXPECT_EQ(t.events, (std::vector<std::string>{"auth alice:wrong", "auth alice:wrong",
                                                "auth alice:wrong", "close"}));
  EXPECT_EQ(t.consumed, input.find("NOOP"));
  // The limit is configurable.
  setup s = under_tls();
  s.max_auth_failures = 1;
  EXPECT_EQ(codes(run(ehlo + bad + "NOOP\r\n", s).output),
            (codes_t{"220", "250", "535 5.7.8", "421 4.7.0"}));
}

TEST(server_session_auth, refusals) {
  // No user database: AUTH is not implemented.
  setup none = under_tls();
  none.auth = false;
  const transcript off = run(ehlo + "AUTH PLAIN " + plain_ok + "\r\n", none);
  EXPECT_EQ(codes(off.output), (codes_t{"220", "250", "502 5.5.1"}));
  EXPECT_EQ(off.output.find("AUTH"), std::string::npos);
  // Before EHLO, without a mechanism, unknown mechanism, extra words, after
  // success, in a transaction.
  const transcript t = run("AUTH PLAIN\r\n" + ehlo + "AUTH\r\nAUTH CRAM-MD5\r\nAUTH PLAIN a b\r\n" +
                               "AUTH PLAIN " + plain_ok + "\r\nAUTH LOGIN\r\n" + mail + "RSET\r\n",
                           under_tls());
  EXPECT_EQ(codes(t.output),
            (codes_t{"220", "503 5.5.1", "250", "501 5.5.4", "504 5.5.4", "501 5.5.4", "235 2.7.0",
                     "503 5.5.1", "250 2.1.0", "250 2.0.0"}));
  EXPECT_NE(t.output.find("504 5.5.4 Unrecognized authentication type\r\n"), std::string::npos);
  EXPECT_NE(t.output.find("503 5.5.1 Bad sequence of commands: already authenticated\r\n"),
            std::string::npos);
  setup s = under_tls();
  const transcript in_mail = run(ehlo + mail + "AUTH PLAIN " + plain_ok + "\r\n", s);
  EXPECT_EQ(codes(in_mail.output), (codes_t{"220", "250", "250 2.1.0", "503 5.5.1"}));
  EXPECT_TRUE(in_mail.events.empty());
}

TEST(server_session_auth, needs_tls_unless_allowed_in_plaintext) {
  setup s = tls_setup();  // STARTTLS offered, not under TLS yet
  const transcript t = run(ehlo + "AUTH PLAIN " + plain_ok + "\r\nAUTH LOGIN\r\n", s);
  EXPECT_EQ(codes(t.output), (codes_t{"220", "250", "538 5.7.11", "538 5.7.11"}));
  EXPECT_NE(t.output.find("538 5.7.11 Encryption required for requested authentication "
                          "mechanism\r\n"),
            std::string::npos);
  EXPECT_TRUE(t.events.empty());
  // The loopback switch: offered and accepted in plaintext; Received says ESMTPA.
  s.auth_without_tls = true;
  const transcript ok =
      run(ehlo + "AUTH PLAIN " + plain_ok + "\r\n" + mail + rcpt + "DATA\r\n" + body, s);
  EXPECT_NE(ok.output.find("250-STARTTLS\r\n250 AUTH PLAIN LOGIN\r\n"), std::string::npos);
  EXPECT_EQ(codes(ok.output)[2], "235 2.7.0");
  ASSERT_EQ(ok.messages.size(), 1u);
  EXPECT_NE(ok.messages[0].data.find("with ESMTPA id ID1"), std::string::npos);
}

TEST(server_session_auth, submission_requires_auth_before_mail) {
  setup s = under_tls();
  s.auth_required = true;
  const transcript t =
      run(ehlo + mail + rcpt + "DATA\r\n" + "AUTH PLAIN " + plain_ok + "\r\n" + mail, s);
  EXPECT_EQ(codes(t.output), (codes_t{"220", "250", "530 5.7.0", "503 5.5.1", "503 5.5.1",
                                      "235 2.7.0", "250 2.1.0"}));
  EXPECT_NE(t.output.find("530 5.7.0 Authentication required\r\n"), std::string::npos);
  // A failed AUTH does not open the door.
  const transcript bad = run(ehlo + "AUTH PLAIN " + plain_bad + "\r\n" + mail, s);
  EXPECT_EQ(codes(bad.output), (codes_t{"220", "250", "535 5.7.8", "530 5.7.0"}));
}

TEST(server_session_auth, authenticated_clients_may_relay) {
  setup s = under_tls();
  s.relay_allowed = false;
  const transcript t =
      run(ehlo + mail + rcpt + "RSET\r\nAUTH PLAIN " + plain_ok + "\r\n" + mail + rcpt, s);
  EXPECT_EQ(codes(t.output), (codes_t{"220", "250", "250 2.1.0", "554 5.7.1", "250 2.0.0",
                                      "235 2.7.0", "250 2.1.0", "250 2.1.5"}));
}

TEST(server_session_auth, starttls_forgets_a_plaintext_auth) {
  setup s = tls_setup();
  s.auth_without_tls = true;
  s.auth_required = true;
  const transcript t =
      run_tls({ehlo + "AUTH PLAIN " + plain_ok + "\r\n" + starttls, ehlo + mail}, s);
  EXPECT_EQ(codes(t.output), (codes_t{"220", "250", "235 2.7.0", "220 2.0.0", "250", "530 5.7.0"}));
}

TEST(server_session_auth, secrets_never_reach_the_reject_log) {
  const std::string input =
      ehlo + "AUTH PLAIN c2VjcmV0!\r\n" + "AUTH PLAIN " + plain_bad +
      "\r\nAUTH LOGIN YWxpY2U=\r\nc2VjcmV0!\r\nAUTH LOGIN\r\nYWxpY2U=\r\n*\r\n" + "AUTH PLAIN\r\n" +
      std::string(600, 'A') + "\r\n";
  const transcript t = run(input, under_tls());
  EXPECT_EQ(codes(t.output), (codes_t{"220", "250", "501 5.5.2", "535 5.7.8", "334", "501 5.5.2",
                                      "334", "334", "501 5.0.0", "334", "500 5.5.2"}));
  ASSERT_EQ(t.rejects.size(), 5u);
  for (const std::string& r : t.rejects) {
    EXPECT_EQ(r.find("c2VjcmV0"), std::string::npos) << r;
    EXPECT_EQ(r.find(plain_bad), std::string::npos) << r;
    EXPECT_EQ(r.find("AAAA"), std::string::npos) << r;
  }
  EXPECT_EQ(t.rejects[1], "535 5.7.8 Authentication credentials invalid | AUTH PLAIN");
}

TEST(server_session_auth, api_exposes_the_authenticated_user) {
  session_options o;
  o.hostname = "mx.test";
  o.tls_active = true;
  o.auth = true;
  server_session s(std::move(o), client_info{"192.0.2.1", "", false});
  s.start();
  EXPECT_TRUE(s.tls_active());
  const std::string input = ehlo + "AUTH PLAIN " + plain_ok + "\r\nNOOP\r\n";
  auto step = s.feed(input);
  ASSERT_EQ(step.what, server_session::event::auth);
  EXPECT_EQ(step.consumed, input.find("NOOP"));
  EXPECT_EQ(s.auth_user(), "alice");
  EXPECT_EQ(s.auth_password(), "secret");
  EXPECT_TRUE(s.authenticated_user().empty());
  s.auth_result(true);
  EXPECT_TRUE(s.auth_password().empty());
  EXPECT_EQ(s.authenticated_user(), "alice");
  EXPECT_EQ(s.auth_failures(), 0u);
  step = s.feed(std::string_view(input).substr(step.consumed));
  EXPECT_EQ(step.what, server_session::event::need_more);
  EXPECT_TRUE(s.output().ends_with("235 2.7.0 Authentication successful\r\n250 2.0.0 Ok\r\n"));
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

TEST(server_session_api, buffered_counts_the_body_and_refuse_message_drops_it) {
  direct d;
  EXPECT_EQ(d.session.buffered(), 0u);
  d.session.refuse_message(reply{452, "4.3.1", "no"});  // not in DATA: nothing happens
  d.session.feed("EHLO c.test\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nDATA\r\n");
  d.take();
  EXPECT_EQ(d.session.buffered(), 0u);
  EXPECT_EQ(d.session.feed("Subject: s\r\n\r\n0123456789\r\n").what,
            server_session::event::need_more);
  // Memory reserved, not octets received: at least the 26 octets of the body.
  EXPECT_GE(d.session.buffered(), 26u);
  d.session.refuse_message(reply{452, "4.3.1", "Insufficient system storage"});
  EXPECT_EQ(d.session.buffered(), 0u);
  EXPECT_EQ(d.session.feed("more body\r\n").what, server_session::event::need_more);
  EXPECT_EQ(d.session.buffered(), 0u) << "what follows is dropped";
  EXPECT_EQ(d.take(), "");
  EXPECT_EQ(d.session.feed(".\r\n").what, server_session::event::need_more);
  EXPECT_EQ(d.take(), "452 4.3.1 Insufficient system storage\r\n");
  EXPECT_FALSE(d.session.in_transaction());
  // The next message is not refused, and a finished one counts until it is taken.
  d.session.feed("MAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nDATA\r\n");
  EXPECT_EQ(d.session.feed("Subject: t\r\n\r\nbody\r\n.\r\n").what, server_session::event::message);
  EXPECT_GT(d.session.buffered(), 20u);
  EXPECT_FALSE(d.session.take_message().empty());
  EXPECT_EQ(d.session.buffered(), 0u);
  d.session.message_queued();
  EXPECT_TRUE(d.take().ends_with("250 2.0.0 Ok: queued as QID\r\n"));
  EXPECT_EQ(d.rejects, (std::vector<std::string>{"452 4.3.1 Insufficient system storage"}));
}

TEST(server_session_api, shutdown_when_idle_says_421_and_closes) {
  direct d;
  d.take();
  EXPECT_TRUE(d.session.shutdown());
  EXPECT_EQ(d.take(), "421 4.3.2 Service shutting down\r\n");
  EXPECT_EQ(d.session.feed("NOOP\r\n").what, server_session::event::close);
  EXPECT_EQ(d.session.feed("").what, server_session::event::close);
  EXPECT_EQ(d.rejects, (std::vector<std::string>{"421 4.3.2 Service shutting down"}));
}

TEST(server_session_api, shutdown_during_a_transaction_finishes_it_first) {
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

TEST(server_session_api, shutdown_after_mail_closes_on_rset) {
  direct d;
  d.session.feed(ehlo + mail);
  EXPECT_FALSE(d.session.shutdown());
  d.take();
  const auto step = d.session.feed("RSET\r\nNOOP\r\n");
  EXPECT_EQ(step.what, server_session::event::close);
  EXPECT_EQ(step.consumed, 6u);
  EXPECT_EQ(d.take(), "250 2.0.0 Ok\r\n421 4.3.2 Service shutting down\r\n");
}

TEST(server_session_api, timeout_says_421_and_closes) {
  direct d;
  d.session.feed(ehlo + "NOOP");
  d.take();
  d.session.timeout();
  EXPECT_EQ(d.take(), "421 4.4.2 Idle timeout, closing connection\r\n");
  EXPECT_EQ(d.session.feed("\r\n").what, server_session::event::close);
}

TEST(server_session_api, progress_tracks_partial_lines_and_data_bodies) {
  using pi = server_session::pending_input;
  direct d;
  auto p = d.session.progress();
  EXPECT_EQ(p.what, pi::none);
  d.session.feed("NO");
  const auto p1 = d.session.progress();
  EXPECT_EQ(p1.what, pi::command_line);
  EXPECT_NE(p1.generation, p.generation);
  d.session.feed("O");  // the same line goes on: same generation
  EXPECT_EQ(d.session.progress().generation, p1.generation);
  d.session.feed("P\r\n");
  EXPECT_EQ(d.session.progress().what, pi::none);
  d.session.feed("NOOP\r\nNO");  // a line ends and another begins in one feed
  const auto p2 = d.session.progress();
  EXPECT_EQ(p2.what, pi::command_line);
  EXPECT_NE(p2.generation, p1.generation);
  d.session.feed("OP\r\n" + ehlo + mail + rcpt + "DATA\r\nSubject: x\r\n");
  const auto p3 = d.session.progress();
  EXPECT_EQ(p3.what, pi::data);
  EXPECT_NE(p3.generation, p2.generation);
  d.session.feed("more body\r\n");
  EXPECT_EQ(d.session.progress().generation, p3.generation);
  EXPECT_EQ(d.session.feed(".\r\n").what, server_session::event::message);
  d.session.message_queued();
  EXPECT_EQ(d.session.progress().what, pi::none);
}

TEST(server_session_api, phase_timeouts_say_421_and_queue_nothing) {
  {
    direct d;
    d.session.feed(ehlo + mail + rcpt + "DATA\r\npartial body\r\n");
    d.take();
    d.session.timeout(server_session::timeout_kind::data);
    EXPECT_EQ(d.take(), "421 4.4.2 Timeout reading message data, closing connection\r\n");
    EXPECT_EQ(d.session.feed(".\r\n").what, server_session::event::close);
    EXPECT_EQ(d.session.messages_accepted(), 0u);
  }
  {
    direct d;
    d.session.feed("NOO");
    d.take();
    d.session.timeout(server_session::timeout_kind::command);
    EXPECT_EQ(d.take(), "421 4.4.2 Timeout reading command, closing connection\r\n");
    EXPECT_EQ(d.session.feed("P\r\n").what, server_session::event::close);
  }
}

TEST(server_session_api, message_stops_feed_and_the_rest_is_fed_again) {
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

TEST(server_session_api, empty_feed_needs_more) {
  direct d;
  const auto step = d.session.feed("");
  EXPECT_EQ(step.what, server_session::event::need_more);
  EXPECT_EQ(step.consumed, 0u);
}

// Random garbage and random mixtures of valid commands never crash, throw or
// produce anything but well-formed replies; and grinding gives the same result.
TEST(server_session_robustness, random_input) {
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
                                           "\xff",
                                           "STARTTLS\r\n",
                                           "AUTH PLAIN " + plain_ok + "\r\n",
                                           "AUTH LOGIN\r\n",
                                           "YWxpY2U=\r\n",
                                           "*\r\n",
                                           "=\r\n",
                                           "BDAT 3\r\n",
                                           "BDAT 150\r\n",
                                           "BDAT 2 LAST\r\n",
                                           "BDAT 0 LAST\r\n",
                                           "BDAT x\r\n"};
  for (int round = 0; round < 200; ++round) {
    std::string input;
    const int n = static_cast<int>(rng() % 30);
    for (int i = 0; i < n; ++i) input += pieces[rng() % pieces.size()];
    setup s = round % 2 ? tls_setup() : setup{};
    s.auth_without_tls = round % 4 == 1;
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
TEST(server_session_dedupe, duplicate_recipient_is_kept_once) {
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
  EXPECT_EQ(smtp::addresses(s.message_envelope()),
            (std::vector<std::string>{"x@y.example", "z@y.example"}));
}
}  // namespace
}  // namespace smtp

// CHUNKING (RFC 3030): BDAT transfers, their limits, their sequence rules, and
// the local-submission qualification of bare local parts.
namespace smtp {
namespace {

std::string bdat(const std::string& octets, bool last = false) {
  return "BDAT " + std::to_string(octets.size()) + (last ? " LAST" : "") + "\r\n" + octets;
}

const std::string received_id1 =
    "Received: from client.example (client.example [192.0.2.7])\r\n"
    "\tby mx.test (relayd) with ESMTP id ID1\r\n"
    "\tfor <bob@dest.example>; Tue, 14 Nov 2023 22:13:20 +0000\r\n";

// A message with Date: and Message-ID:, so the stored form is Received: + it.
const std::string chunked_content =
    "Subject: chunked\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\nMessage-ID: <c@x>\r\n\r\n"
    ".\r\n..two dots stay two\r\n.\r\nQUIT\r\nlast line\r\n";

TEST(server_session_bdat, ehlo_advertises_chunking) {
  EXPECT_TRUE(run(ehlo).output.ends_with("250-SMTPUTF8\r\n250-CHUNKING\r\n250 DSN\r\n"));
}

TEST(server_session_bdat, chunks_assemble_to_the_exact_bytes) {
  const std::string a = chunked_content.substr(0, 20), b = chunked_content.substr(20, 31),
                    c = chunked_content.substr(51);
  const transcript t = run(ehlo + mail + rcpt + bdat(a) + bdat(b) + bdat(c, true) + "QUIT\r\n");
  EXPECT_EQ(codes(t.output), (codes_t{"220", "250", "250 2.1.0", "250 2.1.5", "250 2.0.0",
                                      "250 2.0.0", "250 2.0.0", "221 2.0.0"}));
  EXPECT_NE(t.output.find("250 2.0.0 20 octets received\r\n250 2.0.0 31 octets received\r\n"
                          "250 2.0.0 Ok: queued as ID1\r\n"),
            std::string::npos);
  EXPECT_EQ(t.events, (std::vector<std::string>{"message ID1", "close"}));
  ASSERT_EQ(t.messages.size(), 1u);
  // No dot-unstuffing, no terminator: ".", "..", "QUIT" lines are content.
  EXPECT_EQ(t.messages[0].data, received_id1 + chunked_content);
  EXPECT_EQ(t.messages[0].env.sender, "alice@example.org");
  EXPECT_TRUE(t.rejects.empty());
}

TEST(server_session_bdat, one_octet_chunks) {
  std::string input = ehlo + mail + rcpt;
  for (char ch : chunked_content) input += bdat(std::string(1, ch));
  input += "BDAT 0 LAST\r\n";
  const transcript t = run(input);
  ASSERT_EQ(t.messages.size(), 1u);
  EXPECT_EQ(t.messages[0].data, received_id1 + chunked_content);
  EXPECT_EQ(codes(t.output).size(), 4 + chunked_content.size() + 1);
  EXPECT_TRUE(t.output.ends_with("250 2.0.0 1 octets received\r\n250 2.0.0 Ok: queued as ID1\r\n"));
}

TEST(server_session_bdat, ten_megabytes_in_chunks_with_8bit_content) {
  setup s;
  s.max_message_size = 11 * 1024 * 1024;
  std::string content = "Subject: big\r\nDate: d\r\nMessage-ID: <big@x>\r\n\r\n";
  std::mt19937 rng(7);
  while (content.size() < 10 * 1024 * 1024) {
    std::string line(1 + rng() % 900, 'x');
    for (char& ch : line) {
      ch = static_cast<char>(rng() % 256);
      if (ch == '\r' || ch == '\n') ch = '.';
    }
    content += line + "\r\n";
  }
  std::string input = ehlo + mail + rcpt;
  for (std::size_t pos = 0; pos < content.size(); pos += 1000003) {
    const std::string piece = content.substr(pos, 1000003);
    input += bdat(piece, pos + piece.size() == content.size());
  }
  // Fed as the daemon does: 512 octets at a time.
  std::vector<std::string_view> slices;
  for (std::size_t pos = 0; pos < input.size(); pos += 512)
    slices.push_back(std::string_view(input).substr(pos, 512));
  const transcript t = run_chunks(s, slices);
  ASSERT_EQ(t.messages.size(), 1u) << t.output;
  EXPECT_TRUE(t.messages[0].data == received_id1 + content) << "content differs";
  EXPECT_TRUE(t.output.ends_with("250 2.0.0 Ok: queued as ID1\r\n"));
}

TEST(server_session_bdat, pipelined_with_mail_rcpt_and_several_chunks_in_one_feed) {
  setup s;
  // The second message is refused by the spool; the third is queued.
  s.spool = [](std::size_t n) -> std::optional<reply> {
    if (n == 1) return reply{452, "4.3.1", "Insufficient system storage"};
    return std::nullopt;
  };
  const transcript t =
      run(ehlo + mail + rcpt + "RCPT TO:<carol@dest.example>\r\n" + bdat("Subject: 1\r\n") +
              bdat("\r\nfirst\r\n", true) + mail + rcpt + bdat("second\r\n", true) + "NOOP\r\n" +
              mail + rcpt + bdat("th") + bdat("ird\r\n") + bdat("", true) + "QUIT\r\n",
          s);
  EXPECT_EQ(codes(t.output),
            (codes_t{"220", "250", "250 2.1.0", "250 2.1.5", "250 2.1.5", "250 2.0.0", "250 2.0.0",
                     "250 2.1.0", "250 2.1.5", "452 4.3.1", "250 2.0.0", "250 2.1.0", "250 2.1.5",
                     "250 2.0.0", "250 2.0.0", "250 2.0.0", "221 2.0.0"}));
  EXPECT_EQ(t.events,
            (std::vector<std::string>{"message ID1", "message ID2", "message ID3", "close"}));
  ASSERT_EQ(t.messages.size(), 3u);
  EXPECT_TRUE(t.messages[0].data.ends_with("Subject: 1\r\nDate: Tue, 14 Nov 2023 22:13:20 +0000\r\n"
                                           "Message-ID: <ID1@mx.test>\r\n\r\nfirst\r\n"));
  EXPECT_EQ(smtp::addresses(t.messages[0].env),
            (std::vector<std::string>{"bob@dest.example", "carol@dest.example"}));
  EXPECT_TRUE(t.messages[1].data.ends_with("\r\n\r\nsecond\r\n"));
  EXPECT_TRUE(t.messages[2].data.ends_with("\r\n\r\nthird\r\n"));
  EXPECT_EQ(t.messages[2].data.find("second"), std::string::npos);
}

TEST(server_session_bdat, total_over_the_size_limit_is_refused_and_nothing_is_queued) {
  setup s;
  s.max_message_size = 100;
  const std::string sixty(60, 'a');
  // The octets of refused chunks are read: "QUIT\r\n" inside one is not a command.
  const std::string quit_inside = std::string(54, 'b') + "QUIT\r\n";
  const transcript t = run(ehlo + mail + rcpt + bdat(sixty) + bdat(quit_inside) +
                               bdat(sixty, true) + "NOOP\r\n" + mail + rcpt +
                               bdat(std::string(101, 'c'), true) + mail + rcpt +
                               bdat(std::string(100, 'd'), true),
                           s);
  EXPECT_EQ(codes(t.output),
            (codes_t{"220", "250", "250 2.1.0", "250 2.1.5", "250 2.0.0", "552 5.3.4",
                     "552 5.3.4", "250 2.0.0", "250 2.1.0", "250 2.1.5", "552 5.3.4", "250 2.1.0",
                     "250 2.1.5", "250 2.0.0"}));
  EXPECT_NE(t.output.find("552 5.3.4 Message size exceeds fixed limit\r\n"), std::string::npos);
  // Only the message exactly at the limit was emitted.
  EXPECT_EQ(t.events, (std::vector<std::string>{"message ID1"}));
  ASSERT_EQ(t.messages.size(), 1u);
  EXPECT_TRUE(t.messages[0].data.ends_with(std::string(100, 'd')));
  // A refused transfer is not a client error: the session does not count it.
  EXPECT_EQ(t.rejects.size(), 3u);
}

TEST(server_session_bdat, bare_lf_growing_the_content_past_the_limit_is_refused) {
  setup s;
  s.max_message_size = 100;
  // 60 octets sent, 120 stored once every LF is CRLF.
  const transcript t = run(ehlo + mail + rcpt + bdat(std::string(60, '\n'), true), s);
  EXPECT_EQ(codes(t.output).back(), "552 5.3.4");
  EXPECT_TRUE(t.messages.empty());
}

TEST(server_session_bdat, data_after_bdat_is_a_bad_sequence) {
  const transcript t = run(ehlo + mail + rcpt + bdat("Subject: a\r\n") + "DATA\r\n" +
                           bdat("\r\nbody\r\n", true));
  EXPECT_EQ(codes(t.output), (codes_t{"220", "250", "250 2.1.0", "250 2.1.5", "250 2.0.0",
                                      "503 5.5.1", "250 2.0.0"}));
  EXPECT_NE(t.output.find("503 5.5.1 Bad sequence of commands: DATA after BDAT\r\n"),
            std::string::npos);
  // The transfer goes on after the refused DATA.
  ASSERT_EQ(t.messages.size(), 1u);
  EXPECT_TRUE(t.messages[0].data.ends_with("Subject: a\r\nDate: Tue, 14 Nov 2023 22:13:20 +0000\r\n"
                                           "Message-ID: <ID1@mx.test>\r\n\r\nbody\r\n"));
}

TEST(server_session_bdat, bdat_out_of_sequence_is_refused_and_its_octets_are_read) {
  const std::string quit = "QUIT\r\n";  // chunk data, never a command
  const transcript t =
      run(bdat(quit) + ehlo + bdat(quit, true) + mail + bdat(quit, true) +
          "RCPT TO:<bad address>\r\n" + bdat(quit, true) + "NOOP\r\n" + rcpt + bdat(quit, true));
  EXPECT_EQ(codes(t.output),
            (codes_t{"220", "503 5.5.1", "250", "503 5.5.1", "250 2.1.0", "503 5.5.1", "501 5.1.3",
                     "554 5.5.1", "250 2.0.0", "250 2.1.5", "250 2.0.0"}));
  EXPECT_NE(t.output.find("503 5.5.1 Bad sequence of commands: send EHLO or HELO first\r\n"),
            std::string::npos);
  EXPECT_NE(t.output.find("503 5.5.1 Bad sequence of commands: send MAIL first\r\n"),
            std::string::npos);
  EXPECT_NE(t.output.find("503 5.5.1 Bad sequence of commands: send RCPT first\r\n"),
            std::string::npos);
  EXPECT_EQ(t.events, (std::vector<std::string>{"message ID1"}));
  EXPECT_EQ(t.rejects[0], "503 5.5.1 Bad sequence of commands: send EHLO or HELO first | BDAT 6");
}

TEST(server_session_bdat, bad_arguments_get_501) {
  const transcript t = run(ehlo + mail + rcpt +
                           "BDAT\r\nBDAT x\r\nBDAT 5 FIRST\r\nBDAT -1\r\nBDAT 1 LAST x\r\n"
                           "BDAT 123456789012345678901\r\nBDAT 0 last\r\n");
  EXPECT_EQ(codes(t.output), (codes_t{"220", "250", "250 2.1.0", "250 2.1.5", "501 5.5.4",
                                      "501 5.5.4", "501 5.5.4", "501 5.5.4", "501 5.5.4",
                                      "501 5.5.4", "250 2.0.0"}));
  EXPECT_NE(t.output.find("501 5.5.4 Syntax: BDAT chunk-size [LAST]\r\n"), std::string::npos);
  // "BDAT 0 LAST" (any case) ends an empty message.
  ASSERT_EQ(t.messages.size(), 1u);
  EXPECT_TRUE(t.messages[0].data.ends_with("Message-ID: <ID1@mx.test>\r\n"));
}

TEST(server_session_bdat, rset_discards_the_chunks) {
  const transcript t = run(ehlo + mail + rcpt + bdat("Subject: lost\r\n") + "RSET\r\n" + mail +
                           rcpt + bdat("abc", true));
  EXPECT_EQ(codes(t.output), (codes_t{"220", "250", "250 2.1.0", "250 2.1.5", "250 2.0.0",
                                      "250 2.0.0", "250 2.1.0", "250 2.1.5", "250 2.0.0"}));
  ASSERT_EQ(t.messages.size(), 1u);
  EXPECT_EQ(t.messages[0].data.find("lost"), std::string::npos);
  EXPECT_TRUE(t.messages[0].data.ends_with("Message-ID: <ID1@mx.test>\r\n\r\nabc"));
}

TEST(server_session_bdat, bare_cr_and_lf_are_data_and_lines_end_in_crlf) {
  // A CR ends the first chunk and its LF begins the second: one line ending.
  // "\n.\n" is no terminator in BDAT, and the session stays open.
  const transcript t =
      run(ehlo + mail + rcpt + bdat("Subject: a\r") +
          bdat("\nMessage-ID: <m@x>\rDate: d\n\nbody\n.\nafter\r\rend\r", true) + "NOOP\r\n");
  EXPECT_EQ(codes(t.output),
            (codes_t{"220", "250", "250 2.1.0", "250 2.1.5", "250 2.0.0", "250 2.0.0", "250 2.0.0"}));
  EXPECT_EQ(t.events, (std::vector<std::string>{"message ID1"}));
  ASSERT_EQ(t.messages.size(), 1u);
  // The header fields after bare line endings are seen: no Date or Message-ID added.
  EXPECT_EQ(t.messages[0].data, received_id1 +
                                    "Subject: a\r\nMessage-ID: <m@x>\r\nDate: d\r\n\r\n"
                                    "body\r\n.\r\nafter\r\n\r\nend\r\n");
}

TEST(server_session_bdat, header_over_the_limit_is_refused_after_last) {
  setup s;
  s.max_header_size = 64;
  const std::string header = "Subject: " + std::string(80, 'h') + "\r\n\r\nbody\r\n";
  const transcript t = run(ehlo + mail + rcpt + bdat(header, true) + "NOOP\r\n", s);
  EXPECT_EQ(codes(t.output),
            (codes_t{"220", "250", "250 2.1.0", "250 2.1.5", "552 5.3.4", "250 2.0.0"}));
  EXPECT_NE(t.output.find("552 5.3.4 Message header too big\r\n"), std::string::npos);
  EXPECT_TRUE(t.messages.empty());
}

TEST(server_session_bdat, qualify_domain_off_refuses_bare_local_parts) {
  const transcript t = run(ehlo + "MAIL FROM:<root>\r\n" + mail + "RCPT TO:<www-data>\r\n" +
                           "RCPT TO:<postmaster>\r\n");
  EXPECT_EQ(codes(t.output),
            (codes_t{"220", "250", "501 5.1.7", "250 2.1.0", "501 5.1.3", "550 5.1.1"}));
}

TEST(server_session_bdat, qualify_domain_on_qualifies_bare_local_parts) {
  setup s;
  s.qualify_domain = "host.example";
  const transcript t =
      run(ehlo + "MAIL FROM:<root> SIZE=10\r\n" + "RCPT TO:<www-data>\r\n" +
              "RCPT TO: <postmaster>\r\n" + "RCPT TO:<bob@dest.example>\r\n" + bdat("x", true) +
              "MAIL FROM:<>\r\nRCPT TO:<\"john doe\">\r\nRCPT TO:<a@>\r\nRCPT TO:<a b>\r\n",
          s);
  EXPECT_EQ(codes(t.output),
            (codes_t{"220", "250", "250 2.1.0", "250 2.1.5", "250 2.1.5", "250 2.1.5", "250 2.0.0",
                     "250 2.1.0", "250 2.1.5", "501 5.1.3", "501 5.1.3"}));
  ASSERT_EQ(t.messages.size(), 1u);
  const envelope& e = t.messages[0].env;
  EXPECT_EQ(e.sender, "root@host.example");
  EXPECT_EQ(e.declared_size, 10u);
  EXPECT_EQ(smtp::addresses(e), (std::vector<std::string>{"www-data@host.example",
                                                          "postmaster@host.example",
                                                          "bob@dest.example"}));
  // The log shows what the client sent.
  EXPECT_EQ(t.rejects, (std::vector<std::string>{
                           "501 5.1.3 Bad recipient address syntax | RCPT TO:<a@>",
                           "501 5.1.3 Bad recipient address syntax | RCPT TO:<a b>"}));
}

TEST(server_session_bdat_api, buffered_and_refuse_message_between_and_during_chunks) {
  direct d;
  d.session.feed(ehlo + mail + rcpt + "BDAT 26\r\nSubject: s\r\n\r\n01234");
  d.take();
  EXPECT_GE(d.session.buffered(), 21u) << "during a chunk";
  d.session.feed("56789\r\n");
  EXPECT_EQ(d.take(), "250 2.0.0 26 octets received\r\n");
  EXPECT_GE(d.session.buffered(), 26u) << "between chunks";
  d.session.refuse_message(reply{452, "4.3.1", "Insufficient system storage"});
  EXPECT_EQ(d.session.buffered(), 0u);
  // The next chunk is read, dropped and answered with the refusal, which ends
  // the transaction; chunks pipelined behind it get the same answer.
  d.session.feed("BDAT 4\r\nmoreBDAT 3\r\nabcBDAT 2 LAST\r\nxy");
  EXPECT_EQ(d.session.buffered(), 0u);
  EXPECT_EQ(d.take(),
            "452 4.3.1 Insufficient system storage\r\n452 4.3.1 Insufficient system storage\r\n"
            "452 4.3.1 Insufficient system storage\r\n");
  EXPECT_FALSE(d.session.in_transaction());
  // A refusal in the middle of a chunk answers that chunk.
  d.session.feed(mail + rcpt + "BDAT 10 LAST\r\n01234");
  d.take();
  d.session.refuse_message(reply{452, "4.3.1", "Insufficient system storage"});
  d.session.feed("56789");
  EXPECT_EQ(d.take(), "452 4.3.1 Insufficient system storage\r\n");
  // The next transaction is not refused; its message counts until taken.
  d.session.feed(mail + rcpt);
  EXPECT_EQ(d.session.feed("BDAT 12 LAST\r\nSubject: t\r\n").what,
            server_session::event::message);
  EXPECT_GT(d.session.buffered(), 12u);
  EXPECT_FALSE(d.session.take_message().empty());
  EXPECT_EQ(d.session.buffered(), 0u);
  d.session.message_queued();
  EXPECT_TRUE(d.take().ends_with("250 2.0.0 Ok: queued as QID\r\n"));
}

TEST(server_session_bdat_api, a_chunk_is_data_for_progress_and_timeouts) {
  using pi = server_session::pending_input;
  direct d;
  d.session.feed(ehlo + mail + rcpt + "BDAT 10\r\n01");
  const auto p1 = d.session.progress();
  EXPECT_EQ(p1.what, pi::data);
  d.session.feed("234");
  EXPECT_EQ(d.session.progress().generation, p1.generation);
  d.session.feed("56789");
  EXPECT_EQ(d.session.progress().what, pi::none) << "between chunks";
  d.session.feed("BDAT 5 LAST\r\nab");
  const auto p2 = d.session.progress();
  EXPECT_EQ(p2.what, pi::data);
  EXPECT_NE(p2.generation, p1.generation);
  d.take();
  d.session.timeout(server_session::timeout_kind::data);
  EXPECT_EQ(d.take(), "421 4.4.2 Timeout reading message data, closing connection\r\n");
  EXPECT_EQ(d.session.feed("cde").what, server_session::event::close);
  EXPECT_EQ(d.session.messages_accepted(), 0u);
}

TEST(server_session_bdat_api, shutdown_waits_for_the_last_chunk) {
  direct d;
  d.session.feed(ehlo + mail + rcpt + "BDAT 3\r\nabc");
  EXPECT_FALSE(d.session.shutdown());
  d.take();
  const auto step = d.session.feed("BDAT 3 LAST\r\ndefNOOP\r\n");
  EXPECT_EQ(step.what, server_session::event::message);
  d.session.take_message();
  d.session.message_queued();
  EXPECT_EQ(d.take(), "250 2.0.0 Ok: queued as QID\r\n421 4.3.2 Service shutting down\r\n");
}

}  // namespace
}  // namespace smtp

namespace smtp {
namespace {

// What smtp.max_data_memory budgets, for BDAT as for DATA: the SIZE= presize
// and the slack of the growing buffer count, and the slack stays within a
// quarter once the content is large.
TEST(server_session_bdat_api, buffered_counts_presize_and_growth_of_chunks) {
  {
    direct d;
    d.session.feed(ehlo + "MAIL FROM:<a@x.test> SIZE=2097152\r\n" + rcpt + "BDAT 5\r\nhello");
    EXPECT_GE(d.session.buffered(), 2u * 1024 * 1024) << "the SIZE= presize is held";
  }
  direct d;
  d.session.feed(ehlo + mail + rcpt);
  const std::string line = std::string(98, 'x') + "\r\n";
  std::size_t fed = 0;
  bool slack_seen = false;
  while (fed < 400 * 1000) {
    ASSERT_EQ(d.session.feed("BDAT 100\r\n" + line).what, server_session::event::need_more);
    fed += line.size();
    ASSERT_GE(d.session.buffered(), fed);
    slack_seen = slack_seen || d.session.buffered() > fed;
    if (fed > 128 * 1024) ASSERT_LE(d.session.buffered(), fed + fed / 4) << fed;
  }
  EXPECT_TRUE(slack_seen);
}

}  // namespace
}  // namespace smtp

namespace smtp {
namespace {

// RFC 3461: the DSN parameters of MAIL and RCPT end up in the envelope.
TEST(server_session, dsn_parameters_are_stored_in_the_envelope) {
  const transcript t = run(ehlo + "MAIL FROM:<alice@example.org> RET=HDRS ENVID=QQ+2B1\r\n" +
                           "RCPT TO:<bob@dest.example> NOTIFY=SUCCESS,DELAY "
                           "ORCPT=rfc822;Bob+2Bo@src.example\r\n" +
                           "RCPT TO:<carol@dest.example> NOTIFY=NEVER\r\n" +
                           "RCPT TO:<dave@dest.example>\r\n" + "DATA\r\n" + body + "QUIT\r\n");
  ASSERT_EQ(t.messages.size(), 1u) << t.output;
  const envelope& e = t.messages[0].env;
  EXPECT_EQ(e.ret, dsn_ret::headers);
  EXPECT_EQ(e.envid, "QQ+1");
  ASSERT_EQ(e.recipients.size(), 3u);
  EXPECT_EQ(e.recipients[0].notify, notify_success | notify_delay);
  EXPECT_EQ(e.recipients[0].orcpt, "rfc822;Bob+o@src.example");
  EXPECT_EQ(e.recipients[1].notify, notify_never);
  EXPECT_EQ(e.recipients[1].orcpt, "");
  EXPECT_EQ(e.recipients[2].notify, 0);
  // A malformed one is refused with 501 and the transaction goes on without it.
  const transcript bad = run(ehlo + mail + "RCPT TO:<bob@dest.example> NOTIFY=NEVER,DELAY\r\n");
  EXPECT_NE(bad.output.find("501 5.5.4 Invalid parameter syntax\r\n"), std::string::npos);
}

}  // namespace
}  // namespace smtp
