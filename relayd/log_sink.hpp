// relayd's log sink: lines are formatted by the thread that logs them and
// appended to a buffer; one writer thread puts the buffer on stderr in one
// write(2) per batch (a batch gathers for at most `batch_window` after its first
// line, or until a warning or worse arrives). So a log line never costs the I/O
// thread a write or a wake-up of its own, and nothing is dropped: the
// destructor (spdlog::shutdown) writes what is left. A write error is ignored:
// there is nowhere left to report it.
//
// Under journald (stderr is the journal stream: JOURNAL_STREAM names its
// device and inode) each line starts with its syslog priority, "<3>" for an
// error ... "<7>" for debug (sd-daemon(3)), and main.cpp's pattern drops the
// timestamp and PID that the journal records itself.
#pragma once

#include <spdlog/sinks/base_sink.h>
#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>

#include "relayd/config.hpp"

namespace relayd {

// The syslog priority of a line: critical 2, error 3, warning 4, info 6,
// debug and trace 7 (relayd writes no notice lines).
int syslog_priority(spdlog::level::level_enum level);
// [log] level as spdlog's threshold (notice: warning, see config.hpp).
spdlog::level::level_enum spdlog_level(log_level level);
// Whether JOURNAL_STREAM's value ("DEVICE:INODE", decimal) names this stream
// (systemd sets it for a service whose stderr is the journal; a child whose
// stderr was redirected inherits the variable, not the stream).
bool journal_stream_matches(std::string_view value, dev_t device, ino_t inode);
// journal_stream_matches for the environment's JOURNAL_STREAM and stderr.
bool stderr_is_journal();

class batched_stderr_sink final : public spdlog::sinks::base_sink<std::mutex> {
 public:
  // `journal`: prefix every line with "<N>", its syslog priority.
  explicit batched_stderr_sink(
      std::chrono::milliseconds batch_window = std::chrono::milliseconds(10),
      bool journal = false);
  ~batched_stderr_sink() override;
  batched_stderr_sink(const batched_stderr_sink&) = delete;
  batched_stderr_sink& operator=(const batched_stderr_sink&) = delete;

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override;  // under mutex_
  void flush_() override;                                       // under mutex_

 private:
  void run();

  const std::chrono::milliseconds window_;
  const bool journal_;
  std::condition_variable wake_;  // with base_sink's mutex_
  std::string pending_;           // guarded by mutex_
  bool urgent_ = false;           // guarded by mutex_: write without waiting
  bool stopping_ = false;         // guarded by mutex_
  std::thread writer_;            // started last, joined in the destructor
};

}  // namespace relayd
