// The inbound stream (see inbound_connection.hpp): beast::tcp_stream, then
// asio::ssl::stream<beast::tcp_stream> after the handshake. Deadlines live in
// the stream (writes, handshake) or in this object's timer awaited together
// with the read; none is a detached handler, so none can fire into freed memory
// or cancel the next operation.
#include "relayd/inbound_connection.hpp"

#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core/tcp_stream.hpp>

namespace relayd {

namespace beast = boost::beast;
namespace ssl = asio::ssl;
using namespace asio::experimental::awaitable_operators;

struct inbound_connection::streams {
  explicit streams(tcp::socket s) : plain(std::move(s)), read_deadline(plain.get_executor()) {}
  beast::tcp_stream& layer() { return tls ? tls->next_layer() : plain; }

  beast::tcp_stream plain;  // moved into `tls` by the handshake
  std::unique_ptr<ssl::stream<beast::tcp_stream>> tls;
  asio::steady_timer read_deadline;
};

inbound_connection::inbound_connection(tcp::socket socket, std::string ip_, std::uint16_t port_)
    : ip(std::move(ip_)), port(port_), s_(std::make_unique<streams>(std::move(socket))) {}

inbound_connection::~inbound_connection() = default;

awaitable<inbound_connection::read_result> inbound_connection::read_some(
    asio::mutable_buffer buffer, duration limit) {
  read_result r;
  s_->layer().expires_never();
  s_->read_deadline.expires_after(limit);
  reading_ = true;
  auto read = [&]() -> awaitable<std::pair<boost::system::error_code, std::size_t>> {
    boost::system::error_code ec;
    std::size_t n = 0;
    if (s_->tls)
      std::tie(ec, n) = co_await s_->tls->async_read_some(buffer, use_tuple);
    else
      std::tie(ec, n) = co_await s_->plain.async_read_some(buffer, use_tuple);
    co_return std::pair{ec, n};
  };
  auto outcome = co_await (read() || s_->read_deadline.async_wait(use_tuple));
  reading_ = false;
  if (outcome.index() == 0) {
    std::tie(r.ec, r.bytes) = std::get<0>(outcome);
  } else {
    auto [ec] = std::get<1>(outcome);
    r.ec = asio::error::operation_aborted;
    (ec ? r.interrupted : r.timed_out) = true;
  }
  co_return r;
}

awaitable<boost::system::error_code> inbound_connection::write(std::string_view data,
                                                               duration limit) {
  s_->layer().expires_after(limit);
  boost::system::error_code ec;
  if (s_->tls)
    std::tie(ec, std::ignore) = co_await asio::async_write(*s_->tls, asio::buffer(data), use_tuple);
  else
    std::tie(ec, std::ignore) = co_await asio::async_write(s_->plain, asio::buffer(data), use_tuple);
  s_->layer().expires_never();
  co_return ec;
}

awaitable<boost::system::error_code> inbound_connection::handshake(ssl::context& ctx,
                                                                   duration limit) {
  s_->tls = std::make_unique<ssl::stream<beast::tcp_stream>>(std::move(s_->plain), ctx);
  s_->layer().expires_after(limit);
  auto [ec] = co_await s_->tls->async_handshake(ssl::stream_base::server, use_tuple);
  s_->layer().expires_never();
  co_return ec;
}

void inbound_connection::interrupt_read() {
  if (reading_) s_->read_deadline.cancel();
}

void inbound_connection::close() {
  boost::system::error_code ec;
  s_->layer().socket().close(ec);
}

ssl_st* inbound_connection::tls_handle() {
  return s_->tls ? s_->tls->native_handle() : nullptr;
}

}  // namespace relayd
