// wait_registry (sendmail --wait's outcomes): results merged over the jobs of
// one message, final messages remembered in a bounded cache, waiters woken
// when their message becomes final (and only then), and all woken at stop.
#include "relayd/control_wait_registry.hpp"

#include <gtest/gtest.h>

namespace relayd {
namespace {

using queue::rcpt_state;
using completion = queue::spool::completion;

queue::envelope_record message(const std::string& id, std::vector<std::string> rcpts) {
  queue::envelope_record m;
  m.id = id;
  for (auto& a : rcpts) {
    queue::recipient r;
    r.address = a;
    m.recipients.push_back(r);
  }
  return m;
}

queue::spool::recipient_update update(const queue::envelope_record& m, std::size_t i,
                                      rcpt_state s, std::string reply) {
  queue::recipient r = m.recipients[i];
  r.state = s;
  r.attempts = 1;
  r.last_reply = std::move(reply);
  return {i, r};
}

TEST(WaitRegistry, MergesTheJobsOfOneMessageFromTheSameSnapshot) {
  wait_registry reg;
  auto m = message("A", {"x@one.example", "y@two.example"});
  std::vector<queue::spool::recipient_update> first{update(m, 0, rcpt_state::delivered, "250 ok")};
  reg.record(m, first, completion::pending);
  EXPECT_EQ(reg.finished("A"), nullptr);
  // The second job carries the same (stale) snapshot: recipient 0 still pending there.
  std::vector<queue::spool::recipient_update> second{update(m, 1, rcpt_state::failed, "550 no")};
  reg.record(m, second, completion::dead);
  const auto* done = reg.finished("A");
  ASSERT_NE(done, nullptr);
  ASSERT_EQ(done->size(), 2u);
  EXPECT_EQ((*done)[0].state, rcpt_state::delivered);
  EXPECT_EQ((*done)[0].last_reply, "250 ok");
  EXPECT_EQ((*done)[1].state, rcpt_state::failed);
  EXPECT_EQ((*done)[1].last_reply, "550 no");
}

TEST(WaitRegistry, WakesOnlyTheWaitersOfAMessageThatBecameFinal) {
  wait_registry reg;
  int woken_a = 0, woken_b = 0;
  reg.watch("A", [&] { ++woken_a; });
  reg.watch("B", [&] { ++woken_b; });
  auto a = message("A", {"x@one.example"});
  std::vector<queue::spool::recipient_update> deferred{update(a, 0, rcpt_state::pending, "451 later")};
  reg.record(a, deferred, completion::pending);
  EXPECT_EQ(woken_a, 0) << "a deferral is not final";
  std::vector<queue::spool::recipient_update> sent{update(a, 0, rcpt_state::delivered, "250 ok")};
  reg.record(a, sent, completion::delivered);
  EXPECT_EQ(woken_a, 1);
  EXPECT_EQ(woken_b, 0);
}

TEST(WaitRegistry, AWaiterThatLeftIsNotWoken) {
  wait_registry reg;
  int woken = 0;
  auto token = reg.watch("A", [&] { ++woken; });
  reg.unwatch(token);
  EXPECT_EQ(reg.waiters(), 0u);
  auto a = message("A", {"x@one.example"});
  std::vector<queue::spool::recipient_update> sent{update(a, 0, rcpt_state::delivered, "250 ok")};
  reg.record(a, sent, completion::delivered);
  EXPECT_EQ(woken, 0);
  EXPECT_NE(reg.finished("A"), nullptr) << "remembered for a wait that comes later";
}

TEST(WaitRegistry, TheFinishedCacheForgetsTheOldestFirst) {
  wait_registry reg(10, 2);
  for (std::string id : {"A", "B", "C"}) {
    auto m = message(id, {"x@one.example"});
    std::vector<queue::spool::recipient_update> sent{update(m, 0, rcpt_state::delivered, "250")};
    reg.record(m, sent, completion::delivered);
  }
  EXPECT_EQ(reg.finished("A"), nullptr);
  EXPECT_NE(reg.finished("B"), nullptr);
  EXPECT_NE(reg.finished("C"), nullptr);
}

TEST(WaitRegistry, DeliveredCompletionMarksEveryRecipientDelivered) {
  // The tracked entry of the first job was forgotten (max_tracked 1): the last
  // job's snapshot still shows recipient 0 pending, the spool says all delivered.
  wait_registry reg(1, 10);
  auto m = message("A", {"x@one.example", "y@two.example"});
  std::vector<queue::spool::recipient_update> first{update(m, 0, rcpt_state::delivered, "250")};
  reg.record(m, first, completion::pending);
  auto other = message("B", {"z@three.example"});
  reg.record(other, {}, completion::pending);  // pushes A out of the tracked set
  std::vector<queue::spool::recipient_update> second{update(m, 1, rcpt_state::delivered, "250")};
  reg.record(m, second, completion::delivered);
  const auto* done = reg.finished("A");
  ASSERT_NE(done, nullptr);
  EXPECT_EQ((*done)[0].state, rcpt_state::delivered);
  EXPECT_EQ((*done)[1].state, rcpt_state::delivered);
}

TEST(WaitRegistry, StopWakesEveryWaiter) {
  wait_registry reg;
  int woken = 0;
  reg.watch("A", [&] { ++woken; });
  reg.watch("B", [&] { ++woken; });
  EXPECT_FALSE(reg.stopping());
  reg.stop();
  EXPECT_TRUE(reg.stopping());
  EXPECT_EQ(woken, 2);
}

}  // namespace
}  // namespace relayd
