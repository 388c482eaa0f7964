// Each destination's TLS policy and last outcome (relayctl destinations).
#include "relayd/delivery_tls_status.hpp"

#include <gtest/gtest.h>

namespace relayd {
namespace {

TEST(tls_status, outcome_text_names_trust_and_version) {
  EXPECT_EQ(tls_outcome_text("TLSv1.3", true), "verified TLSv1.3");
  EXPECT_EQ(tls_outcome_text("TLSv1.2", false), "untrusted TLSv1.2");
  EXPECT_EQ(tls_outcome_text("", false), "plaintext");
}

TEST(tls_status, the_last_outcome_wins_and_the_oldest_goes_when_full) {
  tls_status_table t(2);
  EXPECT_EQ(t.find("a.test"), nullptr);
  t.record("a.test", {"mta-sts enforce", "verified TLSv1.3", 100});
  t.record("b.test", {"none", "plaintext", 50});
  t.record("a.test", {"mta-sts enforce", "failed: DANE: x", 200});
  ASSERT_NE(t.find("a.test"), nullptr);
  EXPECT_EQ(t.find("a.test")->outcome, "failed: DANE: x");
  t.record("c.test", {"dane", "verified TLSv1.3", 300});  // b.test is the oldest
  EXPECT_EQ(t.all().size(), 2u);
  EXPECT_EQ(t.find("b.test"), nullptr);
  EXPECT_EQ(t.find("c.test")->policy, "dane");
}

}  // namespace
}  // namespace relayd
