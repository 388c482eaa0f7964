// The outcome mapping (delivery_outcome.hpp) as a table, fed with REAL client
// results: smtp::client_session is driven with server reply bytes for each row and
// its result mapped; each row checks what, code, enhanced status, cause, the
// command answered, counts_as_attempt and whether the destination backs off.
#include "relayd/delivery_outcome.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace relayd {
namespace {

using queue::outcome_cause;
using queue::smtp_command;
using event = smtp::client_session::event;
constexpr std::string_view relay = "mx.example[192.0.2.1]:25";

// Feeds `bytes` as the server's, writing (discarding) every command the client
// queues; returns the first event other than need_more (or need_more).
event feed(smtp::client_session& s, std::string_view bytes) {
  std::string in(bytes);
  for (;;) {
    while (!s.output().empty()) s.clear_output();
    if (in.empty()) return event::need_more;
    auto st = s.feed(in);
    in.erase(0, st.consumed);
    if (st.what != event::need_more) {
      while (!s.output().empty()) s.clear_output();
      return st.what;
    }
  }
}

smtp::client_options options(bool tls = false, bool auth = false) {
  smtp::client_options o;
  o.want_tls = o.require_tls = tls;
  if (auth) {
    o.auth_user = "u";
    o.auth_password = "p";
    o.allow_plaintext_auth = true;
  }
  return o;
}

smtp::outgoing_message message() {
  smtp::outgoing_message m;
  m.sender = "a@src.example";
  m.recipients = {"b@dst.example"};
  m.body = "Subject: x\r\n\r\nhi\r\n";
  m.size = m.body.size();
  return m;
}

struct row {
  const char* name;
  outcome_kind what;
  std::uint16_t code;
  const char* status;
  outcome_cause cause;
  smtp_command in_reply_to;
  bool throttles;
};

void check(const recipient_outcome& o, const row& want) {
  SCOPED_TRACE(want.name);
  EXPECT_EQ(o.what, want.what);
  EXPECT_EQ(o.code, want.code);
  EXPECT_EQ(o.status, want.status);
  EXPECT_EQ(o.cause, want.cause) << to_string(o.cause);
  EXPECT_EQ(o.in_reply_to, want.in_reply_to) << to_string(o.in_reply_to);
  EXPECT_TRUE(o.counts_as_attempt);
  EXPECT_EQ(o.throttles_destination, want.throttles);
  EXPECT_EQ(o.description, describe(o));
}

// Set-up failures: the server's bytes up to the failure.
TEST(delivery_outcome, set_up_failures) {
  struct setup_row {
    row want;
    smtp::client_options opts;
    std::string server;
  };
  const std::vector<setup_row> rows = {
      {{"greeting 421", outcome_kind::deferred, 421, "4.0.0", outcome_cause::reply,
        smtp_command::greeting, true},
       options(), "421 busy\r\n"},
      {{"greeting 554", outcome_kind::deferred, 554, "4.0.0", outcome_cause::reply,
        smtp_command::greeting, false},
       options(), "554 go away\r\n"},
      {{"EHLO and HELO refused", outcome_kind::deferred, 550, "4.0.0", outcome_cause::reply,
        smtp_command::helo, false},
       options(), "220 hi\r\n550 no\r\n550 no\r\n"},
      {{"STARTTLS refused", outcome_kind::deferred, 454, "4.7.0", outcome_cause::tls,
        smtp_command::starttls, false},
       options(true), "220 hi\r\n250-mx\r\n250 STARTTLS\r\n454 4.7.0 TLS not available\r\n"},
      {{"AUTH 535", outcome_kind::deferred, 535, "4.7.8", outcome_cause::auth,
        smtp_command::auth, false},
       options(false, true), "220 hi\r\n250-mx\r\n250 AUTH PLAIN\r\n535 5.7.8 bad\r\n"},
      {{"AUTH 454", outcome_kind::deferred, 454, "4.7.0", outcome_cause::auth,
        smtp_command::auth, false},
       options(false, true), "220 hi\r\n250-mx\r\n250 AUTH PLAIN\r\n454 4.7.0 later\r\n"},
  };
  for (const auto& r : rows) {
    smtp::client_session s(r.opts);
    ASSERT_EQ(feed(s, r.server), event::failed) << r.want.name;
    check(outcome_of(s.failure(), relay), r.want);
  }
}

TEST(delivery_outcome, connection_lost_during_set_up) {
  smtp::client_session s(options());
  ASSERT_EQ(feed(s, "220 hi\r\n"), event::need_more);
  ASSERT_EQ(s.connection_lost("timeout"), event::failed);
  check(outcome_of(s.failure(), relay, outcome_cause::timeout),
        {"lost after the greeting", outcome_kind::deferred, 0, "4.4.2", outcome_cause::timeout,
         smtp_command::ehlo, false});
}

// Transactions without PIPELINING: the replies up to the deciding one.
TEST(delivery_outcome, transaction_results) {
  struct txn_row {
    row want;
    std::string server;  // after MAIL was sent (and RSET's reply when no RCPT passed)
  };
  const std::vector<txn_row> rows = {
      {{"MAIL 452", outcome_kind::deferred, 452, "4.3.1", outcome_cause::reply,
        smtp_command::mail, false},
       "452 4.3.1 full\r\n250 reset\r\n"},
      {{"RCPT 550", outcome_kind::failed, 550, "5.1.1", outcome_cause::reply,
        smtp_command::rcpt, false},
       "250 ok\r\n550 5.1.1 no such user\r\n250 reset\r\n"},
      {{"RCPT 450 greylisted", outcome_kind::deferred, 450, "4.7.1", outcome_cause::reply,
        smtp_command::rcpt, true},
       "250 ok\r\n450 4.7.1 greylisted\r\n250 reset\r\n"},
      {{"RCPT 450", outcome_kind::deferred, 450, "4.2.0", outcome_cause::reply,
        smtp_command::rcpt, false},
       "250 ok\r\n450 4.2.0 mailbox busy\r\n250 reset\r\n"},
      {{"DATA 554", outcome_kind::failed, 554, "5.0.0", outcome_cause::reply, smtp_command::data,
        false},
       "250 ok\r\n250 ok\r\n554 no data\r\n250 reset\r\n"},
      {{"final 250", outcome_kind::delivered, 250, "2.0.0", outcome_cause::none,
        smtp_command::end_of_data, false},
       "250 ok\r\n250 ok\r\n354 go\r\n250 2.0.0 queued\r\n"},
      {{"final 451", outcome_kind::deferred, 451, "4.3.0", outcome_cause::reply,
        smtp_command::end_of_data, false},
       "250 ok\r\n250 ok\r\n354 go\r\n451 4.3.0 later\r\n"},
      {{"final 552", outcome_kind::failed, 552, "5.3.4", outcome_cause::reply,
        smtp_command::end_of_data, false},
       "250 ok\r\n250 ok\r\n354 go\r\n552 5.3.4 too big\r\n"},
      {{"MAIL 530", outcome_kind::failed, 530, "5.7.0", outcome_cause::auth, smtp_command::mail,
        false},
       "530 5.7.0 authentication required\r\n250 reset\r\n"},
  };
  const auto msg = message();
  for (const auto& r : rows) {
    smtp::client_session s(options());
    ASSERT_EQ(feed(s, "220 hi\r\n250 mx\r\n"), event::ready) << r.want.name;
    ASSERT_EQ(s.send(msg), event::need_more);
    ASSERT_EQ(feed(s, r.server), event::transaction_done) << r.want.name;
    auto result = s.take_result();
    ASSERT_EQ(result.recipients.size(), 1u);
    check(outcome_of(result.recipients[0], relay), r.want);
    EXPECT_FALSE(server_heard_nothing(result)) << r.want.name;
  }
}

// The connection ends in each phase of a transaction: only before MAIL's reply
// has the server heard nothing (the reuse retry's condition).
TEST(delivery_outcome, connection_lost_in_each_phase) {
  struct lost_row {
    row want;
    std::string server;  // before the connection ends
    bool heard_nothing;
  };
  const std::vector<lost_row> rows = {
      {{"lost in mail", outcome_kind::deferred, 0, "4.4.2", outcome_cause::lost,
        smtp_command::mail, false},
       "", true},
      {{"lost in rcpt", outcome_kind::deferred, 0, "4.4.2", outcome_cause::lost,
        smtp_command::rcpt, false},
       "250 ok\r\n", false},
      {{"lost in data", outcome_kind::deferred, 0, "4.4.2", outcome_cause::lost,
        smtp_command::data, false},
       "250 ok\r\n250 ok\r\n", false},
      {{"lost at the end of data", outcome_kind::deferred, 0, "4.4.2", outcome_cause::lost,
        smtp_command::end_of_data, false},
       "250 ok\r\n250 ok\r\n354 go\r\n", false},
  };
  const auto msg = message();
  for (const auto& r : rows) {
    smtp::client_session s(options());
    ASSERT_EQ(feed(s, "220 hi\r\n250 mx\r\n"), event::ready) << r.want.name;
    ASSERT_EQ(s.send(msg), event::need_more);
    ASSERT_EQ(feed(s, r.server), event::need_more) << r.want.name;
    ASSERT_EQ(s.connection_lost("connection closed"), event::transaction_done);
    auto result = s.take_result();
    ASSERT_EQ(result.recipients.size(), 1u);
    check(outcome_of(result.recipients[0], relay, outcome_cause::lost), r.want);
    EXPECT_EQ(server_heard_nothing(result), r.heard_nothing) << r.want.name;
  }
}

TEST(delivery_outcome, failures_without_a_server) {
  check(connect_failed("timeout.example[192.0.2.9]:25", false, "Connection refused"),
        {"refused", outcome_kind::deferred, 0, "4.4.1", outcome_cause::refused,
         smtp_command::none, false});
  check(connect_failed(relay, true, "Operation canceled"),
        {"connect timeout", outcome_kind::deferred, 0, "4.4.1", outcome_cause::timeout,
         smtp_command::none, false});
  check(tls_failed(relay, "certificate verification failed"),
        {"TLS", outcome_kind::deferred, 0, "4.7.5", outcome_cause::tls, smtp_command::starttls,
         false});
  dns::mx_result servfail;
  servfail.what = dns::outcome::retry;
  servfail.detail = "SERVFAIL";
  check(dns_failed(servfail, ""), {"SERVFAIL", outcome_kind::deferred, 0, "4.4.3",
                                   outcome_cause::dns, smtp_command::none, false});
  dns::mx_result nx;
  nx.what = dns::outcome::not_found;
  check(dns_failed(nx, ""), {"NXDOMAIN", outcome_kind::failed, 0, "5.1.2", outcome_cause::dns,
                             smtp_command::none, false});
  check(dns_failed(nx, "[smtp.example]:587"),
        {"NXDOMAIN relayhost", outcome_kind::deferred, 0, "4.4.3", outcome_cause::dns,
         smtp_command::none, false});
}

TEST(delivery_outcome, describe_and_the_fate_words) {
  smtp::client_session s(options());
  feed(s, "220 hi\r\n250 mx\r\n");
  s.send(message());
  feed(s, "250 ok\r\n550 5.1.1 No such user\r\n");
  auto o = outcome_of(s.take_result().recipients[0], relay);
  EXPECT_EQ(o.description,
            "host mx.example[192.0.2.1]:25 said: 550 5.1.1 No such user (in reply to RCPT TO)");
  EXPECT_EQ(connect_failed(relay, false, "Connection refused").description,
            "connect to mx.example[192.0.2.1]:25: Connection refused");
  EXPECT_EQ(log_word(fate_of(queue::rcpt_state::delivered)), "sent");
  EXPECT_EQ(log_word(fate_of(queue::rcpt_state::pending)), "deferred");
  EXPECT_EQ(log_word(fate_of(queue::rcpt_state::failed)), "bounced");
  queue::recipient r;
  record_outcome(r, o);
  EXPECT_EQ(r.reply_code, 550);
  EXPECT_EQ(r.status, "5.1.1");
  EXPECT_EQ(r.cause, outcome_cause::reply);
  EXPECT_EQ(r.in_reply_to, smtp_command::rcpt);
  EXPECT_EQ(r.reply_text, "5.1.1 No such user");
  EXPECT_EQ(r.last_reply, o.description);
}

}  // namespace
}  // namespace relayd
