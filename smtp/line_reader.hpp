// Splits the command stream into CRLF-terminated lines, Beast-parser style:
// put(bytes) consumes a prefix and reports one complete line, an error or "need
// more". Enforces the RFC 5321 4.5.3.1.4 command line limit (512 octets, CRLF
// included): an over-long line is discarded up to its LF and reported as
// too_long, a line ended by a bare LF as bare_lf. Never buffers more than limit-1
// bytes, whatever the input.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace smtp {

class line_reader {
 public:
  static constexpr std::size_t default_limit = 512;

  enum class status {
    need_more,  // all input consumed, no complete line yet
    line,       // line() holds a complete line (without its CRLF)
    too_long,   // a line longer than the limit ended; its bytes were discarded
    bare_lf,    // a line ended in LF without CR; its bytes were discarded
  };
  struct result {
    std::size_t consumed;
    status what;
  };

  // `limit` counts the CRLF; values below 3 are raised to 3.
  explicit line_reader(std::size_t limit = default_limit);

  // Consumes bytes up to and including the end of one line (or all of `in`).
  result put(std::string_view in);
  // The line reported by the last put() (valid until the next put or reset).
  std::string_view line() const { return line_; }
  // True while a partial line is buffered or being discarded (not once the line
  // has been reported).
  bool partial() const { return (!buffer_.empty() && !line_ready_) || discarding_; }
  // Forgets any partial line.
  void reset();

 private:
  std::size_t limit_;
  std::string buffer_;
  std::string_view line_;
  bool discarding_ = false;
  bool line_ready_ = false;
};

}  // namespace smtp
