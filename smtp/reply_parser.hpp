// Reads the replies an SMTP server sends, for the client side: put(bytes) consumes
// a prefix and reports one complete (possibly multi-line) reply, a protocol error
// or "need more", Beast-parser style. It stops right after each reply, so the
// caller sees every reply before the bytes that follow it (STARTTLS relies on it).
// Lenient where servers are sloppy (bare LF, "250" without text, 4 KiB lines),
// strict where it matters: a bad code, a bad separator or different codes in one
// multi-line reply are errors, and a reply over the size or line-count limit is an
// error rather than a buffer that grows. Memory stays below the limits whatever the
// input; nothing here throws on input.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "smtp/reply.hpp"

namespace smtp {

struct reply_limits {
  std::size_t max_line_length = 4096;  // one reply line, CRLF included (RFC 5321 says 512)
  std::size_t max_reply_size = 65536;  // all lines of one reply, CRLFs included
  std::size_t max_lines = 512;         // lines of one reply
};

class reply_parser {
 public:
  enum class status {
    need_more,  // all input consumed, the reply is not complete yet
    reply,      // a complete reply is ready: get() / take()
    error,      // protocol error (see failure()); the parser stays failed until reset()
  };
  enum class error : std::uint8_t {
    none,
    bad_code,        // a line does not start with a reply code 200..599
    bad_separator,   // the code is followed by something else than SP, "-" or the line end
    mixed_codes,     // the lines of one multi-line reply carry different codes
    line_too_long,   // a line over max_line_length
    reply_too_long,  // a reply over max_reply_size
    too_many_lines,  // a reply over max_lines
  };
  struct result {
    std::size_t consumed;
    status what;
  };

  explicit reply_parser(reply_limits limits = {});

  // Consumes bytes up to the end of one reply (or all of `in`).
  result put(std::string_view in);

  // The reply reported by the last put(): code, enhanced status code (RFC 3463)
  // when the first line carries one whose class matches the code, and the text
  // lines joined by '\n' with the enhanced code removed from every line that
  // repeats it. Valid until the next put() or reset().
  const reply& get() const { return reply_; }
  reply take();
  error failure() const { return error_; }
  // True while part of a reply has been read.
  bool partial() const { return !line_.empty() || (lines_ != 0 && !complete_); }
  void reset();

 private:
  result fail(std::size_t consumed, error e);
  bool end_line(std::string_view line);  // false: error_ is set

  reply_limits limits_;
  std::string line_;       // the current, incomplete line
  reply reply_;            // the reply being assembled (or the last complete one)
  std::size_t lines_ = 0;  // lines of the current reply so far
  std::size_t size_ = 0;   // octets of the current reply so far
  bool complete_ = false;  // reply_ holds a complete reply that put() reported
  error error_ = error::none;
};

std::string_view to_string(reply_parser::error e);

// "2.1.5" at the start of `text` when it is a valid RFC 3463 status code of class
// `klass` ('2', '4' or '5') followed by a space or the end; "" otherwise.
std::string_view leading_enhanced_code(std::string_view text, char klass);

}  // namespace smtp
