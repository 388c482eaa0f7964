// Bridges callback APIs that complete on another thread (the spool's writer)
// into awaitables: the completion is posted back to the awaiting coroutine's
// executor, so coroutine state is only ever touched by the I/O thread.
#pragma once

#include <memory>
#include <utility>

#include "relayd/net.hpp"

namespace relayd {

// co_await from_callback<void(queue::result)>([&](auto done) { spool.enqueue(..., done); });
template <typename Signature, typename Init>
auto from_callback(Init init) {
  return asio::async_initiate<const asio::use_awaitable_t<>&, Signature>(
      [init = std::move(init)](auto handler) mutable {
        auto ex = asio::get_associated_executor(handler);
        auto h = std::make_shared<decltype(handler)>(std::move(handler));
        init([h, ex](auto... args) {
          asio::post(ex, [h, ... a = std::move(args)]() mutable { std::move(*h)(std::move(a)...); });
        });
      },
      asio::use_awaitable);
}

}  // namespace relayd
