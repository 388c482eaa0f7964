// Reads DATA content up to the CRLF "." CRLF terminator, chasquid-dotreader
// style: a byte-level state machine that removes dot-stuffing, keeps CRLF line
// endings as they are and refuses a bare CR or bare LF anywhere (SMTP smuggling)
// the moment it sees one. Size and text-line limits are checked as bytes arrive;
// once one is exceeded the rest is discarded up to the terminator, so memory stays
// bounded by max_size. Any split of the input gives the same result.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace smtp {

class dot_reader {
 public:
  enum class status {
    need_more,      // all input consumed; the terminator has not been seen yet
    complete,       // terminator consumed; content() is the message
    too_big,        // terminator consumed; the content exceeded max_size (discarded)
    line_too_long,  // terminator consumed; a text line exceeded max_line_length (discarded)
    bare_cr,        // a CR not followed by LF: stop, the stream cannot be trusted
    bare_lf,        // an LF not preceded by CR: stop, the stream cannot be trusted
  };
  struct result {
    std::size_t consumed;
    status what;
  };

  // max_size: octets of content after un-stuffing (the final CRLF before "."
  // counts, the terminator does not). max_line_length: octets of a text line,
  // CRLF included, not counting a stuffed leading dot (RFC 5321 4.5.3.1.6).
  dot_reader(std::size_t max_size, std::size_t max_line_length);

  // Consumes bytes; stops right after the terminator or the offending byte.
  // After anything but need_more the reader must be reset() before reuse.
  result put(std::string_view in);

  // The un-stuffed content with CRLF line endings (empty after a limit error).
  // Its buffer doubles up to 64 KiB, then grows by a quarter, so its capacity
  // (what the daemon budgets) stays within 25 % of the content past that.
  const std::string& content() const { return content_; }
  std::string take_content();
  // Octets of content seen so far, including discarded ones.
  std::uint64_t size() const { return size_; }
  // Starts a new message; `expected_size` (e.g. from SIZE=) only presizes memory.
  void reset(std::size_t expected_size = 0);
  // Frees the content so far and drops whatever follows; the message then ends
  // with too_big, like one over max_size.
  void discard();

 private:
  enum class state : std::uint8_t {
    line_start,  // after CRLF (and at the very start)
    dot,         // "." at line start
    dot_cr,      // "." CR at line start
    in_line,     // inside a line
    cr,          // CR inside a line (or after an empty line start)
    finished,    // reported a final status; reset() required
  };
  void append(std::string_view bytes);
  void end_line();
  void store(std::string_view bytes);
  void release();
  result finish(std::size_t consumed);

  std::size_t max_size_;
  std::size_t max_line_length_;
  std::string content_;
  std::uint64_t size_ = 0;
  std::size_t line_length_ = 0;  // octets of the current line so far, CRLF not yet counted
  bool too_big_ = false;
  bool line_too_long_ = false;
  state state_ = state::line_start;
};

}  // namespace smtp
