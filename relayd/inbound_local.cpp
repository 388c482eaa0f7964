// Local submission: the socket file, the peer's identity, the [local] policy
// (see inbound_local.hpp). Runs on the I/O thread at start-up and per accepted
// connection; everything here is a system call or text, nothing blocks on the
// network. What /proc cannot tell (a process that has gone, a kernel thread)
// stays empty; only missing credentials fail an identity.
#include "relayd/inbound_local.hpp"

#include <pwd.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

#include "relayd/config.hpp"
#include "smtp/replies.hpp"
#include "smtp/text.hpp"

namespace relayd {
namespace {

// The last '/'-separated component of `path` that names a unit, or "".
std::string last_unit(std::string_view path) {
  std::string_view found;
  while (!path.empty()) {
    const std::size_t slash = path.find('/');
    const std::string_view part = path.substr(0, slash);
    if (part.ends_with(".service") || part.ends_with(".scope")) found = part;
    if (slash == std::string_view::npos) break;
    path.remove_prefix(slash + 1);
  }
  return std::string(found);
}

std::string read_small_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) return {};
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

std::string read_link(const std::string& path) {
  std::vector<char> buf(4096);
  const ssize_t n = ::readlink(path.c_str(), buf.data(), buf.size());
  if (n <= 0 || static_cast<std::size_t>(n) >= buf.size()) return {};
  return std::string(buf.data(), static_cast<std::size_t>(n));
}

sockaddr_un unix_address(const std::string& path) {
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  std::memcpy(sa.sun_path, path.data(), std::min(path.size(), sizeof(sa.sun_path) - 1));
  return sa;
}

// Creates the missing directories above the socket, each 0755 whatever the
// umask. Those it made go to the account relayd will switch to, so that it can
// still remove the socket at stop.
std::expected<void, std::string> make_parent(const config& cfg, const std::filesystem::path& dir) {
  namespace fs = std::filesystem;
  std::vector<fs::path> missing;
  std::error_code ec;
  for (fs::path p = dir; !p.empty() && !fs::exists(p, ec); p = p.parent_path()) {
    missing.push_back(p);
    if (p == p.parent_path()) break;
  }
  uid_t owner = 0;
  gid_t group = 0;
  const bool hand_over = !cfg.user.empty() && ::geteuid() == 0;
  if (hand_over && !missing.empty()) {
    const passwd* pw = ::getpwnam(cfg.user.c_str());
    if (pw == nullptr) return std::unexpected("user: unknown user \"" + cfg.user + "\"");
    owner = pw->pw_uid;
    group = pw->pw_gid;
  }
  for (auto it = missing.rbegin(); it != missing.rend(); ++it) {
    if (::mkdir(it->c_str(), 0755) != 0 && errno != EEXIST)
      return std::unexpected(it->string() + ": " + std::strerror(errno));
    if (::chmod(it->c_str(), 0755) != 0 || (hand_over && ::chown(it->c_str(), owner, group) != 0))
      return std::unexpected(it->string() + ": " + std::strerror(errno));
  }
  return {};
}

}  // namespace

// The login name of `uid`, "" when it has none (or the lookup fails).
std::string user_name(uid_t uid) {
  long hint = ::sysconf(_SC_GETPW_R_SIZE_MAX);
  std::vector<char> buf(hint > 0 ? static_cast<std::size_t>(hint) : 4096);
  for (;;) {
    passwd pw{};
    passwd* found = nullptr;
    const int rc = ::getpwuid_r(uid, &pw, buf.data(), buf.size(), &found);
    if (rc == ERANGE && buf.size() < (1u << 20)) {
      buf.resize(buf.size() * 2);
      continue;
    }
    return rc == 0 && found != nullptr ? std::string(found->pw_name) : std::string();
  }
}

// True when a process accepts connections on the socket at `path`.
bool unix_socket_accepting(const std::string& path) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  const sockaddr_un sa = unix_address(path);
  const bool alive = ::connect(fd, reinterpret_cast<const sockaddr*>(&sa), sizeof(sa)) == 0;
  ::close(fd);
  return alive;
}

std::string unit_from_cgroup(std::string_view text) {
  // "ID:CONTROLLERS:PATH" per line; "0::PATH" is the unified (v2) hierarchy.
  std::string unified, systemd_v1;
  while (!text.empty()) {
    const std::size_t nl = text.find('\n');
    const std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    const std::size_t c1 = line.find(':');
    const std::size_t c2 = c1 == std::string_view::npos ? c1 : line.find(':', c1 + 1);
    if (c2 == std::string_view::npos) continue;
    const std::string_view id = line.substr(0, c1), controllers = line.substr(c1 + 1, c2 - c1 - 1);
    const std::string_view path = line.substr(c2 + 1);
    if (id == "0" && controllers.empty())
      unified = last_unit(path);
    else if (controllers == "name=systemd")
      systemd_v1 = last_unit(path);
  }
  return unified.empty() ? systemd_v1 : unified;
}

smtp::local_identity describe_process(uid_t uid, gid_t gid, pid_t pid, const std::string& proc) {
  smtp::local_identity who;
  who.uid = uid;
  who.gid = gid;
  who.pid = pid;
  who.user = user_name(uid);
  if (pid > 0) {
    const std::string dir = proc + "/" + std::to_string(pid);
    who.executable = read_link(dir + "/exe");
    who.unit = unit_from_cgroup(read_small_file(dir + "/cgroup"));
  }
  return who;
}

std::expected<smtp::local_identity, std::string> peer_identity(int fd) {
  ucred cred{};
  socklen_t len = sizeof cred;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0)
    return std::unexpected(std::string("SO_PEERCRED: ") + std::strerror(errno));
  return describe_process(cred.uid, cred.gid, cred.pid);
}

std::string identity_text(const smtp::local_identity& who) {
  std::string out = "local (uid " + std::to_string(who.uid);
  if (!who.user.empty()) out += ", " + who.user;
  if (who.pid > 0) out += ", pid " + std::to_string(who.pid);
  return out + ")";
}

std::expected<int, std::string> open_local_socket(const config& cfg) {
  const std::string& path = cfg.local.socket;
  auto fail = [&](const std::string& what) {
    return std::unexpected("local.socket: " + path + ": " + what);
  };
  if (path.size() >= sizeof(sockaddr_un::sun_path)) return fail("path too long for a Unix socket");
  const auto parent = std::filesystem::path(path).parent_path();
  if (!parent.empty())
    if (auto made = make_parent(cfg, parent); !made) return fail(made.error());
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) return fail("exists and is not a socket");
    if (unix_socket_accepting(path)) return fail("another process accepts connections on it (another relayd?)");
    if (::unlink(path.c_str()) != 0) return fail(std::string("unlink: ") + std::strerror(errno));
    spdlog::info("local.socket: replaced the stale socket {}", path);
  }
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return fail(std::string("socket: ") + std::strerror(errno));
  const sockaddr_un sa = unix_address(path);
  const char* step = nullptr;
  if (::bind(fd, reinterpret_cast<const sockaddr*>(&sa), sizeof(sa)) != 0)
    step = "bind";
  else if (::chmod(path.c_str(), 0666) != 0)  // bind(2) obeys the umask
    step = "chmod";
  else if (::listen(fd, SOMAXCONN) != 0)
    step = "listen";
  if (step != nullptr) {
    const int e = errno;
    ::close(fd);
    if (std::strcmp(step, "bind") != 0) ::unlink(path.c_str());
    return fail(std::string(step) + ": " + std::strerror(e));
  }
  return fd;
}

bool remove_local_socket(const config& cfg) {
  if (::unlink(cfg.local.socket.c_str()) == 0 || errno == ENOENT) return true;
  spdlog::warn("local.socket: cannot remove {}: {}", cfg.local.socket, std::strerror(errno));
  return false;
}

std::optional<smtp::reply> check_local_sender(const config& cfg, const smtp::local_identity& who,
                                              std::string_view sender) {
  const auto& local = cfg.local;
  const std::string name = who.user.empty() ? "uid " + std::to_string(who.uid) : who.user;
  const bool root = who.uid == 0;
  if (!root && !local.allowed_users.empty() &&
      (who.user.empty() || std::find(local.allowed_users.begin(), local.allowed_users.end(),
                                     who.user) == local.allowed_users.end()))
    return smtp::replies::local_user_not_allowed(name);

  const auto listed = std::find_if(local.senders.begin(), local.senders.end(),
                                   [&](const auto& entry) { return entry.first == who.user; });
  if (who.user.empty() || listed == local.senders.end()) return std::nullopt;
  if (sender.empty())
    return root ? std::nullopt : std::optional(smtp::replies::local_sender_not_allowed(name, ""));
  std::string address(sender);
  if (address.find('@') == std::string::npos && !local.domain.empty())
    address += "@" + local.domain;
  const std::size_t at = address.rfind('@');
  const std::string_view mailbox = std::string_view(address).substr(0, at);
  const std::string_view domain =
      at == std::string::npos ? std::string_view() : std::string_view(address).substr(at + 1);
  for (const std::string& pattern : listed->second) {
    const std::size_t pat_at = pattern.rfind('@');
    if (pat_at == std::string::npos || at == std::string::npos) continue;
    const std::string_view pat_box = std::string_view(pattern).substr(0, pat_at);
    const std::string_view pat_domain = std::string_view(pattern).substr(pat_at + 1);
    if (!smtp::text::iequals(pat_domain, domain)) continue;
    if (pat_box == "*" || pat_box == mailbox) return std::nullopt;
  }
  return smtp::replies::local_sender_not_allowed(name, address);
}

}  // namespace relayd
