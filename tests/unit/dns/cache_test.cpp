// The bounded TTL cache: expiry, LRU eviction, capacity 0.
#include <gtest/gtest.h>

#include "dns/ttl_cache.hpp"

using dns::detail::ttl_cache;
using namespace std::chrono_literals;

TEST(ttl_cache, expires_at_its_time) {
  ttl_cache<int> c(10);
  auto t0 = std::chrono::steady_clock::time_point{} + 1h;
  c.put("a", 1, t0 + 60s);
  std::chrono::seconds left{};
  ASSERT_NE(c.find("a", t0 + 10s, &left), nullptr);
  EXPECT_EQ(left, 50s);
  EXPECT_EQ(c.find("a", t0 + 60s), nullptr);
  EXPECT_EQ(c.size(), 0u);
}

TEST(ttl_cache, drops_least_recently_used_when_full) {
  ttl_cache<int> c(2);
  auto t0 = std::chrono::steady_clock::time_point{} + 1h;
  c.put("a", 1, t0 + 60s);
  c.put("b", 2, t0 + 60s);
  ASSERT_NE(c.find("a", t0), nullptr);  // "b" is now the least recently used
  c.put("c", 3, t0 + 60s);
  EXPECT_EQ(c.size(), 2u);
  EXPECT_NE(c.find("a", t0), nullptr);
  EXPECT_EQ(c.find("b", t0), nullptr);
  EXPECT_EQ(*c.find("c", t0), 3);
  c.put("c", 4, t0 + 60s);  // replace in place
  EXPECT_EQ(*c.find("c", t0), 4);
  EXPECT_EQ(c.size(), 2u);
}

TEST(ttl_cache, capacity_zero_stores_nothing) {
  ttl_cache<int> c(0);
  auto t0 = std::chrono::steady_clock::time_point{} + 1h;
  c.put("a", 1, t0 + 60s);
  EXPECT_EQ(c.find("a", t0), nullptr);
}
