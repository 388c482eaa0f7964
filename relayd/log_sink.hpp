// relayd's log sink: lines are formatted by the thread that logs them and
// appended to a buffer; one writer thread puts the buffer on stderr in one
// write(2) per batch (a batch gathers for at most `batch_window` after its first
// line, or until a warning or worse arrives). So a log line never costs the I/O
// thread a write or a wake-up of its own, and nothing is dropped: the
// destructor (spdlog::shutdown) writes what is left. A write error is ignored:
// there is nowhere left to report it.
#pragma once

#include <spdlog/sinks/base_sink.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>

namespace relayd {

class batched_stderr_sink final : public spdlog::sinks::base_sink<std::mutex> {
 public:
  explicit batched_stderr_sink(
      std::chrono::milliseconds batch_window = std::chrono::milliseconds(10));
  ~batched_stderr_sink() override;
  batched_stderr_sink(const batched_stderr_sink&) = delete;
  batched_stderr_sink& operator=(const batched_stderr_sink&) = delete;

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override;  // under mutex_
  void flush_() override;                                       // under mutex_

 private:
  void run();

  const std::chrono::milliseconds window_;
  std::condition_variable wake_;  // with base_sink's mutex_
  std::string pending_;           // guarded by mutex_
  bool urgent_ = false;           // guarded by mutex_: write without waiting
  bool stopping_ = false;         // guarded by mutex_
  std::thread writer_;            // started last, joined in the destructor
};

}  // namespace relayd
