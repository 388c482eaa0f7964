// DATA content state machine (see dot_reader.hpp). Every byte moves the state;
// a CR must be followed by LF and an LF must follow a CR, otherwise the reader
// stops with bare_cr/bare_lf at once. Only "\r\n.\r\n" ends the message.
#include "smtp/dot_reader.hpp"

#include <algorithm>
#include <cassert>
#include <utility>

namespace smtp {
namespace {

// Presizing beyond this would let an idle client pin memory with a large SIZE=.
constexpr std::size_t max_presize = 4u << 20;
// Below this a growing body doubles its buffer; above, it grows by a quarter.
constexpr std::size_t grow_gently_above = 64u << 10;

}  // namespace

dot_reader::dot_reader(std::size_t max_size, std::size_t max_line_length)
    : max_size_(max_size), max_line_length_(std::max<std::size_t>(max_line_length, 3)) {}

void dot_reader::reset(std::size_t expected_size) {
  content_.clear();
  const std::size_t presize = std::min({expected_size, max_size_, max_presize});
  if (presize > content_.capacity()) content_.reserve(presize);
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

// Gives the buffer back to the allocator. `content_ = std::string()` would not:
// libstdc++ copies a short string into the existing buffer and keeps it.
void dot_reader::release() {
  std::string().swap(content_);
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
    if (!content_.empty() || content_.capacity() > std::string().capacity())
      release();  // the message is lost anyway
    return;
  }
  const std::size_t needed = content_.size() + bytes.size();
  if (needed > content_.capacity()) {
    // Grown here rather than by std::string (which doubles): the session's
    // buffered() reports capacity against smtp.max_data_memory, so the slack
    // is kept to a quarter past grow_gently_above.
    const std::size_t cap = content_.capacity();
    std::string grown;
    grown.reserve(std::max(needed, needed <= grow_gently_above ? 2 * cap : cap + cap / 4));
    grown.append(content_);
    content_.swap(grown);
  }
  content_.append(bytes);
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
        std::size_t j = i;
        while (j < n && in[j] != '\r' && in[j] != '\n') ++j;
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
