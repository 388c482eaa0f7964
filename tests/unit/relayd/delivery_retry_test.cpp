// The retry policy: exponential backoff with cap and jitter, expiry after
// max_lifetime, delivered/failed outcomes, throttled deferrals that do not count
// as attempts. Times are injected, so nothing here sleeps.
#include "relayd/delivery_retry.hpp"

#include <gtest/gtest.h>

namespace relayd {
namespace {

using namespace std::chrono_literals;
constexpr std::int64_t sec = 1'000'000;
constexpr std::int64_t t0 = 1'700'000'000 * sec;

retry_settings settings() { return {.min_backoff = 60s, .max_backoff = 600s, .max_lifetime = 3600s}; }
const std::function<double()> no_jitter = [] { return 0.0; };

recipient_outcome deferred(std::uint16_t code = 451) {
  return {.what = outcome_kind::deferred, .code = code, .status = "4.3.0",
          .description = "host mx[127.0.0.2] said: 451 4.3.0 later", .remote_host = "mx[127.0.0.2]:25"};
}

TEST(delivery_retry, backoff_doubles_from_min_and_stops_at_max) {
  const auto s = settings();
  EXPECT_EQ(backoff(1, s), 60s);
  EXPECT_EQ(backoff(2, s), 120s);
  EXPECT_EQ(backoff(3, s), 240s);
  EXPECT_EQ(backoff(4, s), 480s);
  EXPECT_EQ(backoff(5, s), 600s);
  EXPECT_EQ(backoff(4'000'000'000u, s), 600s);  // no overflow for absurd counts
}

TEST(delivery_retry, deferral_schedules_the_next_attempt_and_records_the_reply) {
  queue::recipient r{.address = "a@example.org"};
  r = apply_outcome(r, deferred(), t0, t0 + 5 * sec, settings(), no_jitter);
  EXPECT_EQ(r.state, queue::rcpt_state::pending);
  EXPECT_EQ(r.attempts, 1u);
  EXPECT_EQ(r.next_attempt_us, t0 + 5 * sec + 60 * sec);
  EXPECT_EQ(r.first_attempt_us, t0 + 5 * sec);
  EXPECT_EQ(r.reply_code, 451);
  EXPECT_EQ(r.status, "4.3.0");
  EXPECT_EQ(r.remote_host, "mx[127.0.0.2]:25");
  EXPECT_EQ(r.last_reply, "host mx[127.0.0.2] said: 451 4.3.0 later");

  r = apply_outcome(r, deferred(), t0, t0 + 100 * sec, settings(), no_jitter);
  EXPECT_EQ(r.attempts, 2u);
  EXPECT_EQ(r.next_attempt_us, t0 + 100 * sec + 120 * sec);
  EXPECT_EQ(r.first_attempt_us, t0 + 5 * sec);
  EXPECT_EQ(r.last_attempt_us, t0 + 100 * sec);
}

TEST(delivery_retry, jitter_adds_at_most_ten_percent) {
  queue::recipient r{.address = "a@example.org"};
  auto late = apply_outcome(r, deferred(), t0, t0, settings(), [] { return 0.999; });
  EXPECT_GT(late.next_attempt_us, t0 + 60 * sec);
  EXPECT_LT(late.next_attempt_us, t0 + 66 * sec);
}

TEST(delivery_retry, jitter_never_takes_a_wait_past_max_backoff) {
  // attempts 9: 60 s doubled past the 600 s cap
  queue::recipient r{.address = "a@example.org", .attempts = 8};
  const auto top = apply_outcome(r, deferred(), t0, t0, settings(), [] { return 0.999; });
  EXPECT_LE(top.next_attempt_us, t0 + 600 * sec);
  EXPECT_GE(top.next_attempt_us, t0 + 540 * sec);
  EXPECT_LT(top.next_attempt_us, t0 + 541 * sec);  // shortened, still spread
  const auto exact = apply_outcome(r, deferred(), t0, t0, settings(), no_jitter);
  EXPECT_EQ(exact.next_attempt_us, t0 + 600 * sec);
}

TEST(delivery_retry, deferral_after_lifetime_expires) {
  queue::recipient r{.address = "a@example.org"};
  r = apply_outcome(r, deferred(), t0, t0 + 3600 * sec, settings(), no_jitter);
  EXPECT_EQ(r.state, queue::rcpt_state::failed);
  EXPECT_EQ(r.reason, "expired");
  EXPECT_EQ(r.reply_code, 451);  // the last reply is kept for the DSN
}

TEST(delivery_retry, last_attempt_comes_when_the_lifetime_ends) {
  // 10 min backoff from 55 min after arrival would pass the 1 h lifetime: the
  // next attempt is at the lifetime's end, and a deferral then expires.
  queue::recipient r{.address = "a@example.org", .attempts = 6};
  r = apply_outcome(r, deferred(), t0, t0 + 3300 * sec, settings(), no_jitter);
  EXPECT_EQ(r.state, queue::rcpt_state::pending);
  EXPECT_EQ(r.next_attempt_us, t0 + 3600 * sec);
  auto throttled = deferred(421);
  throttled.counts_as_attempt = false;
  throttled.not_before_us = t0 + 7200 * sec;
  EXPECT_EQ(apply_outcome(r, throttled, t0, t0 + 3400 * sec, settings(), no_jitter).next_attempt_us,
            t0 + 3600 * sec);
  r = apply_outcome(r, deferred(), t0, r.next_attempt_us, settings(), no_jitter);
  EXPECT_EQ(r.state, queue::rcpt_state::failed);
  EXPECT_EQ(r.reason, "expired");
}

TEST(delivery_retry, delivered_and_failed_are_final) {
  queue::recipient r{.address = "a@example.org"};
  auto ok = apply_outcome(r, {.what = outcome_kind::delivered, .code = 250, .status = "2.0.0"}, t0,
                          t0, settings(), no_jitter);
  EXPECT_EQ(ok.state, queue::rcpt_state::delivered);
  auto bad = apply_outcome(r, {.what = outcome_kind::failed, .code = 550, .status = "5.1.1"}, t0,
                           t0, settings(), no_jitter);
  EXPECT_EQ(bad.state, queue::rcpt_state::failed);
  EXPECT_EQ(bad.reason, "rejected");
  auto route = apply_outcome(r, {.what = outcome_kind::failed, .reason = "no_route"}, t0, t0,
                             settings(), no_jitter);
  EXPECT_EQ(route.reason, "no_route");
}

TEST(delivery_retry, throttled_deferral_waits_for_the_destination_without_counting_an_attempt) {
  queue::recipient r{.address = "a@example.org", .attempts = 2};
  auto o = deferred(421);
  o.counts_as_attempt = false;
  o.not_before_us = t0 + 42 * sec;
  r = apply_outcome(r, o, t0, t0 + sec, settings(), no_jitter);
  EXPECT_EQ(r.attempts, 2u);
  EXPECT_EQ(r.next_attempt_us, t0 + 42 * sec);
  EXPECT_EQ(r.reply_code, 421);
}

}  // namespace
}  // namespace relayd
