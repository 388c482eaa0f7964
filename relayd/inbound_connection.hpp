// One inbound SMTP connection: the TCP stream (moved under TLS by the server
// handshake), or a client of the local submission socket (a Unix stream, never
// TLS), and the one way its operations get a deadline. Every write and
// handshake runs under beast::tcp_stream::expires_after: past it the stream
// closes itself and the operation fails with beast::error::timeout, so nothing
// can outlive the operation. A read's deadline must leave the connection
// writable (the session answers 421 4.4.2), so a read has a deadline of its
// own: one timer per connection, moved only when a read needs it earlier, whose
// handler holds the connection weakly and cancels the socket only while the
// read it was set for is pending and past its deadline (so it can neither fire
// into freed memory nor cancel the next operation). Used by the inbound I/O
// thread only.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "relayd/net.hpp"

namespace boost::asio::ssl {
class context;
}
struct ssl_st;

namespace relayd {

class inbound_connection {
 public:
  using duration = std::chrono::steady_clock::duration;
  struct read_result {
    boost::system::error_code ec;
    std::size_t bytes = 0;
    bool timed_out = false;    // the deadline passed first: nothing was read
    bool interrupted = false;  // interrupt_read() woke it: nothing was read
  };

  inbound_connection(tcp::socket socket, std::string ip, std::uint16_t port);
  // A client of the local submission socket: `ip` is empty, `port` 0.
  explicit inbound_connection(asio::local::stream_protocol::socket socket);
  ~inbound_connection();
  inbound_connection(const inbound_connection&) = delete;
  inbound_connection& operator=(const inbound_connection&) = delete;

  // Reads what is there, waiting at most `limit`.
  awaitable<read_result> read_some(asio::mutable_buffer buffer, duration limit);
  // Writes all of `data` within `limit`; beast::error::timeout closes the stream.
  awaitable<boost::system::error_code> write(std::string_view data, duration limit);
  // The server side of the TLS handshake with `ctx` within `limit` (TCP only).
  awaitable<boost::system::error_code> handshake(asio::ssl::context& ctx, duration limit);
  // Wakes a pending read_some() (graceful stop); no effect on writes.
  void interrupt_read();
  void close();

  // The OpenSSL session once handshake() succeeded, else null.
  ssl_st* tls_handle();

  const std::string ip;
  const std::uint16_t port;
  // Set by a graceful stop: the session ends once no transaction is open.
  bool stop_requested = false;

 private:
  struct streams;
  std::shared_ptr<streams> s_;  // shared: the read deadline's handler holds it weakly
};

}  // namespace relayd
