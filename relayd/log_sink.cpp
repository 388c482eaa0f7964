// Implements log_sink.hpp.
#include "relayd/log_sink.hpp"

#include <unistd.h>

#include <cerrno>

namespace relayd {
namespace {

void write_all(int fd, const std::string& s) {
  std::size_t off = 0;
  while (off < s.size()) {
    const ssize_t n = ::write(fd, s.data() + off, s.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    off += static_cast<std::size_t>(n);
  }
}

}  // namespace

batched_stderr_sink::batched_stderr_sink(std::chrono::milliseconds batch_window)
    : window_(batch_window), writer_([this] { run(); }) {}

batched_stderr_sink::~batched_stderr_sink() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_one();
  writer_.join();
}

void batched_stderr_sink::sink_it_(const spdlog::details::log_msg& msg) {
  spdlog::memory_buf_t line;
  formatter_->format(msg, line);
  const bool first = pending_.empty();
  pending_.append(line.data(), line.size());
  if (msg.level >= spdlog::level::warn) urgent_ = true;
  // One wake-up per batch: the writer sleeps until a batch starts.
  if (first || urgent_) wake_.notify_one();
}

void batched_stderr_sink::flush_() {
  urgent_ = true;
  wake_.notify_one();
}

void batched_stderr_sink::run() {
  std::string out;
  std::unique_lock lock(mutex_);
  for (;;) {
    wake_.wait(lock, [this] { return stopping_ || !pending_.empty(); });
    // Let the batch gather, unless it must go now.
    wake_.wait_for(lock, window_, [this] { return stopping_ || urgent_; });
    out.swap(pending_);
    urgent_ = false;
    const bool last = stopping_;
    lock.unlock();
    write_all(STDERR_FILENO, out);
    out.clear();
    lock.lock();
    if (last && pending_.empty()) return;
  }
}

}  // namespace relayd
