// inbound_thread: the inbound I/O thread runs what is posted to it, and
// paused() runs its function while that thread runs no handler (a reload
// changes what sessions read), also when the thread is not running.
#include "relayd/inbound_thread.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "relayd/net.hpp"

namespace relayd {
namespace {

using namespace std::chrono_literals;

TEST(inbound_thread, runs_posted_work_on_its_own_thread) {
  inbound_thread t;
  t.start();
  std::atomic<bool> ran{false};
  std::thread::id where;
  asio::post(t.io(), [&] {
    where = std::this_thread::get_id();
    ran = true;
  });
  for (int i = 0; i < 500 && !ran; ++i) std::this_thread::sleep_for(2ms);
  ASSERT_TRUE(ran);
  EXPECT_NE(where, std::this_thread::get_id());
  t.stop();
}

// A stream of handlers, each one noting it runs: none may run while the
// paused function does, and they go on afterwards.
TEST(inbound_thread, paused_function_runs_while_no_handler_runs) {
  inbound_thread t;
  std::atomic<bool> in_pause{false}, overlap{false}, stop{false};
  std::atomic<int> handled{0};
  std::function<void()> tick = [&] {
    if (in_pause) overlap = true;
    ++handled;
    std::this_thread::sleep_for(50us);
    if (!stop) asio::post(t.io(), tick);
  };
  asio::post(t.io(), tick);
  t.start();
  while (handled < 20) std::this_thread::sleep_for(1ms);
  for (int round = 0; round < 20; ++round) {
    int before = -1, after = -1;
    t.paused([&] {
      in_pause = true;
      before = handled;
      std::this_thread::sleep_for(5ms);  // a handler would run many times meanwhile
      after = handled;
      in_pause = false;
    });
    EXPECT_EQ(before, after) << "round " << round;
    const int resumed_from = handled;
    while (handled < resumed_from + 5) std::this_thread::sleep_for(100us);
  }
  EXPECT_FALSE(overlap);
  stop = true;
  t.stop();
}

TEST(inbound_thread, paused_runs_at_once_before_start_and_after_stop) {
  inbound_thread t;
  int runs = 0;
  t.paused([&] { ++runs; });
  t.start();
  t.stop();
  t.paused([&] { ++runs; });  // the thread is gone: nobody to park, no wait
  EXPECT_EQ(runs, 2);
}

}  // namespace
}  // namespace relayd
