// Implements inbound_thread.hpp. The park is a handler posted to io(): it
// says it is parked and waits for the release under the same mutex the
// thread's end is announced under, so paused() never waits for a handler
// that a stopped io_context will not run.
#include "relayd/inbound_thread.hpp"

#include <pthread.h>

#include <condition_variable>
#include <mutex>
#include <optional>
#include <thread>

#include "relayd/net.hpp"

namespace relayd {

struct inbound_thread::impl {
  asio::io_context io{1};
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work{
      asio::make_work_guard(io)};
  std::thread thread;
  std::mutex mu;
  std::condition_variable cv;
  bool running = false;  // io.run() is (about to be) running on `thread`
  // The current park, if any: paused() sets `pause` and waits for `parked`;
  // the parked handler waits for `pause` to go.
  bool pause = false;
  bool parked = false;
};

inbound_thread::inbound_thread() : impl_(std::make_unique<impl>()) {}

inbound_thread::~inbound_thread() { stop(); }

asio::io_context& inbound_thread::io() { return impl_->io; }

void inbound_thread::start() {
  impl& m = *impl_;
  {
    std::lock_guard lk(m.mu);
    m.running = true;
  }
  m.thread = std::thread([&m] {
    ::pthread_setname_np(::pthread_self(), "inbound");  // for top -H, ps -L, perf
    m.io.run();
    std::lock_guard lk(m.mu);
    m.running = false;
    m.cv.notify_all();
  });
}

void inbound_thread::paused(const std::function<void()>& f) {
  impl& m = *impl_;
  std::unique_lock lk(m.mu);
  if (!m.running) {
    lk.unlock();
    f();
    return;
  }
  m.pause = true;
  m.parked = false;
  asio::post(m.io, [&m] {
    std::unique_lock park(m.mu);
    m.parked = true;
    m.cv.notify_all();
    m.cv.wait(park, [&m] { return !m.pause; });
  });
  m.cv.wait(lk, [&m] { return m.parked || !m.running; });
  lk.unlock();
  struct release {  // also when `f` throws: the inbound thread goes on
    impl& m;
    ~release() {
      std::lock_guard held(m.mu);
      m.pause = false;
      m.cv.notify_all();
    }
  } on_exit{m};
  f();
}

void inbound_thread::stop() {
  impl& m = *impl_;
  m.work.reset();
  m.io.stop();
  if (m.thread.joinable()) m.thread.join();
}

}  // namespace relayd
