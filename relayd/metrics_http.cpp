// Implements metrics_http.hpp: one coroutine per listener, one per connection,
// on the daemon's I/O thread. The request head is judged by classify_metrics_head()
// (metrics_http_route.cpp) without I/O; the coroutine only reads, answers and
// closes, each step under the stream's expires_after deadline. After the answer the
// socket is shut down for sending and drained briefly, so a client that is still
// sending (an oversized head) reads the answer instead of a reset.
#include "relayd/metrics_http.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <array>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <list>

#include "relayd/metrics.hpp"
#include "relayd/net.hpp"

namespace relayd {
namespace {

constexpr auto read_timeout = std::chrono::seconds(10);
constexpr auto write_timeout = std::chrono::seconds(10);
constexpr auto drain_timeout = std::chrono::seconds(2);
constexpr std::size_t max_drain = 64 * 1024;

const char* reason_phrase(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 400:
      return "Bad Request";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 431:
      return "Request Header Fields Too Large";
    case 505:
      return "HTTP Version Not Supported";
    default:
      return "Error";
  }
}

// The request line for the debug log: at most 100 bytes, control bytes as '?'.
std::string printable(std::string_view s) {
  std::string out(s.substr(0, 100));
  for (auto& c : out)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
  return out;
}

std::string error_response(int status) {
  std::string body = fmt::format("{} {}\n", status, reason_phrase(status));
  return fmt::format(
      "HTTP/1.1 {} {}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n"
      "{}Connection: close\r\n\r\n{}",
      status, reason_phrase(status), body.size(), status == 405 ? "Allow: GET, HEAD\r\n" : "",
      body);
}

namespace beast = boost::beast;

// One connection; its deadline is the stream's (expires_after), so an expired
// one fails the pending operation with beast::error::timeout and nothing else.
struct http_conn {
  explicit http_conn(tcp::socket s) : stream(std::move(s)) {}
  beast::tcp_stream stream;
};

}  // namespace

struct metrics_server::impl : std::enable_shared_from_this<impl> {
  impl(asio::io_context& io_, const endpoint& ep_, std::function<std::string()> render_)
      : io(io_), ep(ep_), render(std::move(render_)) {}

  awaitable<void> accept_loop(tcp::acceptor& acc);
  awaitable<void> serve(std::shared_ptr<http_conn> c, std::string peer);

  asio::io_context& io;
  endpoint ep;
  std::function<std::string()> render;
  std::list<tcp::acceptor> acceptors;
  std::list<std::shared_ptr<http_conn>> conns;
  bool stopped = false;
  bool warned_full = false;
};

awaitable<void> metrics_server::impl::accept_loop(tcp::acceptor& acc) {
  auto self = shared_from_this();
  asio::steady_timer backoff(io);
  while (!stopped) {
    auto [ec, sock] = co_await acc.async_accept(use_tuple);
    if (stopped || ec == asio::error::operation_aborted) co_return;
    if (ec) {
      spdlog::error("metrics: accept: {}", ec.message());
      backoff.expires_after(std::chrono::milliseconds(100));
      co_await backoff.async_wait(use_tuple);
      continue;
    }
    if (conns.size() >= max_connections) {
      if (!warned_full)
        spdlog::warn("metrics: {} connections open, closing new ones", max_connections);
      warned_full = true;
      boost::system::error_code ignored;
      sock.close(ignored);
      continue;
    }
    warned_full = false;
    boost::system::error_code pe;
    auto remote = sock.remote_endpoint(pe);
    std::string peer = pe ? std::string("?") : remote.address().to_string();
    auto c = std::make_shared<http_conn>(std::move(sock));
    conns.push_back(c);
    auto it = std::prev(conns.end());
    asio::co_spawn(io, serve(c, std::move(peer)), [self, it](std::exception_ptr e) {
      if (e) {
        try {
          std::rethrow_exception(e);
        } catch (const std::exception& ex) {
          spdlog::error("metrics: {}", ex.what());
        }
      }
      (*it)->stream.close();
      self->conns.erase(it);
    });
  }
}

awaitable<void> metrics_server::impl::serve(std::shared_ptr<http_conn> c, std::string peer) {
  auto self = shared_from_this();
  std::string buf;
  std::array<char, 2048> chunk;
  http_route route;
  c->stream.expires_after(read_timeout);
  for (;;) {
    auto [ec, n] = co_await c->stream.async_read_some(asio::buffer(chunk), use_tuple);
    if (ec) {
      if (ec == beast::error::timeout)
        spdlog::debug("metrics: {}: request not complete within 10s", peer);
      co_return;  // EOF, reset or timeout: nobody to answer
    }
    buf.append(chunk.data(), n);
    if (auto decided = classify_metrics_head(buf)) {
      route = *decided;
      break;
    }
  }
  const int status = route.status;

  std::string out;
  if (status == 200) {
    std::string body = render();
    out = fmt::format(
        "HTTP/1.1 200 OK\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\n"
        "Connection: close\r\n\r\n",
        metrics::content_type, body.size());
    if (!route.head_only) out += body;
  } else {
    out = error_response(status);
  }
  spdlog::debug("metrics: {}: {} -> {}", peer, printable(buf.substr(0, buf.find('\n'))), status);
  c->stream.expires_after(write_timeout);
  auto [wec, wn] = co_await asio::async_write(c->stream, asio::buffer(out), use_tuple);
  if (wec) co_return;

  // Lingering close: stop sending, read what the client still sends, then close.
  boost::system::error_code ignored;
  c->stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
  c->stream.expires_after(drain_timeout);
  for (std::size_t drained = 0; drained < max_drain;) {
    auto [ec, n] = co_await c->stream.async_read_some(asio::buffer(chunk), use_tuple);
    if (ec) break;
    drained += n;
  }
}

metrics_server::metrics_server(asio::io_context& io, const endpoint& ep,
                               std::function<std::string()> render)
    : impl_(std::make_shared<impl>(io, ep, std::move(render))) {}

metrics_server::~metrics_server() {
  stop();
}

std::expected<void, std::string> metrics_server::start() {
  auto& m = *impl_;
  boost::system::error_code ec;
  auto addrs = tcp::resolver(m.io).resolve(m.ep.host, std::to_string(m.ep.port),
                                           tcp::resolver::numeric_service, ec);
  if (ec) return std::unexpected(m.ep.to_string() + ": " + ec.message());
  for (const auto& entry : addrs) {
    auto acc = open_listener(m.io, entry.endpoint(), ec);
    if (ec) {
      m.acceptors.clear();
      return std::unexpected(m.ep.to_string() + ": " + ec.message());
    }
    m.acceptors.push_back(std::move(acc));
  }
  if (m.acceptors.empty()) return std::unexpected(m.ep.to_string() + ": no address");
  for (auto& acc : m.acceptors) {
    auto local = acc.local_endpoint(ec);
    spdlog::info("metrics endpoint http://{}/metrics",
                 local.address().is_v6()
                     ? fmt::format("[{}]:{}", local.address().to_string(), local.port())
                     : fmt::format("{}:{}", local.address().to_string(), local.port()));
    asio::co_spawn(m.io, m.accept_loop(acc), asio::detached);
  }
  return {};
}

void metrics_server::stop() {
  auto& m = *impl_;
  if (m.stopped) return;
  m.stopped = true;
  boost::system::error_code ec;
  for (auto& a : m.acceptors) a.close(ec);
  for (auto& c : m.conns) c->stream.close();
}

std::uint16_t metrics_server::local_port() const {
  if (impl_->acceptors.empty()) return 0;
  boost::system::error_code ec;
  auto ep = impl_->acceptors.front().local_endpoint(ec);
  return ec ? 0 : ep.port();
}

}  // namespace relayd
