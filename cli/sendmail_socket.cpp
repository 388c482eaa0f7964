// Implements sendmail_socket.hpp: a non-blocking descriptor driven by poll(2),
// so no call waits past its deadline; EINTR is retried with the time left.
#include "cli/sendmail_socket.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace sendmail {
namespace {
using steady = std::chrono::steady_clock;

std::string err(std::string_view what) { return std::string(what) + ": " + std::strerror(errno); }
}  // namespace

unix_stream::~unix_stream() {
  if (fd_ >= 0) ::close(fd_);
}

std::expected<void, std::string> unix_stream::await(short events, std::chrono::milliseconds timeout,
                                                    std::string_view what) {
  const auto deadline = steady::now() + timeout;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - steady::now());
    if (left.count() < 0) left = std::chrono::milliseconds(0);
    pollfd p{fd_, events, 0};
    int n = ::poll(&p, 1, static_cast<int>(left.count()));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return std::unexpected(err(what));
    if (n == 0) return std::unexpected(std::string(what) + ": timed out");
    return {};  // ready, or an error/hang-up the next call reports
  }
}

std::expected<void, std::string> unix_stream::connect(const std::string& path,
                                                      std::chrono::milliseconds timeout) {
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  if (path.empty()) return std::unexpected("no socket path configured");
  if (path.size() >= sizeof(sa.sun_path)) return std::unexpected(path + ": path too long");
  std::memcpy(sa.sun_path, path.data(), path.size());
  fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd_ < 0) return std::unexpected(err("socket"));
  if (::connect(fd_, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) == 0) return {};
  // A Unix socket whose backlog is full says EAGAIN: wait for room once.
  if (errno != EAGAIN && errno != EINPROGRESS) return std::unexpected(err("connect " + path));
  if (auto r = await(POLLOUT, timeout, "connect " + path); !r) return r;
  int so_error = 0;
  socklen_t len = sizeof so_error;
  if (::getsockopt(fd_, SOL_SOCKET, SO_ERROR, &so_error, &len) != 0)
    return std::unexpected(err("connect " + path));
  if (so_error != 0) {
    errno = so_error;
    return std::unexpected(err("connect " + path));
  }
  return {};
}

std::expected<void, std::string> unix_stream::write_all(std::string_view data,
                                                        std::chrono::milliseconds timeout) {
  while (!data.empty()) {
    ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
    if (n > 0) {
      data.remove_prefix(static_cast<std::size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) {
      if (auto r = await(POLLOUT, timeout, "write"); !r) return r;
      continue;
    }
    return std::unexpected(err("write"));
  }
  return {};
}

std::expected<void, std::string> unix_stream::read_some(std::string& out,
                                                        std::chrono::milliseconds timeout) {
  char buf[16384];
  for (;;) {
    ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
    if (n > 0) {
      out.append(buf, static_cast<std::size_t>(n));
      return {};
    }
    if (n == 0) return std::unexpected("read: connection closed");
    if (errno == EINTR) continue;
    if (errno != EAGAIN) return std::unexpected(err("read"));
    if (auto r = await(POLLIN, timeout, "read"); !r) return r;
  }
}

std::expected<std::string, std::string> unix_stream::read_line(std::chrono::milliseconds timeout,
                                                               std::size_t max) {
  const auto deadline = steady::now() + timeout;
  for (;;) {
    if (auto nl = buffered_.find('\n'); nl != std::string::npos) {
      std::string line = buffered_.substr(0, nl + 1);
      buffered_.erase(0, nl + 1);
      return line;
    }
    if (buffered_.size() > max) return std::unexpected("read: line too long");
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - steady::now());
    if (left.count() < 0) left = std::chrono::milliseconds(0);
    if (auto r = read_some(buffered_, left); !r) return std::unexpected(r.error());
  }
}

}  // namespace sendmail
