// The /metrics endpoint: a minimal HTTP/1.1 server on [metrics] listen. GET (or
// HEAD) /metrics answers 200 with render()'s text; other paths 404, other methods
// 405. One request per connection (Connection: close), request head limited to
// 8 KiB (431), 10 s to send it, at most 16 connections at once. Malformed input
// gets 400 and a close, never more. Asio stays in metrics_http.cpp.
#pragma once

#include <cstdint>
#include <expected>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "relayd/config.hpp"

namespace boost::asio {
class io_context;
}

namespace relayd {

// The answer to one request head (the bytes before the blank line); no I/O.
struct http_route {
  int status = 400;        // 200, 400, 404, 405, 505
  bool head_only = false;  // HEAD: headers without the body
};
http_route route_metrics_request(std::string_view head);
// The answer to the bytes of a request read so far, or nullopt: read more. A
// broken request line is answered at once (400/505), a head over max_head 431.
std::optional<http_route> classify_metrics_head(std::string_view buf);

class metrics_server {
 public:
  static constexpr std::size_t max_head = 8 * 1024;
  static constexpr std::size_t max_connections = 16;

  metrics_server(boost::asio::io_context& io, const endpoint& ep,
                 std::function<std::string()> render);
  ~metrics_server();
  metrics_server(const metrics_server&) = delete;
  metrics_server& operator=(const metrics_server&) = delete;

  // Binds every address `ep` resolves to and starts accepting; an error names
  // the endpoint ("127.0.0.1:9587: Address already in use").
  std::expected<void, std::string> start();
  // Closes the listeners and every open connection. Idempotent; the destructor
  // calls it, so destroy the server before its io_context.
  void stop();
  // The bound port of the first listener (for ep.port 0); 0 before start().
  std::uint16_t local_port() const;

 private:
  struct impl;
  std::shared_ptr<impl> impl_;
};

}  // namespace relayd
