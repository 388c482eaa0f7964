// The spool's passes over every message (reschedule, hold, release): they go
// chunk by chunk and let operations that arrive meanwhile (an enqueue, whose
// client waits for its 250) commit and be answered before the pass ends.
#include <gtest/gtest.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "queue/record.hpp"
#include "queue/spool.hpp"
#include "tests/unit/queue/spool_test_util.hpp"

namespace {

using namespace queue_test;
using queue::status;

// Enough messages for tens of chunks of a bulk pass.
constexpr int big_queue = 30'000;

// A spool holding big_queue messages.
std::unique_ptr<queue::spool> open_big_queue(const temp_dir& d) {
  auto o = options_in(d);
  o.initial_map_size = 64u << 20;
  auto s = open_or_fail(o);
  if (!s) return nullptr;
  std::vector<sync_call<queue::result>> calls(static_cast<std::size_t>(big_queue));
  for (int i = 0; i < big_queue; ++i) {
    s->enqueue(make_record(*s, 16, i), "b", calls[static_cast<std::size_t>(i)].callback());
  }
  for (auto& c : calls) {
    if (std::get<0>(c.f.get()).code != status::ok) return nullptr;
  }
  return s;
}

// The order in which answers arrive (on the writer thread).
struct answer_log {
  std::mutex mu;
  std::vector<std::string> order;
  void add(std::string what) {
    std::lock_guard lk(mu);
    order.push_back(std::move(what));
  }
};

// Starts `pass`, then enqueues one message; both must succeed and the enqueue
// must be answered first.
template <class Pass>
void enqueue_is_answered_during(queue::spool& s, Pass pass, std::size_t expected_count) {
  answer_log log;
  sync_call<queue::result, std::size_t> bulk;
  sync_call<queue::result> enq;
  pass([&log, cb = bulk.callback()](queue::result r, std::size_t n) {
    log.add("bulk");
    cb(std::move(r), n);
  });
  s.enqueue(make_record(s, 16, big_queue), "b", [&log, cb = enq.callback()](queue::result r) {
    log.add("enqueue");
    cb(std::move(r));
  });
  const auto [bulk_res, n] = bulk.f.get();
  const auto [enq_res] = enq.f.get();
  EXPECT_EQ(bulk_res.code, status::ok) << bulk_res.detail;
  EXPECT_EQ(enq_res.code, status::ok) << enq_res.detail;
  EXPECT_GE(n, expected_count);
  std::lock_guard lk(log.mu);
  EXPECT_EQ(log.order, (std::vector<std::string>{"enqueue", "bulk"}));
}

TEST(spool_bulk, enqueue_is_answered_before_a_long_reschedule_pass_ends) {
  temp_dir d;
  auto s = open_big_queue(d);
  ASSERT_TRUE(s);
  enqueue_is_answered_during(
      *s, [&](auto done) { s->reschedule({}, 1'700'000'000'000'000, std::move(done)); },
      big_queue);
}

TEST(spool_bulk, enqueue_is_answered_before_a_long_hold_and_release_pass_ends) {
  temp_dir d;
  auto s = open_big_queue(d);
  ASSERT_TRUE(s);
  enqueue_is_answered_during(
      *s, [&](auto done) { s->set_held({}, true, std::move(done)); }, big_queue);
  enqueue_is_answered_during(
      *s, [&](auto done) { s->set_held({}, false, std::move(done)); }, big_queue);
  EXPECT_EQ(s->message_count(), static_cast<std::uint64_t>(big_queue) + 2);
}

}  // namespace
