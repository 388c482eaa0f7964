// The inbound stream (see inbound_connection.hpp): beast::tcp_stream, then
// asio::ssl::stream<beast::tcp_stream> after the handshake; or a
// beast::basic_stream over the local submission socket. Deadlines live in
// the stream (writes, handshake) or, for reads, in this object's timer, which
// is armed rarely: a read only writes down its deadline, and the timer, when
// it fires early, moves itself to the read's (a read costs no timer operation).
#include "relayd/inbound_connection.hpp"

#include <cassert>
#include <optional>

#include <boost/asio/ssl.hpp>
#include <boost/beast/core/tcp_stream.hpp>

#include "relayd/send_now.hpp"

namespace relayd {

namespace beast = boost::beast;
namespace ssl = asio::ssl;

using unix_stream = beast::basic_stream<asio::local::stream_protocol>;

// Exactly one of `plain` (TCP, moved into `tls` by the handshake) and `local`
// (the submission socket) is engaged from the start.
struct inbound_connection::streams : std::enable_shared_from_this<streams> {
  using clock = std::chrono::steady_clock;

  explicit streams(tcp::socket s)
      : plain(std::in_place, std::move(s)), read_timer(plain->get_executor()) {}
  explicit streams(asio::local::stream_protocol::socket s)
      : local(std::in_place, std::move(s)), read_timer(local->get_executor()) {}

  // `f` on the stream that holds the socket and the write deadline; its result
  // (every branch gives one type).
  template <typename F>
  auto with_layer(F f) {
    if (local) return f(*local);
    return f(tls ? tls->next_layer() : *plain);
  }
  // `f` on the stream reads and writes go through; every branch gives one type.
  template <typename F>
  auto with_stream(F f) {
    if (tls) return f(*tls);
    if (local) return f(*local);
    return f(*plain);
  }

  // The read in progress ends with operation_aborted, nothing else pending.
  void cancel_read() {
    with_layer([](auto& l) {
      boost::system::error_code ignored;
      l.socket().cancel(ignored);
    });
  }
  // A read waiting until `deadline`: the timer is moved only when it would
  // fire later than that (or is not set).
  void read_until(clock::time_point at) {
    deadline = at;
    if (!timer_set || read_timer.expiry() > at) arm(at);
  }
  // Each arming has its number: a handler of an earlier one (already queued
  // when the timer was moved) does nothing.
  void arm(clock::time_point at) {
    read_timer.expires_at(at);
    timer_set = true;
    const std::uint64_t mine = ++armed;
    read_timer.async_wait([weak = weak_from_this(), mine](boost::system::error_code ec) {
      if (ec) return;  // moved or destroyed: not this arming's business any more
      auto self = weak.lock();
      if (!self || self->armed != mine) return;
      self->fired();
    });
  }
  void fired() {
    timer_set = false;
    if (!reading) return;  // the next read arms it again
    if (clock::now() < deadline) return arm(deadline);  // a later read moved the deadline on
    timed_out = true;
    cancel_read();
  }

  std::optional<beast::tcp_stream> plain;
  std::optional<unix_stream> local;
  std::unique_ptr<ssl::stream<beast::tcp_stream>> tls;
  asio::steady_timer read_timer;
  clock::time_point deadline;   // of the read in progress
  std::uint64_t armed = 0;      // the current arming's number
  bool timer_set = false;       // an arming is waiting
  bool reading = false;         // a read is pending
  bool timed_out = false;       // fired() cancelled the pending read
  bool interrupted = false;     // interrupt_read() cancelled it
};

inbound_connection::inbound_connection(tcp::socket socket, std::string ip_, std::uint16_t port_)
    : ip(std::move(ip_)), port(port_), s_(std::make_shared<streams>(std::move(socket))) {}

inbound_connection::inbound_connection(asio::local::stream_protocol::socket socket)
    : ip(), port(0), s_(std::make_shared<streams>(std::move(socket))) {}

inbound_connection::~inbound_connection() = default;

awaitable<inbound_connection::read_result> inbound_connection::read_some(
    asio::mutable_buffer buffer, duration limit) {
  streams& st = *s_;
  st.with_layer([](auto& l) { l.expires_never(); });
  st.timed_out = st.interrupted = false;
  st.read_until(streams::clock::now() + limit);
  st.reading = true;
  read_result r;
  // Without TLS the read goes to the socket itself: its deadline is this
  // object's timer, so the stream's own timeout machinery has nothing to do.
  if (st.tls)
    std::tie(r.ec, r.bytes) = co_await st.tls->async_read_some(buffer, use_tuple);
  else
    std::tie(r.ec, r.bytes) = co_await st.with_layer(
        [&](auto& l) { return l.socket().async_read_some(buffer, use_tuple); });
  st.reading = false;
  if (r.ec == asio::error::operation_aborted) {
    r.interrupted = st.interrupted;
    r.timed_out = !st.interrupted && st.timed_out;
  }
  co_return r;
}

awaitable<boost::system::error_code> inbound_connection::write(std::string_view data,
                                                               duration limit) {
  // Without TLS a reply that fits in the socket's buffer (nearly every one) is
  // sent here, with no asynchronous operation, timer or resumption; only what
  // did not fit waits for the socket, under the deadline.
  if (!s_->tls) {
    s_->with_layer([&](auto& l) { data.remove_prefix(send_now(l.socket().native_handle(), data)); });
    if (data.empty()) co_return boost::system::error_code{};
  }
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
  if (!s_->reading) return;
  s_->interrupted = true;
  s_->cancel_read();
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
