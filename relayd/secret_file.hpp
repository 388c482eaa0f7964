// A credential file (relayhost password, OAuth2 client secret and refresh token)
// opened at start-up, before the privilege drop, and kept open: SIGHUP re-reads
// it through the path when the path can still be opened (a file replaced by
// rename is seen) and otherwise through the kept descriptor from offset 0, so a
// file only root can read stays readable after `user = "..."` as long as it is
// rewritten in place. Errors are values naming the path; the content is never logged.
#pragma once

#include <expected>
#include <string>
#include <string_view>

namespace relayd {

class secret_file {
 public:
  static constexpr std::size_t max_size = 64 * 1024;

  static std::expected<secret_file, std::string> open(const std::string& path);
  secret_file(secret_file&& o) noexcept;
  secret_file& operator=(secret_file&& o) noexcept;
  secret_file(const secret_file&) = delete;
  secret_file& operator=(const secret_file&) = delete;
  ~secret_file();

  // The first line, CR/LF trimmed, read now. Empty content is an error.
  std::expected<std::string, std::string> read_first_line();
  // Replaces the content with `line` + "\n" atomically (temporary file in the same
  // directory, fsync, rename, mode kept) and keeps the new file open. Fails,
  // leaving the file as it was, when the directory is not writable.
  std::expected<void, std::string> replace(std::string_view line);
  const std::string& path() const { return path_; }

 private:
  secret_file(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}
  std::string path_;
  int fd_ = -1;
};

}  // namespace relayd
