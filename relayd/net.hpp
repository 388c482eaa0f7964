// Asio aliases shared by the daemon's I/O code. Only .cpp files that do network
// I/O include this; headers that describe data must not.
#pragma once

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ip/v6_only.hpp>
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

// A listening socket on `e` (address reuse; IPv6 only for an IPv6 address, so
// "[::]:25" and "0.0.0.0:25" can both be configured); `ec` says why not.
inline tcp::acceptor open_listener(asio::io_context& io, const tcp::endpoint& e,
                                   boost::system::error_code& ec) {
  tcp::acceptor acc(io);
  acc.open(e.protocol(), ec);
  if (!ec) acc.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec && e.address().is_v6()) acc.set_option(asio::ip::v6_only(true), ec);
  if (!ec) acc.bind(e, ec);
  if (!ec) acc.listen(asio::socket_base::max_listen_connections, ec);
  return acc;
}
}  // namespace relayd
