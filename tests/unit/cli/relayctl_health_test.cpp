// relayctl health's verdict (OK/WARNING/CRITICAL per threshold, the worst
// wins, perfdata) and its flags.
#include <gtest/gtest.h>

#include "cli/relayctl_health.hpp"

namespace {

using namespace relayctl;

TEST(relayctl_health, ok_warning_critical) {
  health_thresholds t;
  health_input in{.spool_bytes = 10, .spool_max_bytes = 100, .messages = 3,
                  .oldest_age_seconds = 60, .deferred = 2, .dead = 0};
  auto v = judge_health(in, t);
  EXPECT_EQ(v.code, 0);
  EXPECT_EQ(v.line.rfind("RELAYD OK - spool 10.0% used, oldest 60s, 3 queued, 2 deferred, 0 dead |", 0),
            0u) << v.line;
  EXPECT_NE(v.line.find("deferred=2;100;1000"), std::string::npos) << v.line;

  in.oldest_age_seconds = 3600;  // at the warning threshold
  v = judge_health(in, t);
  EXPECT_EQ(v.code, 1);
  EXPECT_EQ(v.line.rfind("RELAYD WARNING - oldest message 3600s old (", 0), 0u) << v.line;

  in.spool_bytes = 96;  // critical beats warning
  v = judge_health(in, t);
  EXPECT_EQ(v.code, 2);
  EXPECT_EQ(v.line.rfind("RELAYD CRITICAL - spool 96.0% used, oldest message 3600s old (", 0), 0u)
      << v.line;

  // An empty queue has no oldest message, whatever the age field says.
  health_input empty{.spool_bytes = 1, .spool_max_bytes = 100, .messages = 0,
                     .oldest_age_seconds = 99999};
  EXPECT_EQ(judge_health(empty, t).code, 0);
  health_input dead{.spool_max_bytes = 100, .dead = 100};
  EXPECT_EQ(judge_health(dead, t).code, 2);
}

TEST(relayctl_health, flags) {
  auto t = parse_health_flags({"--age-warn", "10m", "--age-crit", "1h", "--dead-warn", "1",
                               "--dead-crit", "5", "--spool-warn", "50"});
  ASSERT_TRUE(t) << t.error();
  EXPECT_EQ(t->age_warn, 600);
  EXPECT_EQ(t->age_crit, 3600);
  EXPECT_EQ(t->dead_warn, 1u);
  EXPECT_EQ(t->dead_crit, 5u);
  EXPECT_EQ(t->spool_warn, 50);
  EXPECT_FALSE(parse_health_flags({"--age-warn"}));
  EXPECT_FALSE(parse_health_flags({"--spool-warn", "120"}));
  EXPECT_FALSE(parse_health_flags({"--deferred-warn", "-1"}));
  EXPECT_FALSE(parse_health_flags({"--nope", "1"}));
  auto inverted = parse_health_flags({"--dead-warn", "50", "--dead-crit", "5"});
  ASSERT_FALSE(inverted);
  EXPECT_NE(inverted.error().find("--dead-warn is above --dead-crit"), std::string::npos);
}

}  // namespace
