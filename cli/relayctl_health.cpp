// Implements relayctl_health.hpp. The daemon's stats come over the control
// socket; a socket that does not answer is checked first (the control client
// would exit 1, which Nagios reads as WARNING).
#include "cli/relayctl_health.hpp"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <algorithm>
#include <fmt/format.h>

#include "cli/control_client.hpp"
#include "relayd/config_values.hpp"
#include "relayd/control_protocol.hpp"

namespace relayctl {
namespace {

namespace proto = relayd::control_protocol;
namespace key = relayd::control_protocol::key;
using proto::get_int;

constexpr const char* level_names[] = {"OK", "WARNING", "CRITICAL"};

std::optional<std::uint64_t> number(const std::string& s) {
  std::uint64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || s.empty()) return std::nullopt;
  return v;
}

// Why the socket does not take a connection, or "" when it does.
std::string unreachable(const std::string& path) {
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  if (path.size() >= sizeof sa.sun_path) return "socket path too long: " + path;
  std::memcpy(sa.sun_path, path.c_str(), path.size() + 1);
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return std::strerror(errno);
  std::string why;
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&sa), sizeof sa) != 0)
    why = path + ": " + std::strerror(errno);
  ::close(fd);
  return why;
}

}  // namespace

health_verdict judge_health(const health_input& in, const health_thresholds& t) {
  int code = 0;
  std::vector<std::string> problems;
  auto rate = [&](bool crit, bool warn, std::string what) {
    if (crit || warn) {
      code = std::max(code, crit ? 2 : 1);
      problems.push_back(std::move(what));
    }
  };
  const double pct = in.spool_max_bytes == 0
                         ? 0.0
                         : 100.0 * static_cast<double>(in.spool_bytes) /
                               static_cast<double>(in.spool_max_bytes);
  const std::int64_t age = in.messages == 0 ? 0 : in.oldest_age_seconds;
  rate(pct >= t.spool_crit, pct >= t.spool_warn, fmt::format("spool {:.1f}% used", pct));
  rate(age >= t.age_crit, age >= t.age_warn, fmt::format("oldest message {}s old", age));
  rate(in.deferred >= t.deferred_crit, in.deferred >= t.deferred_warn,
       fmt::format("{} deferred", in.deferred));
  rate(in.dead >= t.dead_crit, in.dead >= t.dead_warn, fmt::format("{} dead", in.dead));
  std::string summary = fmt::format("spool {:.1f}% used, oldest {}s, {} queued, {} deferred, {} dead",
                                    pct, age, in.messages, in.deferred, in.dead);
  if (!problems.empty()) {
    std::string p;
    for (const auto& s : problems) p += (p.empty() ? "" : ", ") + s;
    summary = p + " (" + summary + ")";
  }
  health_verdict v;
  v.code = code;
  v.line = fmt::format(
      "RELAYD {} - {} | spool_used={:.1f}%;{};{} oldest_age={}s;{};{} deferred={};{};{} "
      "dead={};{};{}",
      level_names[code], summary, pct, t.spool_warn, t.spool_crit, age, t.age_warn, t.age_crit,
      in.deferred, t.deferred_warn, t.deferred_crit, in.dead, t.dead_warn, t.dead_crit);
  return v;
}

std::expected<health_thresholds, std::string> parse_health_flags(const std::vector<std::string>& w) {
  health_thresholds t;
  for (std::size_t i = 0; i < w.size(); ++i) {
    const std::string& flag = w[i];
    if (i + 1 >= w.size()) return std::unexpected(flag + " needs a value");
    const std::string& value = w[++i];
    auto bad = [&](std::string_view what) {
      return std::unexpected(flag + ": " + std::string(what) + ", got '" + value + "'");
    };
    if (flag == "--spool-warn" || flag == "--spool-crit") {
      auto n = number(value);
      if (!n || *n > 100) return bad("expected a percentage 0 to 100");
      (flag == "--spool-warn" ? t.spool_warn : t.spool_crit) = static_cast<double>(*n);
    } else if (flag == "--age-warn" || flag == "--age-crit") {
      auto d = relayd::parse_duration(value);
      if (!d) return bad("expected a duration like 30m or 4h");
      (flag == "--age-warn" ? t.age_warn : t.age_crit) = d->count();
    } else if (flag == "--deferred-warn" || flag == "--deferred-crit" || flag == "--dead-warn" ||
               flag == "--dead-crit") {
      auto n = number(value);
      if (!n) return bad("expected a count");
      (flag == "--deferred-warn"   ? t.deferred_warn
       : flag == "--deferred-crit" ? t.deferred_crit
       : flag == "--dead-warn"     ? t.dead_warn
                                   : t.dead_crit) = *n;
    } else {
      return std::unexpected("health: unknown flag " + flag);
    }
  }
  if (t.spool_warn > t.spool_crit) return std::unexpected("--spool-warn is above --spool-crit");
  if (t.age_warn > t.age_crit) return std::unexpected("--age-warn is above --age-crit");
  if (t.deferred_warn > t.deferred_crit)
    return std::unexpected("--deferred-warn is above --deferred-crit");
  if (t.dead_warn > t.dead_crit) return std::unexpected("--dead-warn is above --dead-crit");
  return t;
}

int health(const std::string& socket, const health_thresholds& t) {
  if (auto why = unreachable(socket); !why.empty()) {
    std::printf("RELAYD CRITICAL - relayd does not answer: %s\n", why.c_str());
    return 2;
  }
  control_client c(socket);
  c.send(proto::make_request(proto::verb::stats));
  auto o = c.read_ok();
  const auto* sv = o.if_contains(key::stats);
  if (!sv || !sv->is_object()) {
    std::printf("RELAYD CRITICAL - bad reply from relayd: no stats\n");
    return 2;
  }
  const auto& st = sv->get_object();
  health_input in;
  in.spool_bytes = static_cast<std::uint64_t>(get_int(st, key::spool_bytes));
  in.spool_max_bytes = static_cast<std::uint64_t>(get_int(st, key::spool_max_bytes));
  in.messages = static_cast<std::uint64_t>(get_int(st, key::messages));
  in.oldest_age_seconds = get_int(st, key::oldest_age_seconds);
  in.deferred = static_cast<std::uint64_t>(get_int(st, key::deferred));
  in.dead = static_cast<std::uint64_t>(get_int(st, key::dead));
  const auto v = judge_health(in, t);
  std::printf("%s\n", v.line.c_str());
  return v.code;
}

}  // namespace relayctl
