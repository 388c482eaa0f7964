// Command line splitting with the 512-octet limit (see line_reader.hpp). The
// buffer only ever holds the current line's bytes plus a trailing CR; anything
// beyond the limit is dropped on the spot and the line reported at its LF.
#include "smtp/line_reader.hpp"

#include <algorithm>

namespace smtp {

line_reader::line_reader(std::size_t limit) : limit_(std::max<std::size_t>(limit, 3)) {}

void line_reader::reset() {
  buffer_.clear();
  line_ = {};
  discarding_ = false;
  line_ready_ = false;
}

line_reader::result line_reader::put(std::string_view in) {
  if (line_ready_) {
    buffer_.clear();
    line_ = {};
    line_ready_ = false;
  }
  const std::size_t nl = in.find('\n');
  const std::string_view chunk = in.substr(0, nl == std::string_view::npos ? in.size() : nl);
  if (!discarding_) {
    // Content plus a CR may take limit - 1 octets; the LF makes the limit.
    if (buffer_.size() + chunk.size() > limit_ - 1) {
      discarding_ = true;
      buffer_.clear();
    } else {
      buffer_.append(chunk);
    }
  }
  if (nl == std::string_view::npos) return {in.size(), status::need_more};

  const std::size_t consumed = nl + 1;
  if (discarding_) {
    discarding_ = false;
    return {consumed, status::too_long};
  }
  if (buffer_.empty() || buffer_.back() != '\r') {
    buffer_.clear();
    return {consumed, status::bare_lf};
  }
  buffer_.pop_back();
  line_ = buffer_;
  line_ready_ = true;
  return {consumed, status::line};
}

}  // namespace smtp
