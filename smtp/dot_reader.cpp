// DATA content state machine (see dot_reader.hpp). Every byte moves the state;
// a CR must be followed by LF and an LF must follow a CR, otherwise the reader
// stops with bare_cr/bare_lf at once. Only "\r\n.\r\n" ends the message.
#include "smtp/dot_reader.hpp"

#include <algorithm>
#include <cassert>
#include <cstring>
#include <utility>

#include "smtp/content_buffer.hpp"

namespace smtp {

dot_reader::dot_reader(std::size_t max_size, std::size_t max_line_length)
    : max_size_(max_size), max_line_length_(std::max<std::size_t>(max_line_length, 3)) {}

void dot_reader::reset(std::size_t expected_size) {
  content_buffer::presize(content_, expected_size, max_size_);
  size_ = 0;
  line_length_ = 0;
  too_big_ = false;
  line_too_long_ = false;
  state_ = state::line_start;
}

void dot_reader::discard() {
  too_big_ = true;
  release();
}

void dot_reader::release() {
  content_buffer::release(content_);
}

std::string dot_reader::take_content() {
  return std::exchange(content_, std::string());
}

void dot_reader::append(std::string_view bytes) {
  line_length_ += bytes.size();
  if (!line_too_long_ && line_length_ + 2 > max_line_length_) line_too_long_ = true;
  store(bytes);
}

void dot_reader::end_line() {
  line_length_ = 0;
  store("\r\n");
}

void dot_reader::store(std::string_view bytes) {
  size_ += bytes.size();
  if (!too_big_ && size_ > max_size_) too_big_ = true;
  if (too_big_ || line_too_long_) {
    if (!content_.empty() || content_buffer::holds_memory(content_))
      release();  // the message is lost anyway
    return;
  }
  content_buffer::append(content_, bytes);
}

dot_reader::result dot_reader::finish(std::size_t consumed) {
  state_ = state::finished;
  if (too_big_) return {consumed, status::too_big};
  if (line_too_long_) return {consumed, status::line_too_long};
  return {consumed, status::complete};
}

dot_reader::result dot_reader::put(std::string_view in) {
  const std::size_t n = in.size();
  std::size_t i = 0;
  while (i < n) {
    const char c = in[i];
    switch (state_) {
      case state::line_start:
        if (c == '.') {
          state_ = state::dot;
          ++i;
        } else if (c == '\r') {
          state_ = state::cr;
          ++i;
        } else if (c == '\n') {
          state_ = state::finished;
          return {i + 1, status::bare_lf};
        } else {
          state_ = state::in_line;
        }
        break;
      case state::dot:
        // The stuffed dot is dropped; whatever follows (even another dot) is content.
        if (c == '\r') {
          state_ = state::dot_cr;
          ++i;
        } else if (c == '\n') {
          state_ = state::finished;
          return {i + 1, status::bare_lf};
        } else {
          state_ = state::in_line;
        }
        break;
      case state::dot_cr:
        if (c == '\n') return finish(i + 1);
        state_ = state::finished;
        return {i + 1, status::bare_cr};
      case state::in_line: {
        // The line's end: the first CR or LF (memchr for each, as lines are long).
        const char* base = in.data();
        const void* cr = std::memchr(base + i, '\r', n - i);
        const std::size_t upto =
            cr ? static_cast<std::size_t>(static_cast<const char*>(cr) - base) : n;
        const void* lf = std::memchr(base + i, '\n', upto - i);
        const std::size_t j =
            lf ? static_cast<std::size_t>(static_cast<const char*>(lf) - base) : upto;
        if (j == upto && cr && j + 1 < n && in[j + 1] == '\n') {
          // A whole line and its CRLF: stored in one piece.
          line_length_ += j - i;
          if (!line_too_long_ && line_length_ + 2 > max_line_length_) line_too_long_ = true;
          line_length_ = 0;
          store(in.substr(i, j + 2 - i));
          state_ = state::line_start;
          i = j + 2;
          break;
        }
        append(in.substr(i, j - i));
        if (j == n) return {n, status::need_more};
        if (in[j] == '\n') {
          state_ = state::finished;
          return {j + 1, status::bare_lf};
        }
        state_ = state::cr;
        i = j + 1;
        break;
      }
      case state::cr:
        if (c != '\n') {
          state_ = state::finished;
          return {i + 1, status::bare_cr};
        }
        end_line();
        state_ = state::line_start;
        ++i;
        break;
      case state::finished:
        assert(false && "dot_reader::put after a final status without reset()");
        return {0, status::bare_cr};
    }
  }
  return {n, status::need_more};
}

}  // namespace smtp
