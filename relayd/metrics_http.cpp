// Implements metrics_http.hpp: one coroutine per listener, one per connection,
// on the daemon's I/O thread. The request head is parsed by route_metrics_request()
// without I/O; the coroutine only reads, answers and closes. After the answer the
// socket is shut down for sending and drained briefly, so a client that is still
// sending (an oversized head) reads the answer instead of a reset.
#include "relayd/metrics_http.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <list>

#include "relayd/metrics.hpp"
#include "relayd/net.hpp"

namespace relayd {
namespace {

constexpr auto read_timeout = std::chrono::seconds(10);
constexpr auto write_timeout = std::chrono::seconds(10);
constexpr auto drain_timeout = std::chrono::seconds(2);
constexpr std::size_t max_drain = 64 * 1024;

bool is_tchar(char c) {  // RFC 9110 token characters
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  return std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

// Bytes a request line may hold: visible ASCII and the separating spaces. Bytes
// >= 0x80 are tolerated in the target only by the 404 that follows.
bool request_line_byte(char c) {
  auto u = static_cast<unsigned char>(c);
  return u == ' ' || u == '\r' || (u > 0x20 && u != 0x7f);
}

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

// Where the head ends: the index just past the blank line (CRLFCRLF or LFLF),
// or npos while it is incomplete.
std::size_t head_end(std::string_view buf) {
  for (std::size_t i = buf.find('\n'); i != std::string_view::npos; i = buf.find('\n', i + 1)) {
    if (i + 1 < buf.size() && buf[i + 1] == '\n') return i + 2;
    if (i + 2 < buf.size() && buf[i + 1] == '\r' && buf[i + 2] == '\n') return i + 3;
  }
  return std::string_view::npos;
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

struct http_conn {
  explicit http_conn(tcp::socket s) : sock(std::move(s)), timer(sock.get_executor()) {}
  tcp::socket sock;
  asio::steady_timer timer;
  bool timed_out = false;
};

// Closes the connection when `d` passes; re-arming cancels the previous wait.
void arm(const std::shared_ptr<http_conn>& c, std::chrono::steady_clock::duration d) {
  c->timer.expires_after(d);
  c->timer.async_wait([w = std::weak_ptr<http_conn>(c)](boost::system::error_code ec) {
    auto c = w.lock();
    if (ec || !c) return;
    c->timed_out = true;
    c->sock.close(ec);
  });
}

}  // namespace

http_route route_metrics_request(std::string_view head) {
  auto eol = head.find('\n');
  std::string_view line = head.substr(0, eol);
  if (line.ends_with('\r')) line.remove_suffix(1);
  // request-line = method SP request-target SP HTTP-version
  auto sp1 = line.find(' ');
  auto sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos || line.find(' ', sp2 + 1) != std::string_view::npos)
    return {400};
  std::string_view method = line.substr(0, sp1);
  std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  std::string_view version = line.substr(sp2 + 1);
  if (method.empty() || target.empty()) return {400};
  for (char c : method)
    if (!is_tchar(c)) return {400};
  for (char c : target)
    if (!request_line_byte(c) || c == '\r') return {400};
  if (version.size() != 8 || !version.starts_with("HTTP/") || version[6] != '.' ||
      version[5] < '0' || version[5] > '9' || version[7] < '0' || version[7] > '9')
    return {400};
  if (version[5] != '1') return {505};
  if (target.front() != '/') return {method == "OPTIONS" && target == "*" ? 405 : 400};
  std::string_view path = target.substr(0, target.find('?'));
  if (path != "/metrics") return {404};
  if (method == "GET") return {200, false};
  if (method == "HEAD") return {200, true};
  return {405};
}

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
      boost::system::error_code ignored;
      (*it)->timer.cancel();
      (*it)->sock.close(ignored);
      self->conns.erase(it);
    });
  }
}

awaitable<void> metrics_server::impl::serve(std::shared_ptr<http_conn> c, std::string peer) {
  auto self = shared_from_this();
  std::string buf;
  std::array<char, 2048> chunk;
  int status = 0;
  http_route route;
  arm(c, read_timeout);
  for (;;) {
    auto [ec, n] = co_await c->sock.async_read_some(asio::buffer(chunk), use_tuple);
    if (ec) {
      if (c->timed_out) spdlog::debug("metrics: {}: request not complete within 10s", peer);
      co_return;  // EOF, reset or timeout: nobody to answer
    }
    buf.append(chunk.data(), n);
    const auto first_eol = buf.find('\n');
    const std::string_view line(buf.data(), std::min(first_eol, buf.size()));
    // Garbage (TLS, binary) or a broken request line: answer without waiting.
    if (std::find_if_not(line.begin(), line.end(), request_line_byte) != line.end()) {
      status = 400;
      break;
    }
    if (const auto end = head_end(buf); end != std::string::npos) {
      route = route_metrics_request(std::string_view(buf).substr(0, end));
      status = end > max_head ? 431 : route.status;
      break;
    }
    if (first_eol != std::string::npos) {
      const auto early = route_metrics_request(line);
      if (early.status == 400 || early.status == 505) {
        status = early.status;
        break;
      }
    }
    if (buf.size() > max_head) {
      status = 431;
      break;
    }
  }

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
  arm(c, write_timeout);
  auto [wec, wn] = co_await asio::async_write(c->sock, asio::buffer(out), use_tuple);
  if (wec) co_return;

  // Lingering close: stop sending, read what the client still sends, then close.
  boost::system::error_code ignored;
  c->sock.shutdown(tcp::socket::shutdown_send, ignored);
  arm(c, drain_timeout);
  for (std::size_t drained = 0; drained < max_drain;) {
    auto [ec, n] = co_await c->sock.async_read_some(asio::buffer(chunk), use_tuple);
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
  for (auto& c : m.conns) {
    c->timer.cancel();
    c->sock.close(ec);
  }
}

std::uint16_t metrics_server::local_port() const {
  if (impl_->acceptors.empty()) return 0;
  boost::system::error_code ec;
  auto ep = impl_->acceptors.front().local_endpoint(ec);
  return ec ? 0 : ep.port();
}

}  // namespace relayd
