// Implements control_client.hpp with plain POSIX calls (no Asio in relayctl).
// Writes and reads retry on EINTR; anything else ends relayctl through fail().
#include "cli/control_client.hpp"

#include <fmt/core.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string_view>

#include "relayd/control_protocol.hpp"

namespace relayctl {
namespace json = boost::json;
namespace proto = relayd::control_protocol;

void fail(const std::string& what) {
  // The program's own name: relayctl, or sendmail / mailq (which share this client).
  std::fprintf(stderr, "%s: %s\n", program_invocation_short_name, what.c_str());
  std::exit(1);
}

control_client::control_client(const std::string& path) {
  fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd_ < 0) fail(std::string("socket: ") + std::strerror(errno));
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  if (path.size() >= sizeof(sa.sun_path)) fail(path + ": path too long");
  std::strncpy(sa.sun_path, path.c_str(), sizeof(sa.sun_path) - 1);
  if (::connect(fd_, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0)
    fail(fmt::format("cannot connect to relayd at {}: {} (is relayd running?)", path,
                     std::strerror(errno)));
}

control_client::~control_client() { ::close(fd_); }

void control_client::send(const json::object& req) {
  std::string line = json::serialize(req) + "\n";
  std::string_view rest = line;
  while (!rest.empty()) {
    ssize_t n = ::write(fd_, rest.data(), rest.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) fail(std::string("write to relayd: ") + std::strerror(errno));
    rest.remove_prefix(static_cast<std::size_t>(n));
  }
}

std::string_view control_client::read_line() {
  for (;;) {
    auto nl = buf_.find('\n', pos_);
    if (nl != std::string::npos) {
      std::string_view line(buf_.data() + pos_, nl - pos_);
      pos_ = nl + 1;
      return line;
    }
    if (!fill()) fail("relayd closed the control connection early");
  }
}

bool control_client::line_ready() const { return buf_.find('\n', pos_) != std::string::npos; }

json::object control_client::read_object() {
  const std::string_view line = read_line();
  json::error_code ec;
  auto v = json::parse(line, ec);
  if (ec || !v.is_object()) fail("bad reply from relayd: " + std::string(line.substr(0, 200)));
  return std::move(v.as_object());
}

std::string control_client::read_bytes(std::size_t n) {
  while (buf_.size() - pos_ < n) {
    if (!fill()) fail("relayd closed the control connection early");
  }
  std::string out = buf_.substr(pos_, n);
  pos_ += n;
  return out;
}

json::object control_client::read_ok() {
  auto o = read_object();
  check_ok(o);
  return o;
}

bool control_client::fill() {
  if (pos_ > 0) {
    buf_.erase(0, pos_);
    pos_ = 0;
  }
  char tmp[65536];
  for (;;) {
    ssize_t n = ::read(fd_, tmp, sizeof tmp);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    buf_.append(tmp, static_cast<std::size_t>(n));
    return true;
  }
}

void check_ok(const json::object& o) {
  if (proto::get_bool(o, proto::key::ok)) return;
  const auto* err = o.if_contains(proto::key::error);
  fail(err && err->is_string() ? std::string(err->get_string()) : "request failed");
}

}  // namespace relayctl
