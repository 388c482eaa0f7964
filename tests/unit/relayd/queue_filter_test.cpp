// relayctl's queue filters (relayd/queue_filter.hpp) and the -p --shape table
// (relayd/queue_shape.hpp): what each criterion matches, in which case, on which
// recipients, at which ages; and which column and row a message lands in.
#include <gtest/gtest.h>

#include "queue/record.hpp"
#include "relayd/queue_filter.hpp"
#include "relayd/queue_shape.hpp"

namespace relayd {
namespace {

constexpr std::int64_t minute_us = 60'000'000;
constexpr std::int64_t now_us = 1'800'000'000'000'000;

queue::recipient rcpt(std::string address, std::string last_reply = "",
                      queue::rcpt_state state = queue::rcpt_state::pending) {
  queue::recipient r;
  r.address = std::move(address);
  r.last_reply = std::move(last_reply);
  r.state = state;
  return r;
}

queue::envelope_record message(std::string sender, std::vector<queue::recipient> rcpts,
                               std::int64_t age_minutes = 0) {
  queue::envelope_record r;
  r.id = "0000000000000ABC";
  r.sender = std::move(sender);
  r.recipients = std::move(rcpts);
  r.arrival_us = now_us - age_minutes * minute_us;
  return r;
}

bool matches(const queue_filter& f, const queue::envelope_record& r, bool dead = false) {
  return queue_matcher(f, now_us).matches(r, dead);
}

TEST(queue_filter, empty_filter_matches_everything) {
  EXPECT_TRUE(queue_filter{}.empty());
  EXPECT_TRUE(matches({}, message("", {})));
  EXPECT_TRUE(matches({}, message("a@b.example", {rcpt("c@d.example")}, 100000)));
}

TEST(queue_filter, from_is_an_address_a_domain_or_the_null_sender_in_any_case) {
  const auto m = message("Alice@Src.Example", {rcpt("bob@dst.example")});
  EXPECT_TRUE(matches({.from = "alice@src.example"}, m));
  EXPECT_TRUE(matches({.from = "ALICE@SRC.EXAMPLE"}, m));
  EXPECT_TRUE(matches({.from = "src.example"}, m));
  EXPECT_TRUE(matches({.from = "@SRC.example"}, m));
  EXPECT_FALSE(matches({.from = "bob@src.example"}, m));
  EXPECT_FALSE(matches({.from = "example"}, m)) << "a domain is whole, not a suffix";
  EXPECT_FALSE(matches({.from = "rc.example"}, m));
  EXPECT_FALSE(matches({.from = "<>"}, m));
  EXPECT_TRUE(matches({.from = "<>"}, message("", {rcpt("bob@dst.example")})));
  EXPECT_FALSE(matches({.from = "src.example"}, message("", {rcpt("bob@dst.example")})));
  // A quoted local part may hold '@': the domain is after the last one.
  EXPECT_TRUE(matches({.from = "src.example"}, message("\"a@b\"@src.example", {})));
}

TEST(queue_filter, to_and_domain_look_at_pending_recipients_only) {
  const auto m = message("a@src.example", {rcpt("done@gmail.example", "", queue::rcpt_state::delivered),
                                           rcpt("Wait@Yahoo.Example", "451 try later")});
  EXPECT_TRUE(matches({.to = "wait@yahoo.example"}, m));
  EXPECT_TRUE(matches({.to = "yahoo.example"}, m));
  EXPECT_TRUE(matches({.domain = "YAHOO.example"}, m));
  EXPECT_FALSE(matches({.domain = "gmail.example"}, m)) << "delivered recipients are not queued";
  EXPECT_FALSE(matches({.to = "done@gmail.example"}, m));
  EXPECT_FALSE(matches({.domain = "example"}, m));
}

TEST(queue_filter, recipient_criteria_hold_for_one_and_the_same_recipient) {
  const auto m = message("a@src.example", {rcpt("x@gmail.example", "421 4.7.28 rate limited"),
                                           rcpt("y@yahoo.example", "451 4.3.0 greylisted")});
  EXPECT_TRUE(matches({.domain = "gmail.example", .reason = "4.7.28"}, m));
  EXPECT_TRUE(matches({.domain = "yahoo.example", .reason = "GREYLISTED"}, m));
  EXPECT_FALSE(matches({.domain = "gmail.example", .reason = "greylisted"}, m));
  EXPECT_FALSE(matches({.to = "y@yahoo.example", .domain = "gmail.example"}, m));
}

TEST(queue_filter, reason_is_a_case_insensitive_substring_of_the_last_reply) {
  const auto m = message("a@src.example", {rcpt("x@d.example", "host mx.d.example said: 451 Try Later")});
  EXPECT_TRUE(matches({.reason = "try later"}, m));
  EXPECT_TRUE(matches({.reason = "451"}, m));
  EXPECT_TRUE(matches({.reason = "host mx.d.example said: 451 try later"}, m));
  EXPECT_FALSE(matches({.reason = "try later!"}, m));
  EXPECT_FALSE(matches({.reason = "x"}, message("a@src.example", {rcpt("x@d.example")})))
      << "no reply yet: no reason matches";
}

TEST(queue_filter, older_compares_the_arrival_with_now_minus_the_duration) {
  const auto young = message("a@s.example", {}, 9);
  const auto old = message("a@s.example", {}, 11);
  EXPECT_FALSE(matches({.older_seconds = 600}, young));
  EXPECT_TRUE(matches({.older_seconds = 600}, old));
  EXPECT_FALSE(matches({.older_seconds = 600}, message("a@s.example", {}, 10)))
      << "exactly that old is not older";
  EXPECT_TRUE(matches({.older_seconds = 0}, old));
}

TEST(queue_filter, dead_entries_use_failed_recipients_their_reason_and_failure_time) {
  auto e = message("a@s.example", {rcpt("gone@d.example", "550 5.1.1 no such user",
                                        queue::rcpt_state::failed)},
                   600);
  e.recipients[0].reason = "rejected";
  e.recipients[0].last_attempt_us = now_us - 5 * minute_us;  // failed 5 minutes ago
  EXPECT_TRUE(matches({.domain = "d.example"}, e, true));
  EXPECT_FALSE(matches({.domain = "d.example"}, e, false)) << "not pending";
  EXPECT_TRUE(matches({.reason = "REJECTED"}, e, true));
  EXPECT_TRUE(matches({.reason = "5.1.1"}, e, true));
  EXPECT_TRUE(matches({.older_seconds = 240}, e, true));
  EXPECT_FALSE(matches({.older_seconds = 360}, e, true)) << "age from the failure, not the arrival";
}

TEST(queue_filter, all_criteria_must_hold) {
  const auto m = message("a@src.example", {rcpt("x@d.example", "451 later")}, 30);
  EXPECT_TRUE(matches({.from = "src.example", .to = "x@d.example", .domain = "d.example",
                       .reason = "later", .older_seconds = 60},
                      m));
  EXPECT_FALSE(matches({.from = "other.example", .domain = "d.example"}, m));
  EXPECT_FALSE(matches({.domain = "d.example", .older_seconds = 3600}, m));
}

TEST(queue_filter, check_filter_names_the_bad_option) {
  EXPECT_EQ(check_filter({}), "");
  EXPECT_EQ(check_filter({.from = "<>"}), "");
  EXPECT_EQ(check_filter({.to = "<>"}), "--to: a recipient is never the null sender <>");
  EXPECT_EQ(check_filter({.domain = "a@b.example"}),
            "--domain: give a domain (example.org), not an address");
  EXPECT_EQ(check_filter({.reason = "a\nb"}), "--reason: control characters are not allowed");
  EXPECT_EQ(check_filter({.older_seconds = -1}), "--older: a duration from 0s to 36500d");
  EXPECT_EQ(check_filter({.from = std::string(1001, 'a')}), "--from: longer than 1000 characters");
}

TEST(queue_shape, columns_follow_qshape_minutes) {
  queue_shape s(now_us);
  EXPECT_EQ(s.column_of(now_us), 0u);
  EXPECT_EQ(s.column_of(now_us + minute_us), 0u) << "a clock step back: the youngest column";
  EXPECT_EQ(s.column_of(now_us - 5 * minute_us + 1), 0u);
  EXPECT_EQ(s.column_of(now_us - 5 * minute_us), 1u);
  EXPECT_EQ(s.column_of(now_us - 19 * minute_us), 2u);
  EXPECT_EQ(s.column_of(now_us - 20 * minute_us), 3u);
  EXPECT_EQ(s.column_of(now_us - 1279 * minute_us), 8u);
  EXPECT_EQ(s.column_of(now_us - 1280 * minute_us), 9u);  // "1280+", the last
  EXPECT_EQ(s.column_of(now_us - 100000 * minute_us), 9u);
  EXPECT_EQ(queue_shape::columns, 10u);
}

TEST(queue_shape, counts_messages_per_domain_once_and_ranks_the_busiest) {
  queue_shape s(now_us);
  s.add(message("a@s.example", {rcpt("x@Gmail.example"), rcpt("y@gmail.example")}, 1));
  s.add(message("a@s.example", {rcpt("x@gmail.example"), rcpt("z@yahoo.example")}, 30));
  s.add(message("a@s.example", {rcpt("x@yahoo.example", "", queue::rcpt_state::delivered),
                                rcpt("w@aol.example")},
                2000));
  s.add(message("a@s.example", {rcpt("q@zz.example")}, 2));
  EXPECT_EQ(s.total()[0], 2u);
  EXPECT_EQ(s.total()[3], 1u);   // 20-40 minutes
  EXPECT_EQ(s.total()[9], 1u);  // 1280+
  EXPECT_EQ(s.domain_count(), 4u) << "gmail, yahoo, aol, zz (the delivered yahoo one is not queued)";
  const auto rows = s.top(3);
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0].domain, "gmail.example");
  EXPECT_EQ(rows[0].total(), 2u) << "two recipients in one message count once";
  EXPECT_EQ(rows[0].by_age[0], 1u);
  EXPECT_EQ(rows[0].by_age[3], 1u);
  // Ties by name: aol, yahoo, zz each have one message; zz is cut.
  EXPECT_EQ(rows[1].domain, "aol.example");
  EXPECT_EQ(rows[1].by_age[9], 1u);
  EXPECT_EQ(rows[2].domain, "yahoo.example");
  EXPECT_EQ(s.top(10).size(), 4u);
}

}  // namespace
}  // namespace relayd
