// The login and full name of a uid without getpwuid(3) (see sendmail_user.hpp).
#include "cli/sendmail_user.hpp"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <string>
#include <vector>

namespace sendmail {
namespace {

constexpr std::size_t max_getent_output = 64 * 1024;

// Field `n` (0-based) of a ':'-separated line, or nullopt when it has fewer.
std::optional<std::string_view> field(std::string_view line, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) {
    const std::size_t colon = line.find(':');
    if (colon == std::string_view::npos) return std::nullopt;
    line.remove_prefix(colon + 1);
  }
  return line.substr(0, line.find(':'));
}

std::optional<passwd_entry> parse_line(std::string_view line, uid_t uid) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  const auto name = field(line, 0), uid_text = field(line, 2), gecos = field(line, 4);
  if (!name || !uid_text || !gecos || name->empty()) return std::nullopt;
  if (name->front() == '+' || name->front() == '-') return std::nullopt;  // NIS compat
  unsigned long value = 0;
  const char* end = uid_text->data() + uid_text->size();
  const auto [ptr, ec] = std::from_chars(uid_text->data(), end, value);
  if (ec != std::errc() || ptr != end || uid_text->empty() || value != uid) return std::nullopt;
  return passwd_entry{std::string(*name), std::string(gecos->substr(0, gecos->find(',')))};
}

// The whole of a (small) file, or nullopt when it cannot be read.
std::optional<std::string> read_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  std::string text;
  char buf[16384];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      ::close(fd);
      return std::nullopt;
    }
    if (n == 0) break;
    text.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  return text;
}

// stdout of `getent passwd UID`, or nullopt when it did not exit 0.
std::optional<std::string> run_getent(const std::string& getent, uid_t uid) {
  int out[2];
  if (::pipe2(out, O_CLOEXEC) != 0) return std::nullopt;
  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attr;
  posix_spawn_file_actions_init(&actions);
  posix_spawnattr_init(&attr);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, out[1], 1);
  posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
  // The real uid and gid: a set-group-id sendmail's group stays with it.
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_RESETIDS);
  const std::string uid_text = std::to_string(uid);
  std::string arg0 = getent, arg1 = "passwd", arg2 = uid_text;
  char* argv[] = {arg0.data(), arg1.data(), arg2.data(), nullptr};
  char* envp[] = {nullptr};
  pid_t pid = -1;
  const int rc = ::posix_spawn(&pid, getent.c_str(), &actions, &attr, argv, envp);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  ::close(out[1]);
  std::optional<std::string> text;
  if (rc == 0) {
    text.emplace();
    char buf[4096];
    for (;;) {
      const ssize_t n = ::read(out[0], buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      if (text->size() + static_cast<std::size_t>(n) > max_getent_output) {
        text.reset();
        break;
      }
      text->append(buf, static_cast<std::size_t>(n));
    }
  }
  ::close(out[0]);
  if (rc != 0) return std::nullopt;
  int status = 0;
  pid_t waited;
  do waited = ::waitpid(pid, &status, 0);
  while (waited < 0 && errno == EINTR);
  // ECHILD (a caller left SIGCHLD ignored): the output is all there is to go by.
  if (waited == pid && (!WIFEXITED(status) || WEXITSTATUS(status) != 0)) return std::nullopt;
  return text;
}

}  // namespace

std::optional<passwd_entry> find_passwd_entry(std::string_view text, uid_t uid) {
  while (!text.empty()) {
    const std::size_t nl = text.find('\n');
    if (auto found = parse_line(text.substr(0, nl), uid)) return found;
    if (nl == std::string_view::npos) break;
    text.remove_prefix(nl + 1);
  }
  return std::nullopt;
}

std::optional<passwd_entry> lookup_user(uid_t uid, const user_lookup& where) {
  if (const auto text = read_file(where.passwd_file))
    if (auto found = find_passwd_entry(*text, uid)) return found;
  if (where.getent.empty()) return std::nullopt;
  const auto answer = run_getent(where.getent, uid);
  return answer ? find_passwd_entry(*answer, uid) : std::nullopt;
}

}  // namespace sendmail
