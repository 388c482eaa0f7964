// smtp::client_session dialogues against scripted server replies: EHLO and the
// HELO fallback, STARTTLS, AUTH PLAIN and LOGIN, PIPELINING, per-recipient
// results, SIZE and SMTPUTF8 checks, 421 and rate limiting, malformed replies,
// lost connections and connection reuse. Each script also runs through
// parsegrind: the server's bytes split at every position and fed byte by byte
// must give exactly the same commands, events and results.
#include "smtp/client_session.hpp"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "smtp/dot_stuffer.hpp"

namespace smtp {
namespace {

struct setup {
  client_options options;
  std::vector<outgoing_message> messages;  // sent one after another, then QUIT
};

// Everything observable from one run of a script.
struct transcript {
  std::string output;                // every byte the client wrote
  std::vector<std::string> events;   // "ready", "start_tls", "done", "failed", "closed"
  std::vector<std::string> results;  // one line per recipient of every transaction
  std::string failure;
  std::string phase;  // at the end
  std::size_t consumed = 0;
  bool operator==(const transcript&) const = default;
};

std::ostream& operator<<(std::ostream& os, const transcript& t) {
  os << "output:\n" << t.output << "events:";
  for (const auto& e : t.events) os << " [" << e << "]";
  os << "\nresults:\n";
  for (const auto& r : t.results) os << "  " << r << "\n";
  return os << "failure: " << t.failure << "\nphase " << t.phase << ", consumed " << t.consumed;
}

std::string show(const recipient_result& r) {
  std::string s = r.address + ": " + std::string(to_string(r.status)) + " " +
                  r.response.to_string() + " [" + std::string(to_string(r.in_reply_to)) + "]";
  if (!r.from_server) s += " (client)";
  return s;
}

std::string show(const connection_failure& f) {
  std::string s = std::string(to_string(f.cause)) + ", " + std::string(to_string(f.status)) + ": " +
                  f.response.to_string() + " [" + std::string(to_string(f.phase)) + "]";
  if (!f.from_server) s += " (client)";
  if (f.local_fault) s += " local_fault";
  if (f.destination_throttled) s += " throttled";
  return s;
}

// Runs the script with the server's bytes cut into `chunks`. The pump writes all
// output after every step (refilling DATA content) and reacts to events.
transcript run_chunks(const setup& s, const std::vector<std::string_view>& chunks) {
  transcript t;
  client_session session(s.options);
  std::size_t next_message = 0;
  auto drain = [&] {
    while (!session.output().empty()) {
      t.output += session.output();
      session.clear_output();
    }
  };
  auto record = [&] {
    transaction_result r = session.take_result();
    std::string e = "done";
    if (r.destination_throttled) e += " throttled";
    if (r.connection_closed) e += " closed";
    t.events.push_back(e);
    for (const auto& rr : r.recipients) t.results.push_back(show(rr));
  };
  // Phase ready: the next message, or QUIT.
  auto next = [&] {
    while (session.phase() == client_phase::ready) {
      if (next_message == s.messages.size()) {
        session.quit();
        drain();
        return;
      }
      const auto e = session.send(s.messages[next_message++]);
      drain();
      if (e != client_session::event::transaction_done) return;
      record();
    }
  };
  bool done = false;
  for (std::string_view chunk : chunks) {
    while (!done) {
      const auto step = session.feed(chunk);
      EXPECT_LE(step.consumed, chunk.size());
      chunk.remove_prefix(step.consumed);
      t.consumed += step.consumed;
      drain();
      using event = client_session::event;
      switch (step.what) {
        case event::need_more:
          if (!chunk.empty()) continue;  // after 354: content written, feed the rest
          break;
        case event::start_tls:
          t.events.push_back("start_tls");
          EXPECT_EQ(session.phase(), client_phase::tls_handshake);
          session.tls_established();
          drain();
          continue;
        case event::ready:
          t.events.push_back("ready");
          next();
          continue;
        case event::transaction_done:
          record();
          if (session.phase() == client_phase::closed) {
            done = true;
            break;
          }
          next();
          continue;
        case event::failed:
          t.events.push_back("failed");
          t.failure = show(session.failure());
          done = true;
          break;
        case event::closed:
          t.events.push_back("closed");
          done = true;
          break;
      }
      break;
    }
    if (done) break;
  }
  t.phase = std::string(to_string(session.phase()));
  return t;
}

// parsegrind. `segments` are the server's bytes; a TLS handshake sits between
// two segments, so cuts are made inside each one.
transcript run(const setup& s, const std::vector<std::string>& segments) {
  std::vector<std::string_view> whole_chunks(segments.begin(), segments.end());
  const transcript whole = run_chunks(s, whole_chunks);
  for (std::size_t k = 0; k < segments.size(); ++k) {
    const std::string_view seg = segments[k];
    for (std::size_t cut = 0; cut <= seg.size(); ++cut) {
      std::vector<std::string_view> chunks;
      for (std::size_t j = 0; j < segments.size(); ++j) {
        if (j != k) {
          chunks.push_back(segments[j]);
        } else {
          chunks.push_back(seg.substr(0, cut));
          chunks.push_back(seg.substr(cut));
        }
      }
      const transcript split = run_chunks(s, chunks);
      EXPECT_EQ(split, whole) << "segment " << k << " split at " << cut;
      if (split != whole) return whole;
    }
  }
  std::vector<std::string_view> bytes;
  for (const auto& seg : segments) {
    for (std::size_t i = 0; i < seg.size(); ++i)
      bytes.push_back(std::string_view(seg).substr(i, 1));
  }
  EXPECT_EQ(run_chunks(s, bytes), whole) << "byte by byte";
  return whole;
}

transcript run(const setup& s, const std::string& server) {
  return run(s, std::vector<std::string>{server});
}

using strings = std::vector<std::string>;

const std::string greeting = "220 mx.dest.example ESMTP\r\n";
const std::string ehlo_full =
    "250-mx.dest.example\r\n250-PIPELINING\r\n250-SIZE 10000\r\n250-8BITMIME\r\n"
    "250-ENHANCEDSTATUSCODES\r\n250 SMTPUTF8\r\n";
const std::string ehlo_plain = "250 mx.dest.example\r\n";  // no extensions
const std::string body = "Subject: hi\r\n\r\nHello.\r\n";

setup basic(std::vector<std::string> recipients = {"bob@dest.example"}) {
  setup s;
  s.options.helo_name = "relay.test";
  outgoing_message m;
  m.sender = "alice@src.example";
  m.recipients = std::move(recipients);
  m.body = body;
  m.size = body.size();
  s.messages.push_back(std::move(m));
  return s;
}

// ---- the basic transaction -------------------------------------------------

TEST(client_session, pipelined_delivery) {
  const setup s = basic({"bob@dest.example", "carol@dest.example"});
  const transcript t = run(s, greeting + ehlo_full + "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n" +
                                  "250 2.1.5 Ok\r\n354 Go ahead\r\n250 2.0.0 Ok: queued as X\r\n" +
                                  "221 2.0.0 Bye\r\n");
  EXPECT_EQ(t.output,
            "EHLO relay.test\r\n"
            "MAIL FROM:<alice@src.example> SIZE=23\r\n"
            "RCPT TO:<bob@dest.example>\r\n"
            "RCPT TO:<carol@dest.example>\r\n"
            "DATA\r\n"
            "Subject: hi\r\n\r\nHello.\r\n.\r\n"
            "QUIT\r\n");
  EXPECT_EQ(t.events, (strings{"ready", "done", "closed"}));
  EXPECT_EQ(t.results, (strings{"bob@dest.example: delivered 250 2.0.0 Ok: queued as X [dot]",
                                "carol@dest.example: delivered 250 2.0.0 Ok: queued as X [dot]"}));
  EXPECT_EQ(t.phase, "closed");
}

// The exact pipelined batch: MAIL, every RCPT and DATA in one write (RFC 2920
// 3.1: DATA may be the last command of a group); the content waits for the 354.
TEST(client_session, pipelining_batch_is_one_write_ending_with_data) {
  setup s = basic({"a@d.example", "b@d.example", "c@d.example"});
  s.messages[0].body_8bit = true;
  client_session c(s.options);
  EXPECT_EQ(c.phase(), client_phase::greeting);
  EXPECT_TRUE(c.output().empty());
  auto step = c.feed(greeting);
  EXPECT_EQ(step.what, client_session::event::need_more);
  EXPECT_EQ(c.output(), "EHLO relay.test\r\n");
  EXPECT_EQ(c.phase(), client_phase::ehlo);
  c.clear_output();
  step = c.feed(ehlo_full);
  EXPECT_EQ(step.what, client_session::event::ready);
  EXPECT_EQ(c.phase(), client_phase::ready);
  EXPECT_TRUE(c.capabilities().pipelining);
  EXPECT_EQ(c.capabilities().max_size, 10000u);
  EXPECT_EQ(c.send(s.messages[0]), client_session::event::need_more);
  EXPECT_EQ(c.output(),
            "MAIL FROM:<alice@src.example> SIZE=23 BODY=8BITMIME\r\n"
            "RCPT TO:<a@d.example>\r\nRCPT TO:<b@d.example>\r\nRCPT TO:<c@d.example>\r\n"
            "DATA\r\n");
  c.clear_output();
  EXPECT_EQ(c.phase(), client_phase::mail);
  c.feed("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n");
  EXPECT_EQ(c.phase(), client_phase::rcpt);
  c.feed("250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n");
  EXPECT_TRUE(c.output().empty());  // nothing more until DATA is answered
  EXPECT_EQ(c.phase(), client_phase::data);
  EXPECT_EQ(c.feed("354 Go\r\n").what, client_session::event::need_more);
  EXPECT_EQ(c.output(), body + ".\r\n");
  EXPECT_EQ(c.phase(), client_phase::data_body);
}

TEST(client_session, lock_step_without_pipelining) {
  setup s = basic({"a@d.example", "b@d.example"});
  client_session c(s.options);
  c.feed(greeting);
  c.clear_output();
  EXPECT_EQ(c.feed("250-mx\r\n250 8BITMIME\r\n").what, client_session::event::ready);
  EXPECT_FALSE(c.capabilities().pipelining);
  c.send(s.messages[0]);
  EXPECT_EQ(c.output(), "MAIL FROM:<alice@src.example>\r\n");  // no SIZE= without SIZE
  c.clear_output();
  c.feed("250 Ok\r\n");
  EXPECT_EQ(c.output(), "RCPT TO:<a@d.example>\r\n");
  c.clear_output();
  c.feed("250 Ok\r\n");
  EXPECT_EQ(c.output(), "RCPT TO:<b@d.example>\r\n");
  c.clear_output();
  c.feed("250 Ok\r\n");
  EXPECT_EQ(c.output(), "DATA\r\n");
  c.clear_output();
  EXPECT_EQ(c.feed("354 Go\r\n").what, client_session::event::need_more);
  EXPECT_EQ(c.phase(), client_phase::data_body);
  EXPECT_EQ(c.output(), "Subject: hi\r\n\r\nHello.\r\n.\r\n");
  c.clear_output();
  EXPECT_EQ(c.phase(), client_phase::dot);
  EXPECT_EQ(c.feed("250 Ok\r\n").what, client_session::event::transaction_done);
  EXPECT_EQ(c.phase(), client_phase::ready);
  EXPECT_EQ(c.transactions(), 1u);

  // The same dialogue through parsegrind.
  const transcript t = run(s, greeting + "250-mx\r\n250 8BITMIME\r\n" + "250 Ok\r\n250 Ok\r\n" +
                                  "250 Ok\r\n354 Go\r\n250 Ok\r\n221 Bye\r\n");
  EXPECT_EQ(t.events, (strings{"ready", "done", "closed"}));
  EXPECT_EQ(t.results, (strings{"a@d.example: delivered 250 Ok [dot]",
                                "b@d.example: delivered 250 Ok [dot]"}));
}

TEST(client_session, mixed_recipient_results) {
  const setup s = basic({"ok@d.example", "gone@d.example", "later@d.example"});
  const transcript t =
      run(s, greeting + ehlo_full + "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n" +
                 "550-5.1.1 No such user\r\n550 5.1.1 here\r\n451 4.3.0 Try later\r\n" +
                 "354 Go\r\n250 2.0.0 Queued\r\n221 Bye\r\n");
  EXPECT_EQ(t.results, (strings{"ok@d.example: delivered 250 2.0.0 Queued [dot]",
                                "gone@d.example: permanent 550 5.1.1 No such user; here [rcpt]",
                                "later@d.example: temporary 451 4.3.0 Try later [rcpt]"}));
  EXPECT_EQ(t.events, (strings{"ready", "done", "closed"}));
}

TEST(client_session, final_reply_applies_to_accepted_recipients_only) {
  const setup s = basic({"ok@d.example", "gone@d.example"});
  const transcript temp =
      run(s, greeting + ehlo_full + "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n" +
                 "550 5.1.1 No\r\n354 Go\r\n451 4.3.0 Local problem\r\n" + "221 Bye\r\n");
  EXPECT_EQ(temp.results, (strings{"ok@d.example: temporary 451 4.3.0 Local problem [dot]",
                                   "gone@d.example: permanent 550 5.1.1 No [rcpt]"}));
  EXPECT_EQ(temp.output.find("RSET"), std::string::npos);  // the final reply ends it
  const transcript perm = run(s, greeting + ehlo_full + "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n" +
                                     "451 4.2.2 Full\r\n354 Go\r\n554 5.6.0 Spam\r\n221 Bye\r\n");
  EXPECT_EQ(perm.results, (strings{"ok@d.example: permanent 554 5.6.0 Spam [dot]",
                                   "gone@d.example: temporary 451 4.2.2 Full [rcpt]"}));
}

TEST(client_session, no_recipient_accepted_data_refused_then_rset) {
  setup s = basic({"x@d.example", "y@d.example"});
  s.messages.push_back(s.messages[0]);
  s.messages[1].recipients = {"z@d.example"};
  const transcript t =
      run(s, greeting + ehlo_full + "250 2.1.0 Ok\r\n550 5.1.1 No\r\n" +
                 "450 4.2.1 Busy\r\n554 5.5.1 No valid recipients\r\n250 2.0.0 Reset\r\n" +
                 // the connection is reused for the next message
                 "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 Go\r\n250 2.0.0 Done\r\n" + "221 Bye\r\n");
  EXPECT_EQ(t.output,
            "EHLO relay.test\r\n"
            "MAIL FROM:<alice@src.example> SIZE=23\r\n"
            "RCPT TO:<x@d.example>\r\nRCPT TO:<y@d.example>\r\nDATA\r\n"
            "RSET\r\n"
            "MAIL FROM:<alice@src.example> SIZE=23\r\n"
            "RCPT TO:<z@d.example>\r\n"
            "DATA\r\n" +
                body + ".\r\nQUIT\r\n");
  EXPECT_EQ(t.results, (strings{"x@d.example: permanent 550 5.1.1 No [rcpt]",
                                "y@d.example: temporary 450 4.2.1 Busy [rcpt]",
                                "z@d.example: delivered 250 2.0.0 Done [dot]"}));
  EXPECT_EQ(t.events, (strings{"ready", "done", "done", "closed"}));
}

// RFC 2920 3.1: a pipelined DATA accepted although no recipient was gets a lone
// dot (no content), whatever the server answers to it.
TEST(client_session, no_recipient_accepted_but_data_accepted_sends_lone_dot) {
  const setup s = basic({"x@d.example"});
  const transcript t = run(s, greeting + ehlo_full + "250 2.1.0 Ok\r\n550 5.1.1 No\r\n" +
                                  "354 Go ahead\r\n554 5.5.1 No recipients\r\n221 Bye\r\n");
  EXPECT_EQ(t.output,
            "EHLO relay.test\r\nMAIL FROM:<alice@src.example> SIZE=23\r\n"
            "RCPT TO:<x@d.example>\r\nDATA\r\n.\r\nQUIT\r\n");
  EXPECT_EQ(t.results, (strings{"x@d.example: permanent 550 5.1.1 No [rcpt]"}));
  EXPECT_EQ(t.events, (strings{"ready", "done", "closed"}));
  // A 250 to that dot delivers nothing either.
  const transcript ok = run(s, greeting + ehlo_full + "250 2.1.0 Ok\r\n450 4.2.1 Busy\r\n" +
                                   "354 Go ahead\r\n250 2.0.0 Ok\r\n221 Bye\r\n");
  EXPECT_EQ(ok.results, (strings{"x@d.example: temporary 450 4.2.1 Busy [rcpt]"}));
}

TEST(client_session, mail_refused_pipelined) {
  const setup s = basic({"x@d.example", "y@d.example"});
  const transcript t =
      run(s, greeting + ehlo_full + "553 5.1.8 Bad sender\r\n503 5.5.1 No MAIL\r\n" +
                 "503 5.5.1 No MAIL\r\n503 5.5.1 No MAIL\r\n221 Bye\r\n");
  EXPECT_EQ(t.results, (strings{"x@d.example: permanent 553 5.1.8 Bad sender [mail]",
                                "y@d.example: permanent 553 5.1.8 Bad sender [mail]"}));
  EXPECT_EQ(t.output,
            "EHLO relay.test\r\nMAIL FROM:<alice@src.example> SIZE=23\r\n"
            "RCPT TO:<x@d.example>\r\nRCPT TO:<y@d.example>\r\nDATA\r\nQUIT\r\n");
  EXPECT_EQ(t.events, (strings{"ready", "done", "closed"}));
  // A server that accepts DATA anyway gets a lone dot, not the content.
  const transcript odd =
      run(s, greeting + ehlo_full + "553 5.1.8 Bad sender\r\n503 5.5.1 No MAIL\r\n" +
                 "503 5.5.1 No MAIL\r\n354 Go\r\n250 Ok\r\n221 Bye\r\n");
  EXPECT_TRUE(odd.output.ends_with("DATA\r\n.\r\nQUIT\r\n"));
  EXPECT_EQ(odd.results, t.results);
}

TEST(client_session, mail_refused_lock_step_sends_no_rcpt) {
  const setup s = basic({"x@d.example", "y@d.example"});
  const transcript t = run(s, greeting + ehlo_plain + "451 4.3.0 Later\r\n221 Bye\r\n");
  EXPECT_EQ(t.output, "EHLO relay.test\r\nMAIL FROM:<alice@src.example>\r\nQUIT\r\n");
  EXPECT_EQ(t.results, (strings{"x@d.example: temporary 451 4.3.0 Later [mail]",
                                "y@d.example: temporary 451 4.3.0 Later [mail]"}));
}

TEST(client_session, data_refused_then_rset) {
  const setup s = basic();
  const transcript t = run(s, greeting + ehlo_full + "250 Ok\r\n250 Ok\r\n" +
                                  "554 5.5.1 No valid recipients\r\n250 Ok\r\n221 Bye\r\n");
  EXPECT_EQ(t.output,
            "EHLO relay.test\r\nMAIL FROM:<alice@src.example> SIZE=23\r\n"
            "RCPT TO:<bob@dest.example>\r\nDATA\r\nRSET\r\nQUIT\r\n");
  EXPECT_EQ(t.results,
            (strings{"bob@dest.example: permanent 554 5.5.1 No valid recipients [data]"}));
  EXPECT_EQ(t.events, (strings{"ready", "done", "closed"}));
}

TEST(client_session, rset_refused_ends_the_connection) {
  const setup s = basic();
  const transcript t =
      run(s, greeting + ehlo_full + "250 Ok\r\n550 No\r\n554 No recipients\r\n500 What\r\n");
  EXPECT_EQ(t.events, (strings{"ready", "done closed"}));
  EXPECT_TRUE(t.output.ends_with("RSET\r\nQUIT\r\n"));
  EXPECT_EQ(t.results, (strings{"bob@dest.example: permanent 550 No [rcpt]"}));
  EXPECT_EQ(t.phase, "closed");
}

// ---- message checks before MAIL ---------------------------------------------

TEST(client_session, size_over_remote_limit_fails_without_mail) {
  setup s = basic({"a@d.example", "b@d.example"});
  s.messages[0].size = 10001;
  s.messages.push_back(basic().messages[0]);  // a small one goes through afterwards
  const transcript t =
      run(s, greeting + ehlo_full + "250 Ok\r\n250 Ok\r\n354 Go\r\n" + "250 Ok\r\n221 Bye\r\n");
  EXPECT_EQ(t.results, (strings{"a@d.example: permanent 552 5.3.4 Message size exceeds remote "
                                "limit of 10000 octets [mail] (client)",
                                "b@d.example: permanent 552 5.3.4 Message size exceeds remote "
                                "limit of 10000 octets [mail] (client)",
                                "bob@dest.example: delivered 250 Ok [dot]"}));
  EXPECT_EQ(t.output,
            "EHLO relay.test\r\nMAIL FROM:<alice@src.example> SIZE=23\r\n"
            "RCPT TO:<bob@dest.example>\r\nDATA\r\n" +
                body + ".\r\nQUIT\r\n");
  EXPECT_EQ(t.events, (strings{"ready", "done", "done", "closed"}));
}

TEST(client_session, size_without_limit_is_not_checked) {
  setup s = basic();
  s.messages[0].size = 1u << 30;
  const transcript t = run(s, greeting + "250-mx\r\n250 SIZE\r\n250 Ok\r\n250 Ok\r\n354 Go\r\n" +
                                  "250 Ok\r\n221 Bye\r\n");
  EXPECT_NE(t.output.find("MAIL FROM:<alice@src.example> SIZE=1073741824\r\n"), std::string::npos);
  EXPECT_EQ(t.results, (strings{"bob@dest.example: delivered 250 Ok [dot]"}));
}

TEST(client_session, smtp_utf8_message_to_server_without_smtp_utf8) {
  setup s = basic({"jörg@d.example"});
  s.messages[0].smtputf8 = true;
  const transcript t =
      run(s, greeting + "250-mx\r\n250-PIPELINING\r\n250 8BITMIME\r\n" + "221 Bye\r\n");
  EXPECT_EQ(t.output, "EHLO relay.test\r\nQUIT\r\n");
  EXPECT_EQ(t.results, (strings{"jörg@d.example: permanent 553 5.6.7 SMTPUTF8 is required, but "
                                "the server does not offer it [mail] (client)"}));
}

TEST(client_session, mail_parameters_follow_the_servers_extensions) {
  setup s = basic({"jörg@d.example"});
  s.messages[0].smtputf8 = true;
  s.messages[0].body_8bit = true;
  const transcript t =
      run(s, greeting + ehlo_full + "250 Ok\r\n250 Ok\r\n354 Go\r\n" + "250 Ok\r\n221 Bye\r\n");
  EXPECT_NE(t.output.find("MAIL FROM:<alice@src.example> SIZE=23 BODY=8BITMIME SMTPUTF8\r\n"
                          "RCPT TO:<jörg@d.example>\r\n"),
            std::string::npos);
  // 8-bit content to a server without 8BITMIME goes as is, without BODY=.
  setup plain = basic();
  plain.messages[0].body_8bit = true;
  const transcript p = run(plain, greeting + "250-mx\r\n250 PIPELINING\r\n250 Ok\r\n" +
                                      "250 Ok\r\n354 Go\r\n250 Ok\r\n221 Bye\r\n");
  EXPECT_NE(p.output.find("MAIL FROM:<alice@src.example>\r\nRCPT"), std::string::npos);
  EXPECT_EQ(p.results, (strings{"bob@dest.example: delivered 250 Ok [dot]"}));
}

// RFC 3461: the DSN request goes on to a server that advertises DSN, and only
// to one; a recipient without NOTIFY or ORCPT gets none of them (as Postfix).
setup with_dsn_request() {
  setup s = basic({"bob@dest.example", "carol@dest.example", "dave@dest.example"});
  s.messages[0].ret = dsn_ret::headers;
  s.messages[0].envid = "QQ 314+159";
  s.messages[0].dsn = {{notify_success | notify_failure, "rfc822;Bob+Orig@src.example"},
                       {notify_never, ""},
                       {0, ""}};
  return s;
}

TEST(client_session, dsn_parameters_go_to_a_server_with_dsn) {
  const transcript t = run(with_dsn_request(),
                           greeting + "250-mx\r\n250-PIPELINING\r\n250 DSN\r\n" +
                               "250 Ok\r\n250 Ok\r\n250 Ok\r\n250 Ok\r\n354 Go\r\n" +
                               "250 Ok\r\n221 Bye\r\n");
  EXPECT_NE(t.output.find("MAIL FROM:<alice@src.example> RET=HDRS ENVID=QQ+20314+2B159\r\n"
                          "RCPT TO:<bob@dest.example> NOTIFY=SUCCESS,FAILURE "
                          "ORCPT=rfc822;Bob+2BOrig@src.example\r\n"
                          "RCPT TO:<carol@dest.example> NOTIFY=NEVER\r\n"
                          "RCPT TO:<dave@dest.example>\r\n"
                          "DATA\r\n"),
            std::string::npos)
      << t;
  EXPECT_EQ(t.results.size(), 3u);
}

TEST(client_session, dsn_parameters_stay_home_without_dsn) {
  const transcript t = run(with_dsn_request(),
                           greeting + "250-mx\r\n250 PIPELINING\r\n" +
                               "250 Ok\r\n250 Ok\r\n250 Ok\r\n250 Ok\r\n354 Go\r\n" +
                               "250 Ok\r\n221 Bye\r\n");
  EXPECT_NE(t.output.find("MAIL FROM:<alice@src.example>\r\n"
                          "RCPT TO:<bob@dest.example>\r\n"
                          "RCPT TO:<carol@dest.example>\r\n"
                          "RCPT TO:<dave@dest.example>\r\n"
                          "DATA\r\n"),
            std::string::npos)
      << t;
  EXPECT_EQ(t.output.find("NOTIFY"), std::string::npos);
  EXPECT_EQ(t.output.find("ENVID"), std::string::npos);
  // A message without a DSN request sends no parameter to a DSN server either.
  const transcript plain = run(basic(), greeting + "250-mx\r\n250-PIPELINING\r\n250 DSN\r\n" +
                                            "250 Ok\r\n250 Ok\r\n354 Go\r\n250 Ok\r\n" +
                                            "221 Bye\r\n");
  EXPECT_NE(plain.output.find("MAIL FROM:<alice@src.example>\r\nRCPT TO:<bob@dest.example>\r\n"),
            std::string::npos)
      << plain;
}

TEST(client_session, unsendable_addresses_never_reach_the_wire) {
  setup s = basic({"bad\r\nRSET@d.example", "ok@d.example", "Postmaster"});
  const transcript t = run(s, greeting + ehlo_full + "250 Ok\r\n250 Ok\r\n250 Ok\r\n354 Go\r\n" +
                                  "250 Ok\r\n221 Bye\r\n");
  EXPECT_EQ(t.output.find("bad"), std::string::npos);
  EXPECT_EQ(t.results, (strings{"bad\r\nRSET@d.example: permanent 501 5.1.3 Bad recipient "
                                "address syntax [rcpt] (client)",
                                "ok@d.example: delivered 250 Ok [dot]",
                                "Postmaster: delivered 250 Ok [dot]"}));
  setup bad_sender = basic();
  bad_sender.messages[0].sender = "a>b@x";
  const transcript b = run(bad_sender, greeting + ehlo_full + "221 Bye\r\n");
  EXPECT_EQ(b.results, (strings{"bob@dest.example: permanent 501 5.1.7 Bad sender address "
                                "syntax [mail] (client)"}));
  EXPECT_EQ(b.output, "EHLO relay.test\r\nQUIT\r\n");
}

TEST(client_session, null_sender_and_no_recipients) {
  setup s = basic();
  s.messages[0].sender = "";
  s.messages.push_back(basic({}).messages[0]);
  const transcript t =
      run(s, greeting + ehlo_full + "250 Ok\r\n250 Ok\r\n354 Go\r\n" + "250 Ok\r\n221 Bye\r\n");
  EXPECT_NE(t.output.find("MAIL FROM:<> SIZE=23\r\n"), std::string::npos);
  EXPECT_EQ(t.events, (strings{"ready", "done", "done", "closed"}));
  EXPECT_EQ(t.results, (strings{"bob@dest.example: delivered 250 Ok [dot]"}));
}

// ---- DATA content ----------------------------------------------------------

TEST(client_session, content_is_dot_stuffed_in_chunks) {
  const std::string content = ".start\r\nmid\r\n.\r\n..two\r\n\r\n.end";
  setup s = basic();
  s.options.body_chunk_size = 3;
  s.messages[0].body = content;
  s.messages[0].size = content.size();
  const transcript t =
      run(s, greeting + ehlo_full + "250 Ok\r\n250 Ok\r\n354 Go\r\n" + "250 Ok\r\n221 Bye\r\n");
  const std::string expected_data = "DATA\r\n" + dot_stuff(content) + "QUIT\r\n";
  ASSERT_GE(t.output.size(), expected_data.size());
  EXPECT_EQ(t.output.substr(t.output.size() - expected_data.size()), expected_data);
  EXPECT_EQ(dot_stuff(content), "..start\r\nmid\r\n..\r\n...two\r\n\r\n..end\r\n.\r\n");

  // The pump sees data_body until the chunk with the terminator was taken.
  client_session c(s.options);
  c.feed(greeting + ehlo_full);
  c.send(s.messages[0]);
  c.clear_output();
  c.feed("250 Ok\r\n250 Ok\r\n");
  c.clear_output();
  c.feed("354 Go\r\n");
  std::string wire;
  while (!c.output().empty()) {
    EXPECT_EQ(c.phase(), client_phase::data_body);
    EXPECT_LE(c.output().size(), 3u * 2 + 5);
    wire += c.output();
    c.clear_output();
  }
  EXPECT_EQ(wire, dot_stuff(content));
  EXPECT_EQ(c.phase(), client_phase::dot);
}

TEST(client_session, feed_stops_after_354_so_the_content_goes_first) {
  const setup s = basic();
  client_session c(s.options);
  c.feed(greeting + ehlo_full);
  c.send(s.messages[0]);
  c.clear_output();
  const std::string rest = "250 Ok\r\n250 Ok\r\n354 Go\r\n250 2.0.0 Early\r\n";
  const auto step = c.feed(rest);
  EXPECT_EQ(step.what, client_session::event::need_more);
  EXPECT_EQ(step.consumed, rest.size() - 17);
  EXPECT_EQ(c.phase(), client_phase::data_body);
  std::string wire;
  while (!c.output().empty()) {
    wire += c.output();
    c.clear_output();
  }
  EXPECT_EQ(wire, body + ".\r\n");
  EXPECT_EQ(c.feed(std::string_view(rest).substr(step.consumed)).what,
            client_session::event::transaction_done);
  EXPECT_EQ(show(c.take_result().recipients[0]),
            "bob@dest.example: delivered 250 2.0.0 Early [dot]");
}

TEST(client_session, service_closing_during_content) {
  const setup s = basic();
  client_session c(s.options);
  c.feed(greeting + ehlo_full);
  c.send(s.messages[0]);
  c.clear_output();
  c.feed("250 Ok\r\n250 Ok\r\n354 Go\r\n");
  EXPECT_EQ(c.phase(), client_phase::data_body);
  // The server gives up while the content is being written.
  EXPECT_EQ(c.feed("421 4.4.2 Timeout\r\n").what, client_session::event::transaction_done);
  const transaction_result r = c.take_result();
  EXPECT_TRUE(r.destination_throttled);
  EXPECT_TRUE(r.connection_closed);
  EXPECT_EQ(show(r.recipients[0]), "bob@dest.example: temporary 421 4.4.2 Timeout [data_body]");
  EXPECT_EQ(c.phase(), client_phase::closed);
  c.clear_output();
  EXPECT_TRUE(c.output().empty());  // no more content after the session ended
}

TEST(client_session, empty_content_sends_only_the_terminator) {
  setup s = basic();
  s.messages[0].body = "";
  s.messages[0].size = 0;
  const transcript t =
      run(s, greeting + ehlo_full + "250 Ok\r\n250 Ok\r\n354 Go\r\n" + "250 Ok\r\n221 Bye\r\n");
  EXPECT_TRUE(t.output.ends_with("DATA\r\n.\r\nQUIT\r\n"));
}

// ---- EHLO, HELO, greeting ---------------------------------------------------

TEST(client_session, helo_fallback_on_5xx_to_ehlo) {
  for (const std::string refusal : {"500 5.5.1 Unrecognized\r\n", "502 Not implemented\r\n"}) {
    const setup s = basic();
    const transcript t = run(s, greeting + refusal + "250 mx.old.example\r\n250 Ok\r\n" +
                                    "250 Ok\r\n354 Go\r\n250 Ok\r\n221 Bye\r\n");
    EXPECT_EQ(t.output,
              "EHLO relay.test\r\nHELO relay.test\r\n"
              "MAIL FROM:<alice@src.example>\r\nRCPT TO:<bob@dest.example>\r\n"
              "DATA\r\n" +
                  body + ".\r\nQUIT\r\n");
    EXPECT_EQ(t.events, (strings{"ready", "done", "closed"}));
  }
}

TEST(client_session, helo_refused_is_connection_failure) {
  const transcript t = run(basic(), greeting + "502 No\r\n550 5.7.1 Go away\r\n");
  EXPECT_EQ(t.events, strings{"failed"});
  EXPECT_EQ(t.failure, "EHLO/HELO refused, permanent: 550 5.7.1 Go away [helo]");
  EXPECT_TRUE(t.output.ends_with("HELO relay.test\r\nQUIT\r\n"));
  const transcript temp = run(basic(), greeting + "450 4.3.2 Busy\r\n");
  EXPECT_EQ(temp.failure, "EHLO/HELO refused, temporary: 450 4.3.2 Busy [ehlo]");
}

TEST(client_session, greeting_refusals) {
  const transcript perm = run(basic(), "554 5.7.1 No SMTP service here\r\n");
  EXPECT_EQ(perm.events, strings{"failed"});
  EXPECT_EQ(perm.failure, "greeting refused, permanent: 554 5.7.1 No SMTP service here [greeting]");
  EXPECT_EQ(perm.output, "QUIT\r\n");
  const transcript temp = run(basic(), "450 Try later\r\n");
  EXPECT_EQ(temp.failure, "greeting refused, temporary: 450 Try later [greeting]");
  const transcript busy = run(basic(), "421-4.7.0 Too many connections\r\n421 4.7.0 bye\r\n");
  EXPECT_EQ(
      busy.failure,
      "greeting refused, temporary: 421 4.7.0 Too many connections; bye [greeting] throttled");
  EXPECT_EQ(busy.output, "");  // the server closes; no QUIT after 421
  const transcript rate = run(basic(), "450 4.7.0 Rate limited\r\n");
  EXPECT_EQ(rate.failure,
            "greeting refused, temporary: 450 4.7.0 Rate limited [greeting] throttled");
}

TEST(client_session, capabilities_parsed) {
  client_session c(client_options{});
  c.feed(greeting);
  c.feed(
      "250-mx.example Hello\r\n250-pipelining\r\n250-SIZE 52428800\r\n250-8BITMIME\r\n"
      "250-AUTH=LOGIN\r\n250-AUTH CRAM-MD5 PLAIN\r\n250-ENHANCEDSTATUSCODES\r\n"
      "250-CHUNKING\r\n250-STARTTLS\r\n250-X-UNKNOWN stuff\r\n250 SMTPUTF8\r\n");
  const server_capabilities& caps = c.capabilities();
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
  EXPECT_FALSE(caps.dsn);
  EXPECT_EQ(c.greeting().to_string(), "220 mx.dest.example ESMTP");
  EXPECT_EQ(c.phase(), client_phase::ready);
}

// ---- STARTTLS -------------------------------------------------------------

TEST(client_session, start_tls_resets_capabilities) {
  setup s = basic();
  s.options.want_tls = true;
  const transcript t =
      run(s, {greeting + "250-mx\r\n250-PIPELINING\r\n250-SIZE 10\r\n250 STARTTLS\r\n" +
                  "220 2.0.0 Ready to start TLS\r\n",
              // After TLS: no PIPELINING, no SIZE limit; the old ones must be forgotten.
              "250-mx\r\n250 8BITMIME\r\n250 Ok\r\n250 Ok\r\n354 Go\r\n250 Ok\r\n221 Bye\r\n"});
  EXPECT_EQ(t.output,
            "EHLO relay.test\r\nSTARTTLS\r\nEHLO relay.test\r\n"
            "MAIL FROM:<alice@src.example>\r\nRCPT TO:<bob@dest.example>\r\nDATA\r\n" +
                body + ".\r\nQUIT\r\n");
  EXPECT_EQ(t.events, (strings{"start_tls", "ready", "done", "closed"}));
  EXPECT_EQ(t.results, (strings{"bob@dest.example: delivered 250 Ok [dot]"}));

  client_session c(s.options);
  c.feed(greeting);
  c.feed("250-mx\r\n250-PIPELINING\r\n250 STARTTLS\r\n");
  EXPECT_EQ(c.phase(), client_phase::starttls);
  EXPECT_EQ(c.feed("220 Go\r\n").what, client_session::event::start_tls);
  EXPECT_FALSE(c.tls_active());
  c.tls_established();
  EXPECT_TRUE(c.tls_active());
  EXPECT_FALSE(c.capabilities().pipelining);
  EXPECT_FALSE(c.capabilities().starttls);
  EXPECT_EQ(c.phase(), client_phase::ehlo);
}

TEST(client_session, start_tls_not_offered_under_may_continues_in_clear) {
  setup s = basic();
  s.options.want_tls = true;
  const transcript t =
      run(s, greeting + ehlo_full + "250 Ok\r\n250 Ok\r\n354 Go\r\n250 Ok\r\n" + "221 Bye\r\n");
  EXPECT_EQ(t.output.find("STARTTLS"), std::string::npos);
  EXPECT_EQ(t.events, (strings{"ready", "done", "closed"}));
}

TEST(client_session, start_tls_required_but_not_offered) {
  setup s = basic();
  s.options.require_tls = true;
  const transcript t = run(s, greeting + ehlo_full);
  EXPECT_EQ(t.events, strings{"failed"});
  EXPECT_EQ(t.failure,
            "TLS unavailable, temporary: 451 4.7.4 TLS is required, but the server "
            "does not offer STARTTLS [ehlo] (client)");
  EXPECT_EQ(t.output, "EHLO relay.test\r\nQUIT\r\n");
}

TEST(client_session, start_tls_refused) {
  setup may = basic();
  may.options.want_tls = true;
  const std::string ehlo_tls = "250-mx\r\n250-PIPELINING\r\n250 STARTTLS\r\n";
  const transcript t = run(may, greeting + ehlo_tls + "454 4.7.0 TLS not available\r\n" +
                                    "250 Ok\r\n250 Ok\r\n354 Go\r\n250 Ok\r\n221 Bye\r\n");
  EXPECT_EQ(t.events, (strings{"ready", "done", "closed"}));
  EXPECT_NE(t.output.find("STARTTLS\r\nMAIL FROM"), std::string::npos);

  setup required = may;
  required.options.require_tls = true;
  const transcript r = run(required, greeting + ehlo_tls + "454 4.7.0 TLS not available\r\n");
  EXPECT_EQ(r.failure, "TLS unavailable, temporary: 454 4.7.0 TLS not available [starttls]");
  EXPECT_TRUE(r.output.ends_with("STARTTLS\r\nQUIT\r\n"));
}

TEST(client_session, bytes_after_start_tls_reply_are_an_injection) {
  client_options o;
  o.want_tls = true;
  client_session c(o);
  c.feed(greeting);
  c.feed("250-mx\r\n250 STARTTLS\r\n");
  const auto step = c.feed("220 Go\r\n250 injected\r\n");
  EXPECT_EQ(step.what, client_session::event::failed);
  EXPECT_EQ(c.failure().cause, failure_cause::protocol_error);
  EXPECT_EQ(c.phase(), client_phase::closed);
  // Bytes fed while the handshake should be running are refused the same way.
  client_session d(o);
  d.feed(greeting);
  d.feed("250-mx\r\n250 STARTTLS\r\n");
  EXPECT_EQ(d.feed("220 Go\r\n").what, client_session::event::start_tls);
  EXPECT_EQ(d.feed("250 x\r\n").what, client_session::event::failed);
  EXPECT_EQ(d.failure().phase, client_phase::tls_handshake);
}

// ---- AUTH -------------------------------------------------------------------

setup smarthost() {
  setup s = basic();
  s.options.want_tls = true;
  s.options.require_tls = true;
  s.options.auth_user = "user";
  s.options.auth_password = "pass";
  return s;
}

const std::string ehlo_starttls = "250-smarthost\r\n250-PIPELINING\r\n250 STARTTLS\r\n";
const std::string ehlo_after_tls =
    "250-smarthost\r\n250-PIPELINING\r\n250-AUTH PLAIN LOGIN\r\n250 ENHANCEDSTATUSCODES\r\n";
const std::string rest_of_delivery = "250 Ok\r\n250 Ok\r\n354 Go\r\n250 Ok\r\n221 Bye\r\n";

TEST(client_session, auth_plain_after_start_tls) {
  const transcript t = run(
      smarthost(), {greeting + ehlo_starttls + "220 Go\r\n",
                    ehlo_after_tls + "235 2.7.0 Authentication successful\r\n" + rest_of_delivery});
  EXPECT_EQ(t.output,
            "EHLO relay.test\r\nSTARTTLS\r\nEHLO relay.test\r\n"
            "AUTH PLAIN AHVzZXIAcGFzcw==\r\n"
            "MAIL FROM:<alice@src.example>\r\nRCPT TO:<bob@dest.example>\r\nDATA\r\n" +
                body + ".\r\nQUIT\r\n");
  EXPECT_EQ(t.events, (strings{"start_tls", "ready", "done", "closed"}));
}

TEST(client_session, auth_login_exchange) {
  setup s = smarthost();
  s.options.auth_user = "foobar";  // RFC 4648 test vectors
  s.options.auth_password = "fooba";
  const transcript t =
      run(s, {greeting + ehlo_starttls + "220 Go\r\n",
              "250-smarthost\r\n250 AUTH LOGIN\r\n334 VXNlcm5hbWU6\r\n334 UGFzc3dvcmQ6\r\n"
              "235 2.7.0 Ok\r\n" +
                  rest_of_delivery});
  EXPECT_NE(t.output.find("EHLO relay.test\r\nAUTH LOGIN\r\nZm9vYmFy\r\nZm9vYmE=\r\nMAIL"),
            std::string::npos);
  EXPECT_EQ(t.events, (strings{"start_tls", "ready", "done", "closed"}));

  s.options.auth_user = "f";
  s.options.auth_password = "fo";
  s.messages.clear();
  const transcript v =
      run(s, {greeting + ehlo_starttls + "220 Go\r\n",
              "250-smarthost\r\n250 AUTH=LOGIN\r\n334 x\r\n334 y\r\n235 Ok\r\n221 Bye\r\n"});
  EXPECT_NE(v.output.find("AUTH LOGIN\r\nZg==\r\nZm8=\r\n"), std::string::npos);
}

TEST(client_session, auth_rejected_is_our_fault_and_temporary) {
  for (const std::string refusal :
       {"535 5.7.8 Authentication credentials invalid\r\n", "504 5.5.4 Unrecognized\r\n"}) {
    const transcript t =
        run(smarthost(), {greeting + ehlo_starttls + "220 Go\r\n", ehlo_after_tls + refusal});
    EXPECT_EQ(t.events, (strings{"start_tls", "failed"}));
    EXPECT_TRUE(t.failure.starts_with("authentication rejected, temporary: 5")) << t.failure;
    EXPECT_TRUE(t.failure.ends_with("[auth] local_fault")) << t.failure;
    EXPECT_TRUE(t.output.ends_with("QUIT\r\n"));
  }
  const transcript temp =
      run(smarthost(), {greeting + ehlo_starttls + "220 Go\r\n",
                        ehlo_after_tls + "454 4.7.0 Temporary authentication failure\r\n"});
  EXPECT_EQ(temp.failure,
            "authentication failed temporarily, temporary: 454 4.7.0 Temporary "
            "authentication failure [auth]");
}

TEST(client_session, auth_needs_tls_unless_allowed) {
  setup s = basic();
  s.options.auth_user = "user";
  s.options.auth_password = "pass";
  const std::string ehlo_auth = "250-smarthost\r\n250 AUTH PLAIN\r\n";
  const transcript t = run(s, greeting + ehlo_auth);
  EXPECT_EQ(t.failure,
            "authentication unavailable, temporary: 451 4.7.0 Credentials are not "
            "sent without TLS, and TLS is not active [ehlo] (client) local_fault");
  EXPECT_EQ(t.output.find("AUTH"), std::string::npos);

  s.options.allow_plaintext_auth = true;  // loopback smarthost
  const transcript ok = run(s, greeting + ehlo_auth + "235 Ok\r\n" + rest_of_delivery);
  EXPECT_NE(ok.output.find("AUTH PLAIN AHVzZXIAcGFzcw==\r\n"), std::string::npos);
  EXPECT_EQ(ok.events, (strings{"ready", "done", "closed"}));

  // Implicit TLS counts as TLS.
  setup implicit = basic();
  implicit.options.implicit_tls = true;
  implicit.options.want_tls = true;
  implicit.options.auth_user = "user";
  implicit.options.auth_password = "pass";
  const transcript i = run(implicit, greeting + ehlo_auth + "235 Ok\r\n" + rest_of_delivery);
  EXPECT_EQ(i.output.find("STARTTLS"), std::string::npos);
  EXPECT_EQ(i.events, (strings{"ready", "done", "closed"}));
}

TEST(client_session, auth_without_usable_mechanism) {
  const transcript t = run(smarthost(), {greeting + ehlo_starttls + "220 Go\r\n",
                                         "250-smarthost\r\n250 AUTH CRAM-MD5 XOAUTH2\r\n"});
  EXPECT_EQ(t.failure,
            "authentication unavailable, temporary: 451 4.7.0 The server offers "
            "neither AUTH PLAIN nor AUTH LOGIN [ehlo] (client) local_fault");
  const transcript none =
      run(smarthost(), {greeting + ehlo_starttls + "220 Go\r\n", "250 smarthost\r\n"});
  EXPECT_EQ(none.events, (strings{"start_tls", "failed"}));
}

TEST(client_session, auth_plain_too_long_for_one_line_waits_for_challenge) {
  setup s = smarthost();
  s.options.auth_password = std::string(400, 'p');
  s.messages.clear();
  const transcript t = run(s, {greeting + ehlo_starttls + "220 Go\r\n",
                               ehlo_after_tls + "334 \r\n235 Ok\r\n221 Bye\r\n"});
  const std::size_t at = t.output.find("AUTH PLAIN\r\n");
  ASSERT_NE(at, std::string::npos);
  const std::size_t eol = t.output.find("\r\n", at + 12);
  EXPECT_EQ(eol - (at + 12), (400 + 6 + 2) / 3 * 4);  // the base64 response line
  EXPECT_EQ(t.events, (strings{"start_tls", "ready", "closed"}));
}

TEST(client_session, unexpected_challenge_is_protocol_error) {
  const transcript t =
      run(smarthost(), {greeting + ehlo_starttls + "220 Go\r\n", ehlo_after_tls + "334 more?\r\n"});
  EXPECT_EQ(t.failure,
            "protocol error, temporary: 451 4.5.0 Protocol error: unexpected 334 "
            "challenge to AUTH [auth] (client)");
}

// ---- 421, throttling ------------------------------------------------------

TEST(client_session, service_closing_mid_transaction) {
  const setup s = basic({"a@d.example", "b@d.example", "c@d.example"});
  // a accepted, b refused, c accepted, then 421 to DATA.
  const std::string until_421 = greeting + ehlo_full +
                                "250 Ok\r\n250 Ok\r\n550 5.1.1 No\r\n250 Ok\r\n" +
                                "421 4.3.2 Shutting down\r\n";
  const transcript t = run(s, until_421 + "221 never read\r\n");
  EXPECT_EQ(t.events, (strings{"ready", "done throttled closed"}));
  EXPECT_EQ(t.results, (strings{"a@d.example: temporary 421 4.3.2 Shutting down [data]",
                                "b@d.example: permanent 550 5.1.1 No [rcpt]",
                                "c@d.example: temporary 421 4.3.2 Shutting down [data]"}));
  EXPECT_EQ(t.phase, "closed");
  EXPECT_FALSE(t.output.ends_with("QUIT\r\n"));
  EXPECT_EQ(t.consumed, until_421.size());
}

TEST(client_session, service_closing_in_reply_to_mail) {
  const setup s = basic({"a@d.example", "b@d.example"});
  const transcript t = run(s, greeting + ehlo_full + "421 4.7.0 Too many messages\r\n");
  EXPECT_EQ(t.events, (strings{"ready", "done throttled closed"}));
  EXPECT_EQ(t.results, (strings{"a@d.example: temporary 421 4.7.0 Too many messages [mail]",
                                "b@d.example: temporary 421 4.7.0 Too many messages [mail]"}));
}

TEST(client_session, service_closing_after_final_dot) {
  const setup s = basic();
  const transcript t =
      run(s, greeting + ehlo_full + "250 Ok\r\n250 Ok\r\n354 Go\r\n" + "421 4.4.2 Timeout\r\n");
  EXPECT_EQ(t.results, (strings{"bob@dest.example: temporary 421 4.4.2 Timeout [dot]"}));
  EXPECT_EQ(t.events, (strings{"ready", "done throttled closed"}));
}

TEST(client_session, rate_limited_recipient_throttles_the_destination) {
  const setup s = basic({"a@d.example", "b@d.example"});
  const transcript t =
      run(s, greeting + ehlo_full + "250 Ok\r\n250 Ok\r\n" +
                 "451 4.7.650 The mail server has been temporarily rate limited\r\n" +
                 "354 Go\r\n250 Ok\r\n221 Bye\r\n");
  EXPECT_EQ(t.events, (strings{"ready", "done throttled", "closed"}));
  EXPECT_EQ(t.results, (strings{"a@d.example: delivered 250 Ok [dot]",
                                "b@d.example: temporary 451 4.7.650 The mail server has been "
                                "temporarily rate limited [rcpt]"}));
}

TEST(client_session, service_closing_while_idle_is_not_throttling) {
  setup s = basic();
  s.messages.clear();
  client_session c(s.options);
  c.feed(greeting + ehlo_full);
  EXPECT_EQ(c.phase(), client_phase::ready);
  const auto step = c.feed("421 4.4.2 Idle timeout\r\n");
  EXPECT_EQ(step.what, client_session::event::failed);
  EXPECT_EQ(show(c.failure()), "service closing, temporary: 421 4.4.2 Idle timeout [ready]");
}

TEST(client_session, service_closing_during_set_up) {
  setup s = basic();
  const transcript t = run(s, greeting + "421 4.3.2 Bye\r\n");
  EXPECT_EQ(t.failure, "service closing, temporary: 421 4.3.2 Bye [ehlo] throttled");
}

// ---- malformed replies ----------------------------------------------------

TEST(client_session, malformed_reply_during_set_up) {
  const transcript t = run(basic(), "220 hi\r\n250-a\r\n251 b\r\n");
  EXPECT_EQ(t.failure,
            "protocol error, temporary: 451 4.5.0 Protocol error: different codes in "
            "one multi-line reply [ehlo] (client)");
  const transcript junk = run(basic(), "HTTP/1.1 400 Bad Request\r\n");
  EXPECT_EQ(junk.failure,
            "protocol error, temporary: 451 4.5.0 Protocol error: malformed reply "
            "code [greeting] (client)");
  const transcript prelim = run(basic(), "354 what\r\n");
  EXPECT_EQ(prelim.failure,
            "protocol error, temporary: 451 4.5.0 Protocol error: unexpected "
            "greeting 354 what [greeting] (client)");
}

TEST(client_session, malformed_reply_during_transaction) {
  const setup s = basic({"a@d.example", "b@d.example"});
  const transcript t = run(s, greeting + ehlo_full + "250 Ok\r\n550 5.1.1 No\r\n250x\r\n");
  EXPECT_EQ(t.events, (strings{"ready", "done closed"}));
  EXPECT_EQ(t.results, (strings{"a@d.example: permanent 550 5.1.1 No [rcpt]",
                                "b@d.example: temporary 451 4.5.0 Protocol error: malformed "
                                "reply line [rcpt] (client)"}));
  // A reply class that makes no sense for the command.
  const transcript odd = run(s, greeting + ehlo_full + "354 Go\r\n");
  EXPECT_EQ(odd.results[0],
            "a@d.example: temporary 451 4.5.0 Protocol error: unexpected reply "
            "to MAIL 354 Go [mail] (client)");
  const transcript ok_to_data =
      run(s, greeting + ehlo_full + "250 Ok\r\n250 Ok\r\n250 Ok\r\n" + "250 Ok\r\n");
  EXPECT_EQ(ok_to_data.results[1],
            "b@d.example: temporary 451 4.5.0 Protocol error: unexpected "
            "reply to DATA 250 Ok [data] (client)");
}

TEST(client_session, overlong_reply_is_protocol_error) {
  setup s = basic();
  const transcript t = run(s, greeting + "250-" + std::string(5000, 'x') + "\r\n");
  EXPECT_EQ(t.failure,
            "protocol error, temporary: 451 4.5.0 Protocol error: reply line too long "
            "[ehlo] (client)");
  std::string many = greeting;
  for (int i = 0; i < 600; ++i) many += "250-X\r\n";
  client_session c(s.options);
  EXPECT_EQ(c.feed(many).what, client_session::event::failed);
  EXPECT_EQ(c.failure().response.text, "Protocol error: too many lines in one reply");
}

TEST(client_session, unsolicited_reply_while_idle) {
  client_session c(client_options{});
  c.feed(greeting + ehlo_full);
  EXPECT_EQ(c.feed("250 surprise\r\n").what, client_session::event::failed);
  EXPECT_EQ(c.failure().cause, failure_cause::protocol_error);
  EXPECT_EQ(c.feed("250 more\r\n").consumed, 0u);
  EXPECT_EQ(c.feed("250 more\r\n").what, client_session::event::closed);
}

// ---- the pump reports a lost connection -------------------------------------

TEST(client_session, connection_lost_in_transaction) {
  const setup s = basic({"a@d.example", "b@d.example"});
  client_session c(s.options);
  c.feed(greeting + ehlo_full);
  c.send(s.messages[0]);
  c.feed("250 Ok\r\n250 Ok\r\n550 No\r\n354 Go\r\n");
  while (!c.output().empty()) c.clear_output();
  EXPECT_EQ(c.phase(), client_phase::dot);
  EXPECT_EQ(c.connection_lost("timed out"), client_session::event::transaction_done);
  const transaction_result r = c.take_result();
  ASSERT_EQ(r.recipients.size(), 2u);
  EXPECT_EQ(show(r.recipients[0]),
            "a@d.example: temporary 451 4.4.2 Connection lost: timed out (in phase dot) [dot] "
            "(client)");
  EXPECT_EQ(show(r.recipients[1]), "b@d.example: permanent 550 No [rcpt]");
  EXPECT_TRUE(r.connection_closed);
  EXPECT_FALSE(r.destination_throttled);
  EXPECT_EQ(c.phase(), client_phase::closed);
  EXPECT_EQ(c.connection_lost("again"), client_session::event::closed);
}

TEST(client_session, handshake_failure_reported_by_the_pump) {
  client_options o;
  o.want_tls = true;
  client_session c(o);
  c.feed(greeting);
  c.feed("250-mx\r\n250 STARTTLS\r\n");
  EXPECT_EQ(c.feed("220 Go\r\n").what, client_session::event::start_tls);
  EXPECT_EQ(c.connection_lost("TLS handshake failed"), client_session::event::failed);
  EXPECT_EQ(c.failure().cause, failure_cause::connection_lost);
  EXPECT_EQ(c.failure().phase, client_phase::tls_handshake);
  EXPECT_EQ(c.failure().status, delivery_status::temporary);
}

TEST(client_session, connection_lost_outside_transaction) {
  client_session greeting_wait(client_options{});
  EXPECT_EQ(greeting_wait.connection_lost("connection reset"), client_session::event::failed);
  EXPECT_EQ(show(greeting_wait.failure()),
            "connection lost, temporary: 451 4.4.2 Connection lost: connection reset (in phase "
            "greeting) [greeting] (client)");

  client_session idle(client_options{});
  idle.feed(greeting + ehlo_full);
  EXPECT_EQ(idle.connection_lost("EOF"), client_session::event::failed);

  client_session quitting(client_options{});
  quitting.feed(greeting + ehlo_full);
  quitting.quit();
  EXPECT_EQ(quitting.output(), "EHLO localhost\r\nQUIT\r\n");
  EXPECT_EQ(quitting.phase(), client_phase::quit);
  EXPECT_EQ(quitting.connection_lost("EOF"), client_session::event::closed);
}

// ---- connection reuse -------------------------------------------------------

TEST(client_session, many_messages_on_one_connection) {
  setup s = basic({"a@d.example"});
  for (int i = 0; i < 3; ++i) s.messages.push_back(basic({"b@d.example"}).messages[0]);
  std::string server = greeting + ehlo_full;
  // 1: delivered; 2: refused at RCPT (RSET); 3: DATA refused (RSET); 4: delivered.
  server += "250 Ok\r\n250 Ok\r\n354 Go\r\n250 2.0.0 One\r\n";
  server += "250 Ok\r\n550 5.1.1 No\r\n554 5.5.1 No valid recipients\r\n250 Reset\r\n";
  server += "250 Ok\r\n250 Ok\r\n451 4.3.0 Later\r\n250 Reset\r\n";
  server += "250 Ok\r\n250 Ok\r\n354 Go\r\n250 2.0.0 Four\r\n221 Bye\r\n";
  const transcript t = run(s, server);
  EXPECT_EQ(t.events, (strings{"ready", "done", "done", "done", "done", "closed"}));
  EXPECT_EQ(t.results, (strings{"a@d.example: delivered 250 2.0.0 One [dot]",
                                "b@d.example: permanent 550 5.1.1 No [rcpt]",
                                "b@d.example: temporary 451 4.3.0 Later [data]",
                                "b@d.example: delivered 250 2.0.0 Four [dot]"}));
  EXPECT_EQ(t.phase, "closed");
}

TEST(client_session, quit_answered_by_anything_closes) {
  setup s = basic();
  s.messages.clear();
  const transcript t = run(s, greeting + ehlo_full + "500 whatever\r\n");
  EXPECT_EQ(t.events, (strings{"ready", "closed"}));
  EXPECT_EQ(t.output, "EHLO relay.test\r\nQUIT\r\n");
}

// Mutated and truncated scripts: whatever the server sends, the session ends in
// a defined state without crashing (run under the sanitizers), every recipient
// gets exactly one result, and nothing is delivered without a 2xx to the dot.
TEST(client_session, mutated_scripts_never_break_the_session) {
  const std::string script = greeting + ehlo_full + "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n" +
                             "550 5.1.1 No\r\n354 Go\r\n250 2.0.0 Ok\r\n" +
                             "250 Ok\r\n250 Ok\r\n250 Ok\r\n354 Go\r\n250 Ok\r\n221 Bye\r\n";
  const std::string noise = std::string("0123456789 -.\r\n\n2345") + '\0' + '\xff';
  std::mt19937 rng(1234);
  for (int round = 0; round < 3000; ++round) {
    std::string input = script;
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits && !input.empty(); ++e) {
      const std::size_t pos = rng() % input.size();
      switch (rng() % 3) {
        case 0:
          input[pos] = noise[rng() % noise.size()];
          break;
        case 1:
          input.erase(pos, 1 + rng() % 8);
          break;
        default:
          input.insert(pos, 1, noise[rng() % noise.size()]);
      }
    }
    setup s = basic({"a@d.example", "b@d.example", "c@d.example"});
    s.messages.push_back(basic().messages[0]);
    s.options.want_tls = rng() % 2 == 0;
    const transcript t = run_chunks(s, {input});
    std::size_t delivered = 0;
    for (const auto& r : t.results) {
      if (r.find(": delivered 2") != std::string::npos) {
        EXPECT_NE(r.find("[dot]"), std::string::npos) << r;
        ++delivered;
      }
    }
    EXPECT_LE(t.results.size(), 4u);
    EXPECT_LE(delivered, 3u);
    EXPECT_LE(t.consumed, input.size());
  }
}

TEST(client_session, phase_names) {
  EXPECT_EQ(to_string(client_phase::data_body), "data_body");
  EXPECT_EQ(to_string(client_phase::tls_handshake), "tls_handshake");
}

}  // namespace
}  // namespace smtp
