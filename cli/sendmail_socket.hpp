// A blocking Unix stream socket for sendmail's two conversations with relayd
// (SMTP on [local] socket, JSON lines on [control] socket), with a deadline on
// every connect, read and write through poll(2). No Asio. Failures are values
// naming the step and errno's text ("connect /run/relayd/submit.sock: No such
// file or directory", "read: timed out"); SIGPIPE is never raised (MSG_NOSIGNAL).
#pragma once

#include <chrono>
#include <expected>
#include <string>
#include <string_view>

namespace sendmail {

class unix_stream {
 public:
  unix_stream() = default;
  ~unix_stream();
  unix_stream(const unix_stream&) = delete;
  unix_stream& operator=(const unix_stream&) = delete;

  std::expected<void, std::string> connect(const std::string& path,
                                           std::chrono::milliseconds timeout);
  std::expected<void, std::string> write_all(std::string_view data,
                                             std::chrono::milliseconds timeout);
  // At least one byte appended to `out`; an error at EOF ("connection closed").
  std::expected<void, std::string> read_some(std::string& out, std::chrono::milliseconds timeout);
  // Up to and including the next '\n' (buffered); error at EOF or past `max` bytes.
  std::expected<std::string, std::string> read_line(std::chrono::milliseconds timeout,
                                                    std::size_t max = 1 << 20);

 private:
  // poll() for `events` until the deadline; errno-style text on failure.
  std::expected<void, std::string> await(short events, std::chrono::milliseconds timeout,
                                         std::string_view what);
  int fd_ = -1;
  std::string buffered_;  // read_line's bytes after the last line
};

}  // namespace sendmail
