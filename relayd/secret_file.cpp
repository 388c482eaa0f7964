// Implements secret_file.hpp with open(2)/pread(2); no Asio.
#include "relayd/secret_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

namespace relayd {
namespace {

std::string why(const std::string& path, std::string_view what) {
  return path + ": " + std::string(what) + ": " + std::strerror(errno);
}

std::expected<std::string, std::string> read_all(int fd, const std::string& path) {
  std::string text;
  char buf[4096];
  for (;;) {
    const ssize_t n = ::pread(fd, buf, sizeof buf, static_cast<off_t>(text.size()));
    if (n < 0) {
      if (errno == EINTR) continue;
      return std::unexpected(why(path, "cannot read"));
    }
    if (n == 0) break;
    text.append(buf, static_cast<std::size_t>(n));
    if (text.size() > secret_file::max_size)
      return std::unexpected(path + ": larger than 64 KiB; not a credential file");
  }
  return text;
}

}  // namespace

std::expected<secret_file, std::string> secret_file::open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::unexpected(why(path, "cannot open"));
  return secret_file(path, fd);
}

secret_file::secret_file(secret_file&& o) noexcept
    : path_(std::move(o.path_)), fd_(std::exchange(o.fd_, -1)) {}

secret_file& secret_file::operator=(secret_file&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) ::close(fd_);
    path_ = std::move(o.path_);
    fd_ = std::exchange(o.fd_, -1);
  }
  return *this;
}

secret_file::~secret_file() {
  if (fd_ >= 0) ::close(fd_);
}

std::expected<std::string, std::string> secret_file::read_first_line() {
  // The path first: a file replaced by rename (secret rotation tools) is a new inode.
  if (const int fd = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC); fd >= 0) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }
  auto text = read_all(fd_, path_);
  if (!text) return text;
  std::string line = text->substr(0, text->find('\n'));
  while (!line.empty() && (line.back() == '\r' || line.back() == '\n')) line.pop_back();
  std::fill(text->begin(), text->end(), '\0');
  if (line.empty()) return std::unexpected(path_ + ": empty first line");
  return line;
}

std::expected<void, std::string> secret_file::replace(std::string_view line) {
  const std::string tmp = path_ + ".relayd-new";
  struct stat st {};
  const mode_t mode = fd_ >= 0 && ::fstat(fd_, &st) == 0 ? (st.st_mode & 07777) : 0600;
  const int fd = ::open(tmp.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) return std::unexpected(why(tmp, "cannot create"));
  std::string content(line);
  content.push_back('\n');
  bool ok = ::fchmod(fd, mode) == 0;
  for (std::size_t done = 0; ok && done < content.size();) {
    const ssize_t n = ::write(fd, content.data() + done, content.size() - done);
    if (n < 0 && errno == EINTR) continue;
    ok = n > 0;
    if (ok) done += static_cast<std::size_t>(n);
  }
  std::fill(content.begin(), content.end(), '\0');
  ok = ok && ::fsync(fd) == 0 && ::rename(tmp.c_str(), path_.c_str()) == 0;
  if (!ok) {
    auto e = why(tmp, "cannot write or rename");
    ::close(fd);
    ::unlink(tmp.c_str());
    return std::unexpected(std::move(e));
  }
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
  return {};
}

}  // namespace relayd
