// Implements dead_retention.hpp: one coroutine on the I/O thread that owns a
// shared state (timer and flags), so neither the loop nor its timer ever refers
// to a destroyed object. Purges go through the spool's writer like any write.
#include "relayd/dead_retention.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "queue/clock.hpp"
#include "relayd/async_call.hpp"
#include "relayd/control_handlers.hpp"

namespace relayd {

struct dead_retention::impl : std::enable_shared_from_this<impl> {
  impl(asio::io_context& io_, std::chrono::seconds retention_, queue::spool& spool_)
      : io(io_), retention(retention_), spool(spool_), timer(io_) {}
  awaitable<void> run();

  asio::io_context& io;
  const std::chrono::seconds retention;
  queue::spool& spool;  // outlives io.run() (daemon.cpp)
  asio::steady_timer timer;
  bool stopped = false;
};

awaitable<void> dead_retention::impl::run() {
  namespace chrono = std::chrono;
  auto self = shared_from_this();  // keeps the timer alive while the loop waits on it
  const auto every =
      std::clamp<chrono::seconds>(retention / 10, chrono::seconds(1), chrono::hours(1));
  const std::int64_t retention_us = chrono::duration_cast<chrono::microseconds>(retention).count();
  while (!stopped) {
    const std::int64_t cutoff = queue::wall_clock_us() - retention_us;
    auto [res, n] = co_await from_callback<void(queue::result, std::size_t)>(
        [&](auto done) { spool.purge_dead_older_than(cutoff, std::move(done)); });
    if (res.code != queue::status::ok) {
      spdlog::error("dead spool: cannot purge expired entries: {}", res.detail);
    } else if (n != 0) {
      spdlog::info("dead spool: purged {} older than dead_retention ({}s)", entries_text(n),
                   retention.count());
    }
    if (stopped) co_return;
    timer.expires_after(every);
    co_await timer.async_wait(use_tuple);
  }
}

dead_retention::dead_retention(asio::io_context& io, std::chrono::seconds retention,
                               queue::spool& spool)
    : impl_(std::make_shared<impl>(io, retention, spool)) {}

dead_retention::~dead_retention() { stop(); }

void dead_retention::start() {
  if (impl_->retention.count() <= 0) return;
  asio::co_spawn(impl_->io, impl_->run(), [](std::exception_ptr e) {
    if (!e) return;
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& ex) {
      spdlog::error("dead spool retention: {}", ex.what());
    }
  });
}

void dead_retention::stop() {
  impl_->stopped = true;
  impl_->timer.cancel();
}

}  // namespace relayd
