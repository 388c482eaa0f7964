// relayctl: the admin tool, a thin client of relayd's control socket (JSON
// lines, see relayd/control.hpp). Modelled on postqueue/postsuper.
// Exit codes: 0 success, 1 failed action (unknown ID, daemon not running: one
// line on stderr), 2 usage.
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fmt/core.h>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "relayd/config.hpp"

namespace json = boost::json;

namespace {

constexpr const char* default_config = "/etc/relayd/relayd.toml";
constexpr const char* default_socket = "/run/relayd/control.sock";

int usage(int code) {
  std::fprintf(code ? stderr : stdout,
               "usage: relayctl [-c CONFIG] [-S SOCKET] COMMAND\n"
               "  -p            list the queue (like postqueue -p)\n"
               "  -j            list the queue, one JSON object per message\n"
               "  -f            flush: attempt every deferred message now\n"
               "  -d ID|ALL     delete messages\n"
               "  -r ID|ALL     requeue: attempt now with the current configuration\n"
               "  -h ID|ALL     hold (no delivery until released)\n"
               "  -H ID|ALL     release held messages\n"
               "  -s ID         show a message: envelope, recipients, raw content\n");
  return code;
}

[[noreturn]] void fail(const std::string& what) {
  std::fprintf(stderr, "relayctl: %s\n", what.c_str());
  std::exit(1);
}

// A blocking connection to the control socket with a buffered line reader.
class control_client {
 public:
  explicit control_client(const std::string& path) {
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
  ~control_client() { ::close(fd_); }

  void send(const json::object& req) {
    std::string line = json::serialize(req) + "\n";
    std::string_view rest = line;
    while (!rest.empty()) {
      ssize_t n = ::write(fd_, rest.data(), rest.size());
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) fail(std::string("write to relayd: ") + std::strerror(errno));
      rest.remove_prefix(static_cast<std::size_t>(n));
    }
  }

  // Next JSON line; fails loudly on EOF or garbage (the daemon went away).
  json::object read_object() {
    std::string line;
    for (;;) {
      auto nl = buf_.find('\n', pos_);
      if (nl != std::string::npos) {
        line.assign(buf_, pos_, nl - pos_);
        pos_ = nl + 1;
        break;
      }
      if (!fill()) fail("relayd closed the control connection early");
    }
    json::error_code ec;
    auto v = json::parse(line, ec);
    if (ec || !v.is_object()) fail("bad reply from relayd: " + line.substr(0, 200));
    return std::move(v.as_object());
  }

  std::string read_bytes(std::size_t n) {
    while (buf_.size() - pos_ < n) {
      if (!fill()) fail("relayd closed the control connection early");
    }
    std::string out = buf_.substr(pos_, n);
    pos_ += n;
    return out;
  }

 private:
  bool fill() {
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

  int fd_ = -1;
  std::string buf_;
  std::size_t pos_ = 0;
};

// The final {"ok":...} line: on failure print its error and exit 1.
void check_ok(const json::object& o) {
  if (auto* ok = o.if_contains("ok"); ok && ok->is_bool() && ok->get_bool()) return;
  auto* err = o.if_contains("error");
  fail(err && err->is_string() ? std::string(err->get_string()) : "request failed");
}

std::string str(const json::object& o, std::string_view key) {
  auto* v = o.if_contains(key);
  return v && v->is_string() ? std::string(v->get_string()) : std::string();
}

std::int64_t num(const json::object& o, std::string_view key) {
  auto* v = o.if_contains(key);
  if (!v) return 0;
  if (v->is_int64()) return v->get_int64();
  if (v->is_uint64()) return static_cast<std::int64_t>(v->get_uint64());
  return 0;
}

std::string local_time(std::int64_t t, const char* fmt_) {
  std::time_t tt = static_cast<std::time_t>(t);
  std::tm tm{};
  localtime_r(&tt, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, fmt_, &tm);
  return buf;
}

// Calls `visit` for every message of a list request; returns on the final line.
template <typename Visit>
void list_messages(control_client& c, Visit visit) {
  c.send(json::object{{"cmd", "list"}});
  for (;;) {
    auto o = c.read_object();
    if (o.contains("ok")) {
      check_ok(o);
      return;
    }
    visit(o);
  }
}

int cmd_print_queue(control_client& c) {
  std::uint64_t count = 0, bytes = 0;
  list_messages(c, [&](const json::object& m) {
    if (count == 0)
      std::printf("%-18s%8s %-21s%s\n", "-Queue ID-", "--Size--", "----Arrival Time----",
                  "-Sender/Recipient-------");
    ++count;
    bytes += static_cast<std::uint64_t>(num(m, "size"));
    std::string state = str(m, "state");
    auto* fl = m.if_contains("in_flight");
    const bool flying = fl && fl->is_bool() && fl->get_bool();
    char mark = state == "held" ? '!' : flying ? '*' : ' ';
    std::string sender = str(m, "sender");
    std::printf("%-16s%c %8lld %s  %s\n", str(m, "id").c_str(), mark,
                static_cast<long long>(num(m, "size")),
                local_time(num(m, "arrival"), "%a %b %e %H:%M:%S").c_str(),
                sender.empty() ? "MAILER-DAEMON" : sender.c_str());
    if (auto* rs = m.if_contains("recipients"); rs && rs->is_array()) {
      for (const auto& rv : rs->get_array()) {
        if (!rv.is_object()) continue;
        const auto& r = rv.get_object();
        if (str(r, "state") != "pending") continue;
        std::string reason = str(r, "last_reply");
        if (!reason.empty()) std::printf("%48s(%s)\n", "", reason.c_str());
        std::printf("%48s%s\n", "", str(r, "address").c_str());
      }
    }
    std::printf("\n");
  });
  if (count == 0) {
    std::printf("Mail queue is empty\n");
  } else {
    std::printf("-- %llu Kbytes in %llu Request%s.\n",
                static_cast<unsigned long long>((bytes + 1023) / 1024),
                static_cast<unsigned long long>(count), count == 1 ? "" : "s");
  }
  return 0;
}

int cmd_json_queue(control_client& c) {
  list_messages(c, [](const json::object& m) { std::printf("%s\n", json::serialize(m).c_str()); });
  return 0;
}

int cmd_delete(control_client& c, const std::string& id) {
  json::object req{{"cmd", "delete"}};
  if (id == "ALL")
    req["all"] = true;
  else
    req["ids"] = json::array{json::value(id)};
  c.send(req);
  auto o = c.read_object();
  check_ok(o);
  auto n = num(o, "deleted");
  std::printf("relayctl: deleted %lld message%s\n", static_cast<long long>(n), n == 1 ? "" : "s");
  return 0;
}

// flush / requeue / hold / release: one request, one count back.
int cmd_action(control_client& c, const std::string& action, const std::string& id) {
  json::object req{{"cmd", action}};
  if (id == "ALL")
    req["all"] = true;
  else if (!id.empty())
    req["ids"] = json::array{json::value(id)};
  c.send(req);
  auto o = c.read_object();
  check_ok(o);
  auto n = num(o, "count");
  const char* verb = action == "flush"     ? "flushed"
                     : action == "requeue" ? "requeued"
                     : action == "hold"    ? "held"
                                           : "released";
  std::printf("relayctl: %s %lld message%s\n", verb, static_cast<long long>(n), n == 1 ? "" : "s");
  return 0;
}

int cmd_show(control_client& c, const std::string& id) {
  c.send(json::object{{"cmd", "show"}, {"id", id}});
  auto o = c.read_object();
  check_ok(o);
  const auto* mv = o.if_contains("message");
  if (!mv || !mv->is_object()) fail("bad reply from relayd: no message");
  const auto& m = mv->get_object();
  std::string content = c.read_bytes(static_cast<std::size_t>(num(o, "content_length")));
  std::printf("id: %s\n", str(m, "id").c_str());
  std::printf("state: %s\n", str(m, "state").c_str());
  std::printf("arrival: %s\n", local_time(num(m, "arrival"), "%a, %d %b %Y %H:%M:%S %z").c_str());
  std::printf("size: %lld\n", static_cast<long long>(num(m, "size")));
  std::printf("sender: <%s>\n", str(m, "sender").c_str());
  std::printf("client: %s (helo %s)\n", str(m, "client_ip").c_str(), str(m, "helo").c_str());
  if (auto* rs = m.if_contains("recipients"); rs && rs->is_array()) {
    for (const auto& rv : rs->get_array()) {
      if (!rv.is_object()) continue;
      const auto& r = rv.get_object();
      std::printf("recipient: <%s> state=%s attempts=%lld", str(r, "address").c_str(),
                  str(r, "state").c_str(), static_cast<long long>(num(r, "attempts")));
      if (auto reply = str(r, "last_reply"); !reply.empty()) std::printf(" (%s)", reply.c_str());
      std::printf("\n");
    }
  }
  std::printf("\n");
  std::fwrite(content.data(), 1, content.size(), stdout);
  return 0;
}

std::string socket_from_config(const std::string& path, bool required) {
  if (!required && !std::filesystem::exists(path)) return default_socket;
  auto cfg = relayd::load_config(path);
  if (!cfg) {
    std::fprintf(stderr, "relayctl: %s\n", cfg.error().c_str());
    std::exit(2);
  }
  return cfg->control.socket;
}

}  // namespace

int main(int argc, char** argv) {
  std::optional<std::string> config_path, socket_path;
  std::string command, arg;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "relayctl: %s needs an argument\n", argv[i]);
        std::exit(usage(2));
      }
      return argv[++i];
    };
    if (a == "-c") {
      config_path = next();
    } else if (a == "-S") {
      socket_path = next();
    } else if (a == "--help") {
      return usage(0);
    } else if (!command.empty()) {
      std::fprintf(stderr, "relayctl: one command at a time ('%s' after '%s')\n", argv[i],
                   command.c_str());
      return usage(2);
    } else if (a == "-p" || a == "-j" || a == "-f") {
      command = a;
    } else if (a == "-d" || a == "-s" || a == "-r" || a == "-h" || a == "-H") {
      command = a;
      arg = next();
    } else {
      std::fprintf(stderr, "relayctl: unknown command '%s'\n", argv[i]);
      return usage(2);
    }
  }
  if (command.empty()) return usage(2);

  std::string path = socket_path ? *socket_path
                     : config_path ? socket_from_config(*config_path, true)
                                   : socket_from_config(default_config, false);
  control_client c(path);
  if (command == "-p") return cmd_print_queue(c);
  if (command == "-j") return cmd_json_queue(c);
  if (command == "-d") return cmd_delete(c, arg);
  if (command == "-f") return cmd_action(c, "flush", "");
  if (command == "-r") return cmd_action(c, "requeue", arg);
  if (command == "-h") return cmd_action(c, "hold", arg);
  if (command == "-H") return cmd_action(c, "release", arg);
  return cmd_show(c, arg);
}
