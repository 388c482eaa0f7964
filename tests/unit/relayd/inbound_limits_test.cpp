// inbound_limits: total and per-client connection counts, the per-client rate
// window as it slides, independence of clients, and release on close. The
// clock is passed in, so the window is driven without waiting.
#include "relayd/inbound_limits.hpp"

#include <gtest/gtest.h>

namespace relayd {
namespace {

using verdict = inbound_limits::verdict;
using std::chrono::seconds;
const auto t0 = inbound_limits::clock::time_point{} + std::chrono::hours(1);

TEST(inbound_limits, total_limit_refuses_past_max_connections) {
  inbound_limits l({.max_connections = 2, .max_connections_per_client = 10}, t0);
  EXPECT_EQ(l.admit("192.0.2.1", t0), verdict::accepted);
  EXPECT_EQ(l.admit("192.0.2.2", t0), verdict::accepted);
  EXPECT_EQ(l.admit("192.0.2.3", t0), verdict::too_many);
  EXPECT_EQ(l.open(), 2u);
  EXPECT_EQ(l.open_from("192.0.2.3"), 0u);
}

TEST(inbound_limits, per_client_limit_leaves_other_clients_alone) {
  inbound_limits l({.max_connections = 10, .max_connections_per_client = 2}, t0);
  EXPECT_EQ(l.admit("192.0.2.1", t0), verdict::accepted);
  EXPECT_EQ(l.admit("192.0.2.1", t0), verdict::accepted);
  EXPECT_EQ(l.admit("192.0.2.1", t0), verdict::too_many_client);
  EXPECT_EQ(l.admit("192.0.2.2", t0), verdict::accepted);
  EXPECT_EQ(l.open_from("192.0.2.1"), 2u);
  EXPECT_EQ(l.open_from("192.0.2.2"), 1u);
  EXPECT_EQ(l.open(), 3u);
}

TEST(inbound_limits, release_on_close_frees_the_slot) {
  inbound_limits l({.max_connections = 1, .max_connections_per_client = 1}, t0);
  EXPECT_EQ(l.admit("192.0.2.1", t0), verdict::accepted);
  EXPECT_EQ(l.admit("192.0.2.1", t0), verdict::too_many);
  l.release("192.0.2.1");
  EXPECT_EQ(l.open(), 0u);
  EXPECT_EQ(l.open_from("192.0.2.1"), 0u);
  EXPECT_EQ(l.admit("192.0.2.2", t0), verdict::accepted);
  l.release("192.0.2.9");  // never admitted: ignored
  EXPECT_EQ(l.open(), 1u);
}

TEST(inbound_limits, rate_counts_refused_connections_too) {
  inbound_limits l({.max_connections = 100, .max_connections_per_client = 100,
                    .max_rate_per_client = 3},
                   t0);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(l.admit("192.0.2.1", t0 + seconds(i)), verdict::accepted);
  EXPECT_EQ(l.admit("192.0.2.1", t0 + seconds(3)), verdict::too_fast);
  EXPECT_EQ(l.admit("192.0.2.1", t0 + seconds(4)), verdict::too_fast);
  EXPECT_EQ(l.open_from("192.0.2.1"), 3u) << "a refused connection is not open";
  // Another client has its own window.
  EXPECT_EQ(l.admit("192.0.2.2", t0 + seconds(5)), verdict::accepted);
}

TEST(inbound_limits, rate_window_slides) {
  inbound_limits l({.max_connections = 100, .max_connections_per_client = 100,
                    .max_rate_per_client = 4},
                   t0);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(l.admit("192.0.2.1", t0), verdict::accepted);
  EXPECT_EQ(l.admit("192.0.2.1", t0 + seconds(30)), verdict::too_fast);
  // 75 s later the previous minute (5 connections) still weighs 3/4: 3.75 + 1 > 4.
  EXPECT_EQ(l.admit("192.0.2.1", t0 + seconds(75)), verdict::too_fast);
  // At 105 s it weighs 1/4: 1.25 plus this minute's 2 is within 4.
  EXPECT_EQ(l.admit("192.0.2.1", t0 + seconds(105)), verdict::accepted);
  // Two minutes after the window opened, nothing of the past is left.
  for (int i = 0; i < 4; ++i)
    EXPECT_EQ(l.admit("192.0.2.1", t0 + seconds(200)), verdict::accepted) << i;
  EXPECT_EQ(l.admit("192.0.2.1", t0 + seconds(200)), verdict::too_fast);
}

TEST(inbound_limits, rate_entries_are_swept_after_two_minutes) {
  inbound_limits l({.max_connections = 100, .max_connections_per_client = 100,
                    .max_rate_per_client = 10},
                   t0);
  EXPECT_EQ(l.admit("192.0.2.1", t0), verdict::accepted);
  EXPECT_EQ(l.admit("192.0.2.2", t0), verdict::accepted);
  EXPECT_EQ(l.rate_entries(), 2u);
  EXPECT_EQ(l.admit("192.0.2.3", t0 + std::chrono::minutes(3)), verdict::accepted);
  EXPECT_EQ(l.rate_entries(), 1u);
}

TEST(inbound_limits, no_rate_limit_when_zero) {
  inbound_limits l({.max_connections = 1000, .max_connections_per_client = 1000}, t0);
  for (int i = 0; i < 500; ++i) ASSERT_EQ(l.admit("192.0.2.1", t0), verdict::accepted);
  EXPECT_EQ(l.rate_entries(), 0u);
}

}  // namespace
}  // namespace relayd
