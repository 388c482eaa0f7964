// Implements events_report_log.hpp: one writer thread, one open file (the
// day of the last record written).
#include "relayd/events_report_log.hpp"

#include <fcntl.h>
#include <pthread.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <thread>

#include "relayd/events_report.hpp"

namespace relayd {
namespace {

namespace fs = std::filesystem;

constexpr std::size_t max_queue = 65536;  // events waiting for the writer
constexpr std::size_t wake_at = 1024;     // events waiting that wake the writer early
constexpr auto idle_wake = std::chrono::seconds(1);
constexpr std::int64_t day_seconds = 86400;

std::int64_t day_of(std::int64_t unix_seconds) {
  return unix_seconds >= 0 ? unix_seconds / day_seconds : (unix_seconds - day_seconds + 1) / day_seconds;
}

std::string file_name(std::int64_t day) {
  const time_t t = static_cast<time_t>(day * day_seconds);
  struct tm tm {};
  gmtime_r(&t, &tm);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%04d%02d%02d.log", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday);
  return buf;
}

// "20261202.log" -> its day; nullopt for any other name.
std::optional<std::int64_t> day_of_name(const std::string& name) {
  if (name.size() != 12 || !name.ends_with(".log")) return std::nullopt;
  for (std::size_t i = 0; i < 8; ++i)
    if (name[i] < '0' || name[i] > '9') return std::nullopt;
  struct tm tm {};
  tm.tm_year = std::stoi(name.substr(0, 4)) - 1900;
  tm.tm_mon = std::stoi(name.substr(4, 2)) - 1;
  tm.tm_mday = std::stoi(name.substr(6, 2));
  return day_of(static_cast<std::int64_t>(timegm(&tm)));
}

std::int64_t now_seconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace

struct report_log::state {
  std::string dir;
  std::uint64_t days;
  std::mutex mu;  // guards the four below
  std::condition_variable cv;
  std::vector<event> events;
  std::vector<std::function<void()>> flushed;  // flush()'s callers, told after the next write
  bool stopping = false;
  std::thread writer;
  // writer thread only
  int fd = -1;
  std::int64_t fd_day = 0;
  std::int64_t pruned_day = 0;
  std::atomic<std::int64_t> last_complaint{-(1ll << 62)};  // any thread

  void complain(const std::string& what);
  void prune(std::int64_t today);
  bool open_day(std::int64_t day);
  void write_loop();
};

void report_log::state::complain(const std::string& what) {
  const auto now = now_seconds();
  std::int64_t last = last_complaint.load();
  if (now - last < 60 || !last_complaint.compare_exchange_strong(last, now)) return;
  spdlog::warn("events report {}: {} (records for relayctl report are dropped)", dir, what);
}

void report_log::state::prune(std::int64_t today) {
  pruned_day = today;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    auto day = day_of_name(e.path().filename().string());
    if (day && *day < today - static_cast<std::int64_t>(days) + 1) {
      std::error_code rm;
      fs::remove(e.path(), rm);
      if (rm) complain("cannot remove " + e.path().filename().string() + ": " + rm.message());
    }
  }
}

bool report_log::state::open_day(std::int64_t day) {
  if (fd >= 0 && fd_day == day) return true;
  if (fd >= 0) ::close(fd);
  const std::string path = dir + "/" + file_name(day);
  fd = ::open(path.c_str(), O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
  if (fd < 0) {
    complain("cannot open " + path + ": " + std::strerror(errno));
    return false;
  }
  fd_day = day;
  // A line cut short (a crash, a full disk) is ended, so the next one is whole.
  struct stat st {};
  char last = '\n';
  if (::fstat(fd, &st) == 0 && st.st_size > 0 && ::pread(fd, &last, 1, st.st_size - 1) == 1 &&
      last != '\n')
    (void)!::write(fd, "\n", 1);
  return true;
}

void report_log::state::write_loop() {
  std::unique_lock lk(mu);
  for (;;) {
    cv.wait_for(lk, idle_wake,
                [&] { return stopping || !flushed.empty() || events.size() >= wake_at; });
    if (events.empty() && flushed.empty()) {
      if (stopping) return;  // everything written
      continue;
    }
    std::vector<event> batch;
    batch.swap(events);
    std::vector<std::function<void()>> told;
    told.swap(flushed);
    lk.unlock();
    const std::int64_t today = day_of(now_seconds());
    if (today != pruned_day) prune(today);
    // Records in runs of the same day, one write() per run.
    std::string chunk;
    std::int64_t chunk_day = 0;
    auto flush = [&] {
      if (chunk.empty() || !open_day(chunk_day)) return chunk.clear();
      std::string_view rest = chunk;
      while (!rest.empty()) {
        const ssize_t w = ::write(fd, rest.data(), rest.size());
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
          complain(std::string("cannot write: ") + std::strerror(errno));
          break;
        }
        rest.remove_prefix(static_cast<std::size_t>(w));
      }
      chunk.clear();
    };
    for (const auto& e : batch) {
      const report_record r = record_of(e);
      const auto day = day_of(r.time);
      if (day != chunk_day) flush();
      chunk_day = day;
      chunk += to_line(r);
    }
    flush();
    for (auto& done : told) {
      try {
        done();
      } catch (...) {
        // A caller's callback must not take the writer down.
      }
    }
    lk.lock();
  }
}

report_log::report_log(std::string dir, std::uint64_t days) : s_(std::make_unique<state>()) {
  s_->dir = std::move(dir);
  s_->days = days;
}

report_log::~report_log() {
  {
    std::lock_guard lk(s_->mu);
    s_->stopping = true;
  }
  s_->cv.notify_all();
  if (s_->writer.joinable()) s_->writer.join();
  if (s_->fd >= 0) ::close(s_->fd);
}

bool report_log::start(std::string& error) {
  if (::mkdir(s_->dir.c_str(), 0750) != 0 && errno != EEXIST) {
    error = "events report: " + s_->dir + ": " + std::strerror(errno);
    return false;
  }
  if (::access(s_->dir.c_str(), W_OK) != 0) {
    error = "events report: " + s_->dir + ": " + std::strerror(errno);
    return false;
  }
  s_->prune(day_of(now_seconds()));
  s_->writer = std::thread([s = s_.get()] {
    ::pthread_setname_np(::pthread_self(), "events-report");  // for top -H, ps -L, perf
    s->write_loop();
  });
  return true;
}

void report_log::add(std::vector<event> events) {
  std::size_t dropped = 0;
  bool wake = false;
  {
    std::lock_guard lk(s_->mu);
    if (!s_->writer.joinable()) return;
    for (auto& e : events) {
      if (s_->events.size() >= max_queue) {
        ++dropped;
        continue;
      }
      s_->events.push_back(std::move(e));
    }
    wake = s_->events.size() >= wake_at;
  }
  if (wake) s_->cv.notify_one();
  if (dropped != 0) s_->complain("the writer is behind (" + std::to_string(max_queue) + " waiting)");
}

void report_log::flush(std::function<void()> done) {
  {
    std::lock_guard lk(s_->mu);
    if (s_->writer.joinable() && !s_->stopping) {
      s_->flushed.push_back(std::move(done));
      done = nullptr;
    }
  }
  if (done) {
    done();
    return;
  }
  s_->cv.notify_one();
}

std::string report_dir(const std::string& spool) { return spool + "/events"; }

std::vector<std::string> report_files(const std::string& dir, std::int64_t since, std::int64_t until) {
  std::vector<std::pair<std::int64_t, std::string>> found;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    auto day = day_of_name(e.path().filename().string());
    if (day && *day >= day_of(since) && *day <= day_of(until - 1)) found.emplace_back(*day, e.path().string());
  }
  std::ranges::sort(found);
  std::vector<std::string> out;
  for (auto& [day, path] : found) out.push_back(std::move(path));
  return out;
}

}  // namespace relayd
