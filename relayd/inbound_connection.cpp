// The inbound stream (see inbound_connection.hpp): beast::tcp_stream, then
// asio::ssl::stream<beast::tcp_stream> after the handshake; or a
// beast::basic_stream over the local submission socket. Deadlines live in
// the stream (writes, handshake) or in this object's timer awaited together
// with the read; none is a detached handler, so none can fire into freed memory
// or cancel the next operation.
#include "relayd/inbound_connection.hpp"

#include <cassert>
#include <optional>

#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core/tcp_stream.hpp>

namespace relayd {

namespace beast = boost::beast;
namespace ssl = asio::ssl;
using namespace asio::experimental::awaitable_operators;

using unix_stream = beast::basic_stream<asio::local::stream_protocol>;

// Exactly one of `plain` (TCP, moved into `tls` by the handshake) and `local`
// (the submission socket) is engaged from the start.
struct inbound_connection::streams {
  explicit streams(tcp::socket s)
      : plain(std::in_place, std::move(s)), read_deadline(plain->get_executor()) {}
  explicit streams(asio::local::stream_protocol::socket s)
      : local(std::in_place, std::move(s)), read_deadline(local->get_executor()) {}

  // `f` on the stream that holds the socket and the write deadline.
  template <typename F>
  void with_layer(F f) {
    if (local)
      f(*local);
    else
      f(tls ? tls->next_layer() : *plain);
  }
  // `f` on the stream reads and writes go through; every branch gives one type.
  template <typename F>
  auto with_stream(F f) {
    if (tls) return f(*tls);
    if (local) return f(*local);
    return f(*plain);
  }

  std::optional<beast::tcp_stream> plain;
  std::optional<unix_stream> local;
  std::unique_ptr<ssl::stream<beast::tcp_stream>> tls;
  asio::steady_timer read_deadline;
};

inbound_connection::inbound_connection(tcp::socket socket, std::string ip_, std::uint16_t port_)
    : ip(std::move(ip_)), port(port_), s_(std::make_unique<streams>(std::move(socket))) {}

inbound_connection::inbound_connection(asio::local::stream_protocol::socket socket)
    : ip(), port(0), s_(std::make_unique<streams>(std::move(socket))) {}

inbound_connection::~inbound_connection() = default;

awaitable<inbound_connection::read_result> inbound_connection::read_some(
    asio::mutable_buffer buffer, duration limit) {
  read_result r;
  s_->with_layer([](auto& l) { l.expires_never(); });
  s_->read_deadline.expires_after(limit);
  reading_ = true;
  auto read = [&]() -> awaitable<std::pair<boost::system::error_code, std::size_t>> {
    auto [ec, n] = co_await s_->with_stream(
        [&](auto& st) { return st.async_read_some(buffer, use_tuple); });
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
  s_->with_layer([&](auto& l) { l.expires_after(limit); });
  auto [ec, n] = co_await s_->with_stream(
      [&](auto& st) { return asio::async_write(st, asio::buffer(data), use_tuple); });
  s_->with_layer([](auto& l) { l.expires_never(); });
  co_return ec;
}

awaitable<boost::system::error_code> inbound_connection::handshake(ssl::context& ctx,
                                                                   duration limit) {
  assert(s_->plain && "no TLS on the local submission socket");
  s_->tls = std::make_unique<ssl::stream<beast::tcp_stream>>(std::move(*s_->plain), ctx);
  s_->tls->next_layer().expires_after(limit);
  auto [ec] = co_await s_->tls->async_handshake(ssl::stream_base::server, use_tuple);
  s_->tls->next_layer().expires_never();
  co_return ec;
}

void inbound_connection::interrupt_read() {
  if (reading_) s_->read_deadline.cancel();
}

void inbound_connection::close() {
  s_->with_layer([](auto& l) {
    boost::system::error_code ec;
    l.socket().close(ec);
  });
}

ssl_st* inbound_connection::tls_handle() {
  return s_->tls ? s_->tls->native_handle() : nullptr;
}

}  // namespace relayd
