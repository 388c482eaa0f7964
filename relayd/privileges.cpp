// Process set-up around the privilege boundary (see privileges.hpp): the
// open-file limit, the `user` lookup, and the one-way switch away from root.
// Every failure is logged as critical and returned; nothing here throws.
#include "relayd/privileges.hpp"

#include <spdlog/spdlog.h>
#include <grp.h>
#include <pwd.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <vector>

#include "relayd/config.hpp"

namespace relayd {

// Enough descriptors for every connection plus the spool, sockets and logs.
void raise_fd_limit(std::uint64_t want) {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return;
  if (rl.rlim_cur >= want) return;
  rlim_t target = std::min<rlim_t>(want, rl.rlim_max);
  rl.rlim_cur = target;
  if (setrlimit(RLIMIT_NOFILE, &rl) != 0 || target < want)
    spdlog::warn("open-file limit is {}, below the {} that max_connections needs", target, want);
}

// Looks `user` up before anything is opened. nullopt with a critical log line
// when the start-up must fail; an empty name (or already being that user) gives
// an account with an empty name: nothing to switch.
std::optional<gid_t> group_id(const std::string& name) {
  std::vector<char> buf(16384);
  group g{};
  group* found = nullptr;
  if (::getgrnam_r(name.c_str(), &g, buf.data(), buf.size(), &found) != 0 || found == nullptr)
    return std::nullopt;
  return g.gr_gid;
}

std::optional<run_as> resolve_user(const config& cfg) {
  if (cfg.user.empty()) return run_as{};
  errno = 0;
  const passwd* pw = ::getpwnam(cfg.user.c_str());
  if (pw == nullptr) {
    spdlog::critical("user: unknown user \"{}\"{}", cfg.user,
                     errno != 0 ? std::string(": ") + std::strerror(errno) : std::string());
    return std::nullopt;
  }
  run_as who{cfg.user, pw->pw_uid, pw->pw_gid};
  if (::geteuid() == 0) return who;
  if (::geteuid() == who.uid) return run_as{};
  spdlog::critical("user: relayd runs as uid {}, not root: it cannot switch to user \"{}\"",
                   ::geteuid(), cfg.user);
  return std::nullopt;
}

// Hands the spool (directory and files) and the control socket to `who`, then
// drops root for good: setgroups, setgid, setuid, and checks that root cannot be
// regained. Listeners are bound and files open by now. false: start-up fails.
bool drop_privileges(const config& cfg, const run_as& who) {
  namespace fs = std::filesystem;
  auto give = [&](const fs::path& p) {
    if (::lchown(p.c_str(), who.uid, who.gid) == 0) return true;
    spdlog::critical("user: chown {} to {}: {}", p.string(), who.name, std::strerror(errno));
    return false;
  };
  if (!give(cfg.spool)) return false;
  std::error_code ec;
  // The drop directory inside keeps its group and its files their owners (the
  // submitters: inbound_maildrop.hpp).
  for (fs::recursive_directory_iterator it(cfg.spool, ec), end; !ec && it != end; it.increment(ec)) {
    std::error_code same;
    if (!cfg.local.maildrop.empty() && fs::equivalent(it->path(), cfg.local.maildrop, same)) {
      it.disable_recursion_pending();
      continue;
    }
    if (!give(it->path())) return false;
  }
  if (ec) {
    spdlog::critical("user: reading spool {}: {}", cfg.spool, ec.message());
    return false;
  }
  if (!give(cfg.control.socket)) return false;
  if (::chmod(cfg.control.socket.c_str(), 0660) != 0) {
    spdlog::critical("user: chmod {}: {}", cfg.control.socket, std::strerror(errno));
    return false;
  }
  // The maildrop group stays a supplementary group: sendmail's files are 0640.
  std::vector<gid_t> groups{who.gid};
  if (!cfg.local.maildrop_group.empty()) {
    if (const group* g = ::getgrnam(cfg.local.maildrop_group.c_str()); g && g->gr_gid != who.gid)
      groups.push_back(g->gr_gid);
  }
  if (::setgroups(groups.size(), groups.data()) != 0 || ::setgid(who.gid) != 0 ||
      ::setuid(who.uid) != 0) {
    spdlog::critical("user: cannot switch to user {} (uid {}, gid {}): {}", who.name, who.uid,
                     who.gid, std::strerror(errno));
    return false;
  }
  if (::getuid() != who.uid || ::geteuid() != who.uid || ::getgid() != who.gid ||
      ::getegid() != who.gid || (who.uid != 0 && (::setuid(0) == 0 || ::seteuid(0) == 0))) {
    spdlog::critical("user: switching to user {} did not drop root", who.name);
    return false;
  }
  spdlog::info("running as user {} (uid {}, gid {})", who.name, who.uid, who.gid);
  return true;
}

}  // namespace relayd
