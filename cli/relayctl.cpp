// relayctl: the admin tool, a thin client of relayd's control socket (JSON
// lines, see relayd/control.hpp). Modelled on postqueue/postsuper.
// Exit codes: 0 success, 1 failed action (unknown ID, daemon not running: one
// line on stderr), 2 usage.
#include <fmt/core.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <iterator>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
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
               "  -s ID         show a message: envelope, recipients, raw content\n"
               "  dead list [--json]     list the dead spool (failed messages)\n"
               "  dead show ID           a dead entry: envelope, failures, raw content\n"
               "  dead replay ID|ALL     put failed recipients back in the queue, attempt now\n"
               "  dead purge ID|ALL      delete dead entries\n"
               "  stats [--json]         counts per state, oldest message age, spool use\n");
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

// "-- 3 Kbytes in 2 Requests." as postqueue -p closes its list.
void print_total(std::uint64_t bytes, std::uint64_t count) {
  std::printf("-- %llu Kbytes in %llu Request%s.\n",
              static_cast<unsigned long long>((bytes + 1023) / 1024),
              static_cast<unsigned long long>(count), count == 1 ? "" : "s");
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
    print_total(bytes, count);
  }
  return 0;
}

int cmd_json_queue(control_client& c) {
  list_messages(c, [](const json::object& m) { std::printf("%s\n", json::serialize(m).c_str()); });
  return 0;
}

// A request naming one queue ID, ALL, or (nullopt) none; returns the checked reply.
json::object request_for_ids(control_client& c, const std::string& cmd,
                             const std::optional<std::string>& id) {
  json::object req{{"cmd", cmd}};
  if (id == "ALL")
    req["all"] = true;
  else if (id)
    req["ids"] = json::array{json::value(*id)};
  c.send(req);
  auto o = c.read_object();
  check_ok(o);
  return o;
}

int cmd_delete(control_client& c, const std::string& id) {
  auto o = request_for_ids(c, "delete", id);
  auto n = num(o, "deleted");
  std::printf("relayctl: deleted %lld message%s\n", static_cast<long long>(n), n == 1 ? "" : "s");
  return 0;
}

// flush / requeue / hold / release: one request, one count back.
int cmd_action(control_client& c, const std::string& action, const std::string& id) {
  auto o = request_for_ids(c, action, id.empty() ? std::nullopt : std::optional(id));
  auto n = num(o, "count");
  const char* verb = action == "flush"     ? "flushed"
                     : action == "requeue" ? "requeued"
                     : action == "hold"    ? "held"
                                           : "released";
  std::printf("relayctl: %s %lld message%s\n", verb, static_cast<long long>(n), n == 1 ? "" : "s");
  return 0;
}

// show / dead show: the record under `key`, then content_length octets of message.
struct fetched_record {
  json::object record;
  std::string content;
};

fetched_record fetch_record(control_client& c, const char* cmd, const std::string& id,
                            const char* key) {
  c.send(json::object{{"cmd", cmd}, {"id", id}});
  auto o = c.read_object();
  check_ok(o);
  const auto* v = o.if_contains(key);
  if (!v || !v->is_object()) fail(std::string("bad reply from relayd: no ") + key);
  fetched_record f{v->get_object(), {}};
  f.content = c.read_bytes(static_cast<std::size_t>(num(o, "content_length")));
  return f;
}

// The head of a show: id, state, arrival (and failed_at for a dead entry), size,
// sender, client.
void print_record_head(const json::object& m, const char* state, bool dead) {
  constexpr const char* date = "%a, %d %b %Y %H:%M:%S %z";
  std::printf("id: %s\n", str(m, "id").c_str());
  std::printf("state: %s\n", state);
  std::printf("arrival: %s\n", local_time(num(m, "arrival"), date).c_str());
  if (dead) std::printf("failed_at: %s\n", local_time(num(m, "failed_at"), date).c_str());
  std::printf("size: %lld\n", static_cast<long long>(num(m, "size")));
  std::printf("sender: <%s>\n", str(m, "sender").c_str());
  std::printf("client: %s (helo %s)\n", str(m, "client_ip").c_str(), str(m, "helo").c_str());
}

int cmd_show(control_client& c, const std::string& id) {
  auto [m, content] = fetch_record(c, "show", id, "message");
  const std::string state = str(m, "state");
  print_record_head(m, state.c_str(), false);
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

// "Mon Jan  1 12:00:00" as in postqueue, or "-" for 0 (never).
std::string short_time(std::int64_t t) {
  return t == 0 ? std::string("-") : local_time(t, "%a %b %e %H:%M:%S");
}

// "2024-01-01T12:00:00+0100" (one word, for key=value lines), or "-" for 0.
std::string iso_time(std::int64_t t) {
  return t == 0 ? std::string("-") : local_time(t, "%Y-%m-%dT%H:%M:%S%z");
}

std::string entries_word(long long n) {
  return fmt::format("{} dead entr{}", n, n == 1 ? "y" : "ies");
}

// dead list: like -p, one block per entry with its failed recipients, each
// under its reason class and last reply.
int cmd_dead_list(control_client& c, bool as_json) {
  c.send(json::object{{"cmd", "dead_list"}});
  std::uint64_t count = 0, bytes = 0;
  for (;;) {
    auto m = c.read_object();
    if (m.contains("ok")) {
      check_ok(m);
      break;
    }
    ++count;
    bytes += static_cast<std::uint64_t>(num(m, "size"));
    if (as_json) {
      std::printf("%s\n", json::serialize(m).c_str());
      continue;
    }
    if (count == 1)
      std::printf("%-18s%8s %-21s%s\n", "-Queue ID-", "--Size--", "-----Failed Time----",
                  "-Sender/Recipient-------");
    std::string sender = str(m, "sender");
    std::printf("%-16s  %8lld %s  %s\n", str(m, "id").c_str(),
                static_cast<long long>(num(m, "size")), short_time(num(m, "failed_at")).c_str(),
                sender.empty() ? "MAILER-DAEMON" : sender.c_str());
    if (auto* rs = m.if_contains("recipients"); rs && rs->is_array()) {
      for (const auto& rv : rs->get_array()) {
        if (!rv.is_object()) continue;
        const auto& r = rv.get_object();
        std::string reply = str(r, "last_reply");
        std::printf("%48s(%s%s%s)\n", "", str(r, "reason").c_str(), reply.empty() ? "" : ": ",
                    reply.c_str());
        std::printf("%48s%s\n", "", str(r, "address").c_str());
      }
    }
    std::printf("\n");
  }
  if (as_json) return 0;
  if (count == 0) {
    std::printf("Dead spool is empty\n");
  } else {
    print_total(bytes, count);
  }
  return 0;
}

int cmd_dead_show(control_client& c, const std::string& id) {
  auto [m, content] = fetch_record(c, "dead_show", id, "entry");
  print_record_head(m, "dead", true);
  if (auto* rs = m.if_contains("recipients"); rs && rs->is_array()) {
    for (const auto& rv : rs->get_array()) {
      if (!rv.is_object()) continue;
      const auto& r = rv.get_object();
      const auto last = num(r, "last_attempt");
      std::printf(
          "recipient: <%s> reason=%s attempts=%lld first_attempt=%s last_attempt=%s "
          "failed_at=%s",
          str(r, "address").c_str(), str(r, "reason").c_str(),
          static_cast<long long>(num(r, "attempts")), iso_time(num(r, "first_attempt")).c_str(),
          iso_time(last).c_str(), iso_time(last != 0 ? last : num(m, "failed_at")).c_str());
      if (auto code = num(r, "reply_code"); code != 0)
        std::printf(" reply_code=%lld", static_cast<long long>(code));
      if (auto st = str(r, "status"); !st.empty()) std::printf(" status=%s", st.c_str());
      if (auto host = str(r, "remote_host"); !host.empty())
        std::printf(" remote_host=%s", host.c_str());
      if (auto reply = str(r, "last_reply"); !reply.empty()) std::printf(" (%s)", reply.c_str());
      std::printf("\n");
    }
  }
  std::printf("\n");
  std::fwrite(content.data(), 1, content.size(), stdout);
  return 0;
}

// dead replay / dead purge: one request, one count back.
int cmd_dead_action(control_client& c, const std::string& action, const std::string& id) {
  auto o = request_for_ids(c, "dead_" + action, id);
  std::printf("relayctl: %s %s\n", action == "replay" ? "replayed" : "purged",
              entries_word(num(o, "count")).c_str());
  return 0;
}

// 1536 -> "1.5 MiB"-style sizes for stats.
std::string human_bytes(std::uint64_t b) {
  static constexpr const char* units[] = {"bytes", "KiB", "MiB", "GiB", "TiB", "PiB"};
  double v = static_cast<double>(b);
  std::size_t u = 0;
  while (v >= 1024 && u + 1 < std::size(units)) {
    v /= 1024;
    ++u;
  }
  return u == 0 ? fmt::format("{} bytes", b) : fmt::format("{:.1f} {}", v, units[u]);
}

// 3725 -> "1h 2m 5s".
std::string human_age(std::int64_t s) {
  if (s <= 0) return "0s";
  std::string out;
  const std::pair<std::int64_t, const char*> parts[] = {{86400, "d"}, {3600, "h"}, {60, "m"}};
  for (const auto& [unit, name] : parts) {
    if (s >= unit) {
      out += fmt::format("{}{} ", s / unit, name);
      s %= unit;
    }
  }
  if (s != 0 || out.empty()) out += fmt::format("{}s ", s);
  out.pop_back();
  return out;
}

int cmd_stats(control_client& c, bool as_json) {
  c.send(json::object{{"cmd", "stats"}});
  auto o = c.read_object();
  check_ok(o);
  const auto* sv = o.if_contains("stats");
  if (!sv || !sv->is_object()) fail("bad reply from relayd: no stats");
  const auto& st = sv->get_object();
  if (as_json) {
    std::printf("%s\n", json::serialize(st).c_str());
    return 0;
  }
  for (const char* k : {"active", "deferred", "held", "dead", "in_flight"})
    std::printf("%-10s %lld\n", (std::string(k) + ":").c_str(), static_cast<long long>(num(st, k)));
  const auto messages = num(st, "messages");
  const auto oldest = num(st, "oldest_age_seconds");
  std::printf("%-10s %s\n", "oldest:", messages == 0 ? "-" : human_age(oldest).c_str());
  const auto used = static_cast<std::uint64_t>(num(st, "spool_bytes"));
  const auto max = static_cast<std::uint64_t>(num(st, "spool_max_bytes"));
  std::printf("%-10s %lld (%s)\n", "messages:", static_cast<long long>(messages),
              human_bytes(static_cast<std::uint64_t>(num(st, "message_bytes"))).c_str());
  std::printf("%-10s %s used of %s (%.1f%%)\n", "spool:", human_bytes(used).c_str(),
              human_bytes(max).c_str(),
              max == 0 ? 0.0 : 100.0 * static_cast<double>(used) / static_cast<double>(max));
  return 0;
}

std::string socket_from_config(const std::string& path, bool required) {
  if (!required && !std::filesystem::exists(path)) return default_socket;
  auto cfg = relayd::load_config(path);
  if (!cfg) {
    // Not a usage error: the command was fine, the file it needs is not.
    std::fprintf(stderr, "relayctl: %s\n", cfg.error().c_str());
    std::exit(1);
  }
  return cfg->control.socket;
}

}  // namespace

// Whether the words after "dead" / "stats" make sense (if not, says why on
// stderr: the caller prints the usage).
bool words_ok(const std::string& command, const std::vector<std::string>& w) {
  auto bad = [&](const std::string& why) {
    std::fprintf(stderr, "relayctl: %s\n", why.c_str());
    return false;
  };
  if (command == "stats") {
    if (w.empty() || (w.size() == 1 && w[0] == "--json")) return true;
    return bad("stats takes only --json");
  }
  if (w.empty()) return bad("dead needs list, show, replay or purge");
  const std::string& sub = w[0];
  if (sub == "list") {
    if (w.size() == 1 || (w.size() == 2 && w[1] == "--json")) return true;
    return bad("dead list takes only --json");
  }
  if (sub == "show" || sub == "replay" || sub == "purge") {
    if (w.size() == 2) return true;
    return bad("dead " + sub + (sub == "show" ? " needs one ID" : " needs one ID or ALL"));
  }
  return bad("unknown dead command '" + sub + "'");
}

int main(int argc, char** argv) {
  std::optional<std::string> config_path, socket_path;
  std::string command, arg;
  std::vector<std::string> words;  // after "dead" or "stats"
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
    } else if (command == "dead" || command == "stats") {
      words.emplace_back(a);
    } else if (!command.empty()) {
      std::fprintf(stderr, "relayctl: one command at a time ('%s' after '%s')\n", argv[i],
                   command.c_str());
      return usage(2);
    } else if (a == "-p" || a == "-j" || a == "-f") {
      command = a;
    } else if (a == "-d" || a == "-s" || a == "-r" || a == "-h" || a == "-H") {
      command = a;
      arg = next();
    } else if (a == "dead" || a == "stats") {
      command = a;
    } else {
      std::fprintf(stderr, "relayctl: unknown command '%s'\n", argv[i]);
      return usage(2);
    }
  }
  if (command.empty()) return usage(2);
  if ((command == "dead" || command == "stats") && !words_ok(command, words)) return usage(2);

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
  if (command == "stats") return cmd_stats(c, !words.empty());
  if (command == "dead") {
    if (words[0] == "list") return cmd_dead_list(c, words.size() == 2);
    if (words[0] == "show") return cmd_dead_show(c, words[1]);
    return cmd_dead_action(c, words[0], words[1]);
  }
  return cmd_show(c, arg);
}
