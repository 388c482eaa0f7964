// Who gets a DSN and what it says, from queue records: no bounce of a bounce,
// bounces = false, one delay warning after delay_warning, the remote reply and
// host taken out of the stored last reply, expiry reported as 4.4.7.
#include "relayd/delivery_notice.hpp"

#include <gtest/gtest.h>

#include "relayd/config.hpp"

namespace relayd {
namespace {

constexpr std::int64_t sec = 1'000'000;
constexpr std::int64_t t0 = 1'700'000'000 * sec;

config test_config() {
  config c;
  c.hostname = "relay.test";
  c.queue.delay_warning = std::chrono::hours(4);
  c.queue.max_lifetime = std::chrono::hours(120);
  return c;
}

queue::envelope_record message(std::string sender = "app@src.test") {
  queue::envelope_record m;
  m.id = "0123456789ABCDEF";
  m.arrival_us = t0;
  m.sender = std::move(sender);
  m.recipients.push_back({.address = "bad@dst.test"});
  return m;
}

queue::recipient failed_rcpt() {
  return {.address = "bad@dst.test", .state = queue::rcpt_state::failed, .attempts = 1,
          .last_reply = "host mx.dst.test[127.0.0.2] said: 550 5.1.1 No such user (in reply "
                        "to RCPT TO)",
          .first_attempt_us = t0 + sec, .last_attempt_us = t0 + sec, .reply_code = 550,
          .status = "5.1.1", .remote_host = "mx.dst.test[127.0.0.2]:25", .reason = "rejected"};
}

TEST(delivery_notice, null_sender_and_bounces_off_never_notify) {
  auto cfg = test_config();
  EXPECT_TRUE(may_notify(cfg, message()));
  EXPECT_FALSE(may_notify(cfg, message("")));
  cfg.queue.bounces = false;
  EXPECT_FALSE(may_notify(cfg, message()));
}

TEST(delivery_notice, delay_warning_once_after_the_delay) {
  auto cfg = test_config();
  auto m = message();
  EXPECT_FALSE(delay_warning_due(cfg, m, t0 + 4 * 3600 * sec - 1));
  EXPECT_TRUE(delay_warning_due(cfg, m, t0 + 4 * 3600 * sec));
  m.flags |= queue::flag_delay_warned;
  EXPECT_FALSE(delay_warning_due(cfg, m, t0 + 5 * 3600 * sec));
  cfg.queue.delay_warning = std::chrono::seconds(0);  // disabled
  EXPECT_FALSE(delay_warning_due(cfg, message(), t0 + 100 * 3600 * sec));
  cfg = test_config();
  EXPECT_FALSE(delay_warning_due(cfg, message(""), t0 + 5 * 3600 * sec));
}

TEST(delivery_notice, reply_and_host_come_out_of_the_stored_reply) {
  EXPECT_EQ(remote_reply(failed_rcpt()), "550 5.1.1 No such user");
  auto no_reply = failed_rcpt();
  no_reply.reply_code = 0;
  no_reply.last_reply = "connect to mx.dst.test[127.0.0.2]:25: Connection refused";
  EXPECT_EQ(remote_reply(no_reply), "");
  EXPECT_EQ(remote_mta("mx.dst.test[127.0.0.2]:25"), "mx.dst.test");
  EXPECT_EQ(remote_mta("[192.0.2.1]:587"), "");
  EXPECT_EQ(remote_mta(""), "");
  EXPECT_EQ(remote_mta("none"), "");
}

TEST(delivery_notice, reply_comes_from_the_fields_not_the_sentence) {
  // A version 3 record: the server's text is rendered as is, even when it holds
  // words the old sentence parser would have cut at.
  auto r = failed_rcpt();
  r.cause = queue::outcome_cause::reply;
  r.in_reply_to = queue::smtp_command::rcpt;
  r.reply_text = "5.1.1 No such user (in reply to nothing)";
  r.last_reply = "host said: x said: 550 (in reply to RCPT TO)";
  EXPECT_EQ(remote_reply(r), "550 5.1.1 No such user (in reply to nothing)");
  r.cause = queue::outcome_cause::expired;
  r.reason = "rejected";
  auto n = make_notice(test_config(), message(), std::span(&r, 1), smtp::dsn_action::failed, "",
                       "FEDCBA9876543210", t0 + 2 * sec);
  EXPECT_NE(n.message.find("Status: 4.4.7"), std::string::npos);
}

TEST(delivery_notice, failure_notice_is_a_null_sender_message_to_the_sender) {
  const auto cfg = test_config();
  const auto m = message();
  const auto r = failed_rcpt();
  const std::string original = "Subject: hello\r\nFrom: app@src.test\r\n\r\nbody text\r\n";
  auto n = make_notice(cfg, m, std::span(&r, 1), smtp::dsn_action::failed, original,
                       "FEDCBA9876543210", t0 + 2 * sec);
  EXPECT_EQ(n.envelope.id, "FEDCBA9876543210");
  EXPECT_EQ(n.envelope.sender, "");
  ASSERT_EQ(n.envelope.recipients.size(), 1u);
  EXPECT_EQ(n.envelope.recipients[0].address, "app@src.test");
  EXPECT_EQ(n.envelope.recipients[0].state, queue::rcpt_state::pending);
  EXPECT_EQ(n.envelope.size, n.message.size());
  EXPECT_NE(n.message.find("From: Mail Delivery System <MAILER-DAEMON@relay.test>"), std::string::npos);
  EXPECT_NE(n.message.find("Message-ID: <FEDCBA9876543210@relay.test>"), std::string::npos);
  EXPECT_NE(n.message.find("Action: failed"), std::string::npos);
  EXPECT_NE(n.message.find("Status: 5.1.1"), std::string::npos);
  EXPECT_NE(n.message.find("Remote-MTA: dns; mx.dst.test"), std::string::npos);
  EXPECT_NE(n.message.find("Diagnostic-Code: smtp; 550 5.1.1 No such user"), std::string::npos);
  EXPECT_NE(n.message.find("Subject: hello"), std::string::npos);
  EXPECT_EQ(n.message.find("body text"), std::string::npos) << "headers only";
}

TEST(delivery_notice, expiry_is_reported_as_delivery_time_expired) {
  const auto cfg = test_config();
  auto r = failed_rcpt();
  r.reason = "expired";
  r.reply_code = 451;
  r.status = "4.3.0";
  r.last_reply = "host mx.dst.test[127.0.0.2] said: 451 4.3.0 Try later (in reply to RCPT TO)";
  auto n = make_notice(cfg, message(), std::span(&r, 1), smtp::dsn_action::failed, "",
                       "FEDCBA9876543210", t0 + 2 * sec);
  EXPECT_NE(n.message.find("Status: 4.4.7"), std::string::npos);
  EXPECT_NE(n.message.find("Diagnostic-Code: smtp; 451 4.3.0 Try later"), std::string::npos);
  EXPECT_NE(n.message.find("5d (max_lifetime)"), std::string::npos);
}

TEST(delivery_notice, delay_notice_says_until_when_it_retries) {
  const auto cfg = test_config();
  auto r = failed_rcpt();
  r.state = queue::rcpt_state::pending;
  r.reason.clear();
  r.reply_code = 451;
  r.status = "4.3.0";
  auto n = make_notice(cfg, message(), std::span(&r, 1), smtp::dsn_action::delayed, "",
                       "FEDCBA9876543210", t0 + 4 * 3600 * sec);
  EXPECT_NE(n.message.find("Action: delayed"), std::string::npos);
  EXPECT_NE(n.message.find("Will-Retry-Until:"), std::string::npos);
}

}  // namespace
}  // namespace relayd
