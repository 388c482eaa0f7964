// Bridges callback APIs that complete on another thread (the spool's writer)
// into awaitables: the completion is posted back to the awaiting coroutine's
// executor, so coroutine state is only ever touched by the I/O thread. Until the
// callback has run (or been dropped), the awaiting executor counts outstanding
// work, so io_context::run() cannot return and lose the answer during shutdown.
#pragma once

#include <boost/asio/execution/outstanding_work.hpp>
#include <boost/asio/prefer.hpp>
#include <memory>
#include <utility>

#include "relayd/net.hpp"

namespace relayd {

// co_await from_callback<void(queue::result)>([&](auto done) { spool.enqueue(..., done); });
// `done` may be called from any thread, once; destroying it uncalled releases the work.
template <typename Signature, typename Init>
auto from_callback(Init init) {
  return asio::async_initiate<const asio::use_awaitable_t<>&, Signature>(
      [init = std::move(init)](auto handler) mutable {
        // The tracked copy of the executor is the work guard. It moves into the
        // posted answer, so the count drops as soon as the answer has run, even
        // while the callee still holds (a copy of) `done`.
        auto tracked = asio::prefer(asio::get_associated_executor(handler),
                                 asio::execution::outstanding_work.tracked);
        struct pending {
          decltype(handler) answer;
          decltype(tracked) work;
        };
        auto p = std::make_shared<pending>(pending{std::move(handler), std::move(tracked)});
        init([p](auto... args) {
          auto ex = std::move(p->work);
          asio::post(ex, [p, ... a = std::move(args)]() mutable {
            std::move(p->answer)(std::move(a)...);
          });
        });
      },
      asio::use_awaitable);
}

}  // namespace relayd
