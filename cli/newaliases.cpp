// Implements newaliases.hpp: relayd::alias_table::load with the daemon's
// options, then one aliases_reload request on the control socket with a
// 10-second limit on every read and write, so newaliases never hangs on a
// stuck daemon. Every outcome is one line; nothing here exits the process.
#include "cli/newaliases.hpp"

#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <expected>
#include <string>

#include "relayd/config.hpp"
#include "relayd/control_protocol.hpp"
#include "relayd/local_aliases.hpp"

namespace {

namespace proto = relayd::control_protocol;

constexpr int ex_ok = 0, ex_dataerr = 65, ex_tempfail = 75;

// What asking the daemon gave: its reply, or why there is none. `down` says
// nobody listens on the socket (no daemon: not an error for newaliases).
struct daemon_answer {
  bool down = false;
  std::string error;  // when neither down nor replied
  boost::json::object reply;
};

daemon_answer ask_daemon(const std::string& socket_path) {
  daemon_answer a;
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return {false, std::string("socket: ") + std::strerror(errno), {}};
  struct closer {
    int fd;
    ~closer() { ::close(fd); }
  } close_fd{fd};
  const timeval limit{10, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &limit, sizeof limit);
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  if (socket_path.size() >= sizeof sa.sun_path) return {false, socket_path + ": path too long", {}};
  std::memcpy(sa.sun_path, socket_path.c_str(), socket_path.size() + 1);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
    if (errno == ENOENT || errno == ECONNREFUSED) return {true, "", {}};
    return {false, socket_path + ": " + std::strerror(errno), {}};
  }
  const std::string request =
      boost::json::serialize(proto::make_request(proto::verb::aliases_reload)) + "\n";
  if (::send(fd, request.data(), request.size(), MSG_NOSIGNAL) !=
      static_cast<ssize_t>(request.size()))
    return {false, socket_path + ": cannot send: " + std::strerror(errno), {}};
  std::string line;
  char buf[4096];
  while (line.find('\n') == std::string::npos && line.size() < proto::max_request) {
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return {false, socket_path + ": no answer: " + std::strerror(errno), {}};
    if (n == 0) return {false, socket_path + ": relayd closed the connection", {}};
    line.append(buf, static_cast<std::size_t>(n));
  }
  boost::json::error_code ec;
  auto v = boost::json::parse(line.substr(0, line.find('\n')), ec);
  if (ec || !v.is_object()) return {false, socket_path + ": unreadable answer", {}};
  a.reply = std::move(v.as_object());
  return a;
}

}  // namespace

int newaliases_main(const relayd::config& cfg, bool verbose) {
  const std::string& path = cfg.local.aliases;
  if (path.empty()) {
    std::printf("newaliases: local.aliases is empty: relayd uses no aliases file\n");
    return ex_ok;
  }
  auto table = relayd::alias_table::load(path, relayd::alias_options_from(cfg));
  if (!table) {
    std::fprintf(stderr, "newaliases: %s\n", table.error().c_str());
    return ex_dataerr;
  }
  for (const auto& w : table->warnings()) std::fprintf(stderr, "newaliases: warning: %s\n", w.c_str());
  std::printf("newaliases: %s: %zu aliases\n", path.c_str(), table->size());
  std::fflush(stdout);

  const auto answer = ask_daemon(cfg.control.socket);
  if (answer.down) {
    std::fprintf(stderr, "newaliases: relayd is not running (%s): it reads %s when it starts\n",
                 cfg.control.socket.c_str(), path.c_str());
    return ex_ok;
  }
  if (!answer.error.empty()) {
    std::fprintf(stderr, "newaliases: cannot tell relayd to reload: %s\n", answer.error.c_str());
    return ex_tempfail;
  }
  if (!proto::get_bool(answer.reply, proto::key::ok)) {
    std::fprintf(stderr, "newaliases: relayd: %s (it keeps its previous aliases)\n",
                 proto::get_string(answer.reply, proto::key::error).c_str());
    return ex_tempfail;
  }
  if (verbose)
    std::printf("newaliases: relayd reloaded %lld aliases\n",
                static_cast<long long>(proto::get_int(answer.reply, proto::key::aliases)));
  return ex_ok;
}
