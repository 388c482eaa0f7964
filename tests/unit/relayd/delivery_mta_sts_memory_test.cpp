// The MTA-STS lookup memory: TXT answers kept for their TTL (at most 5
// minutes), failed fetches backing off 5 min, 10, 20, 40, then 1 h, per id.
#include "relayd/delivery_mta_sts_memory.hpp"

#include <gtest/gtest.h>

namespace relayd::mta_sts {
namespace {

constexpr std::int64_t t0 = 1'800'000'000;

TEST(mta_sts_memory, a_txt_answer_is_kept_for_its_ttl_capped_at_five_minutes) {
  lookup_memory m;
  EXPECT_FALSE(m.txt("a.test", t0));
  m.remember_txt("a.test", "id1", 60, t0);
  ASSERT_TRUE(m.txt("a.test", t0 + 59));
  EXPECT_EQ(m.txt("a.test", t0 + 59)->id, "id1");
  EXPECT_FALSE(m.txt("a.test", t0 + 60));

  m.remember_txt("b.test", std::nullopt, 86400, t0);  // "no record" is an answer too
  ASSERT_TRUE(m.txt("b.test", t0 + 299));
  EXPECT_FALSE(m.txt("b.test", t0 + 299)->id);
  EXPECT_FALSE(m.txt("b.test", t0 + txt_keep_max));

  m.remember_txt("c.test", "id1", 0, t0);  // TTL 0: asked again every time
  EXPECT_FALSE(m.txt("c.test", t0));
}

TEST(mta_sts_memory, failed_fetches_back_off_doubling_to_an_hour) {
  lookup_memory m;
  EXPECT_TRUE(m.may_fetch("a.test", "id1", t0));
  std::int64_t now = t0;
  for (std::int64_t wait : {300, 600, 1200, 2400, 3600, 3600}) {
    EXPECT_EQ(m.fetch_failed("a.test", "id1", now), now + wait);
    std::int64_t until = 0;
    EXPECT_FALSE(m.may_fetch("a.test", "id1", now + wait - 1, &until));
    EXPECT_EQ(until, now + wait);
    now += wait;
    EXPECT_TRUE(m.may_fetch("a.test", "id1", now));
  }
  EXPECT_TRUE(m.may_fetch("b.test", "id1", now)) << "per domain";
}

TEST(mta_sts_memory, a_new_id_is_fetched_at_once_and_success_ends_the_backoff) {
  lookup_memory m;
  m.fetch_failed("a.test", "id1", t0);
  m.fetch_failed("a.test", "id1", t0 + 300);
  EXPECT_FALSE(m.may_fetch("a.test", "id1", t0 + 301));
  EXPECT_TRUE(m.may_fetch("a.test", "id2", t0 + 301)) << "a new policy was published";
  EXPECT_EQ(m.fetch_failed("a.test", "id2", t0 + 301), t0 + 601) << "its backoff starts over";
  m.fetch_succeeded("a.test");
  EXPECT_TRUE(m.may_fetch("a.test", "id2", t0 + 302));
  EXPECT_EQ(m.fetch_failed("a.test", "id2", t0 + 400), t0 + 700);
}

TEST(mta_sts_memory, the_table_stays_bounded_and_drops_what_is_not_live_first) {
  lookup_memory m(3);
  m.remember_txt("a.test", "1", 10, t0);
  m.fetch_failed("b.test", "1", t0);
  m.remember_txt("c.test", "1", 300, t0);
  // At t0 + 20: a.test's answer expired, b.test backs off, c.test is live.
  m.remember_txt("d.test", "1", 300, t0 + 20);
  EXPECT_EQ(m.size(), 3u);
  EXPECT_FALSE(m.may_fetch("b.test", "1", t0 + 20));
  EXPECT_TRUE(m.txt("c.test", t0 + 20));
  EXPECT_TRUE(m.txt("d.test", t0 + 20));
  m.remember_txt("e.test", "1", 300, t0 + 21);  // all live: one goes anyway
  EXPECT_EQ(m.size(), 3u);
  EXPECT_TRUE(m.txt("e.test", t0 + 21));
}

}  // namespace
}  // namespace relayd::mta_sts
