// Implements log_sink.hpp.
#include "relayd/log_sink.hpp"

#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdlib>

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

int syslog_priority(spdlog::level::level_enum level) {
  switch (level) {
    case spdlog::level::critical: return 2;
    case spdlog::level::err: return 3;
    case spdlog::level::warn: return 4;
    case spdlog::level::info: return 6;
    default: return 7;  // debug, trace
  }
}

spdlog::level::level_enum spdlog_level(log_level level) {
  switch (level) {
    case log_level::debug: return spdlog::level::debug;
    case log_level::info: return spdlog::level::info;
    case log_level::notice:
    case log_level::warning: return spdlog::level::warn;
    case log_level::error: return spdlog::level::err;
  }
  return spdlog::level::info;
}

bool journal_stream_matches(std::string_view value, dev_t device, ino_t inode) {
  const auto colon = value.find(':');
  if (colon == std::string_view::npos) return false;
  unsigned long long dev = 0, ino = 0;
  const auto d = std::from_chars(value.data(), value.data() + colon, dev);
  const auto i = std::from_chars(value.data() + colon + 1, value.data() + value.size(), ino);
  if (d.ec != std::errc() || d.ptr != value.data() + colon || colon == 0 ||
      i.ec != std::errc() || i.ptr != value.data() + value.size() || colon + 1 == value.size())
    return false;
  return dev == static_cast<unsigned long long>(device) &&
         ino == static_cast<unsigned long long>(inode);
}

bool stderr_is_journal() {
  const char* value = std::getenv("JOURNAL_STREAM");
  struct stat st {};
  return value != nullptr && ::fstat(STDERR_FILENO, &st) == 0 &&
         journal_stream_matches(value, st.st_dev, st.st_ino);
}

batched_stderr_sink::batched_stderr_sink(std::chrono::milliseconds batch_window, bool journal)
    : window_(batch_window), journal_(journal), writer_([this] {
        ::pthread_setname_np(::pthread_self(), "log-writer");  // for top -H, ps -L, perf
        run();
      }) {}

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
  if (journal_) {
    pending_ += '<';
    pending_ += static_cast<char>('0' + syslog_priority(msg.level));
    pending_ += '>';
  }
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
