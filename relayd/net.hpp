// Asio aliases shared by the daemon's I/O code. Only .cpp files that do network
// I/O include this; headers that describe data must not.
#pragma once

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

namespace relayd {
namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using asio::awaitable;
inline constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
}  // namespace relayd
