// from_callback (relayd/async_call.hpp), the bridge control requests use to await
// the spool: an answer that comes later, from another thread, still reaches the
// coroutine, because the pending call keeps io_context::run() from returning.
// (Boost 1.81's co_spawn also holds work for a spawned coroutine's whole life,
// so these pass without from_callback's own guard too; they pin the contract.)
#include <gtest/gtest.h>

#include <functional>
#include <optional>
#include <thread>

#include "relayd/async_call.hpp"

namespace relayd {
namespace {

TEST(control_async_call, pending_answer_keeps_the_io_context_running) {
  asio::io_context io(1);
  std::function<void(int)> done;  // the "spool" keeps the completion, answers later
  std::optional<int> answer;
  asio::co_spawn(
      io,
      [&]() -> awaitable<void> {
        answer = co_await from_callback<void(int)>([&](auto d) { done = std::move(d); });
      },
      asio::detached);
  // Runs the coroutine up to its co_await: no other work is left but the answer.
  io.poll();
  ASSERT_TRUE(done);
  EXPECT_FALSE(io.stopped()) << "run() would return before the answer arrives";
  std::thread writer([&] { done(42); });
  io.run();  // returns once the answer has been handed to the coroutine
  writer.join();
  ASSERT_TRUE(answer.has_value());
  EXPECT_EQ(*answer, 42);
}

TEST(control_async_call, dropped_callback_releases_the_io_context) {
  asio::io_context io(1);
  std::function<void(int)> done;
  asio::co_spawn(
      io,
      [&]() -> awaitable<void> {
        co_await from_callback<void(int)>([&](auto d) { done = std::move(d); });
      },
      asio::detached);
  io.poll();
  ASSERT_TRUE(done);
  EXPECT_FALSE(io.stopped());
  done = nullptr;  // the callee gave up without answering
  io.run();        // nothing keeps it running any more
  EXPECT_TRUE(io.stopped());
}

}  // namespace
}  // namespace relayd
