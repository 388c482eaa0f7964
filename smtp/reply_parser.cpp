// Server reply parsing (see reply_parser.hpp). Reply-line = *(Reply-code "-"
// [textstring] CRLF) Reply-code [SP textstring] CRLF (RFC 5321 4.2); a line may
// end in a bare LF. Limits are checked before bytes are buffered, so a hostile
// server cannot make the parser hold more than max_line_length + max_reply_size.
#include "smtp/reply_parser.hpp"

#include <utility>

namespace smtp {
namespace {

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

// 1*3digit at the start of `s`; returns how many digits (0 when invalid).
std::size_t digits_1_to_3(std::string_view s) {
  std::size_t n = 0;
  while (n < s.size() && n < 4 && is_digit(s[n])) ++n;
  return n >= 1 && n <= 3 ? n : 0;
}

}  // namespace

std::string_view leading_enhanced_code(std::string_view text, char klass) {
  if (klass != '2' && klass != '4' && klass != '5') return {};
  if (text.size() < 5 || text[0] != klass || text[1] != '.') return {};
  std::size_t pos = 2;
  const std::size_t subject = digits_1_to_3(text.substr(pos));
  if (subject == 0) return {};
  pos += subject;
  if (pos >= text.size() || text[pos] != '.') return {};
  ++pos;
  const std::size_t detail = digits_1_to_3(text.substr(pos));
  if (detail == 0) return {};
  pos += detail;
  if (pos < text.size() && text[pos] != ' ') return {};
  return text.substr(0, pos);
}

std::string_view to_string(reply_parser::error e) {
  switch (e) {
    case reply_parser::error::none:
      return "no error";
    case reply_parser::error::bad_code:
      return "malformed reply code";
    case reply_parser::error::bad_separator:
      return "malformed reply line";
    case reply_parser::error::mixed_codes:
      return "different codes in one multi-line reply";
    case reply_parser::error::line_too_long:
      return "reply line too long";
    case reply_parser::error::reply_too_long:
      return "reply too long";
    case reply_parser::error::too_many_lines:
      return "too many lines in one reply";
  }
  return "reply error";
}

reply_parser::reply_parser(reply_limits limits) : limits_(limits) {
  if (limits_.max_line_length < 5) limits_.max_line_length = 5;  // "250\r\n"
  if (limits_.max_reply_size < limits_.max_line_length) {
    limits_.max_reply_size = limits_.max_line_length;
  }
  if (limits_.max_lines < 1) limits_.max_lines = 1;
}

void reply_parser::reset() {
  line_.clear();
  reply_ = reply{};
  lines_ = 0;
  size_ = 0;
  complete_ = false;
  error_ = error::none;
}

reply reply_parser::take() {
  return std::exchange(reply_, reply{});
}

reply_parser::result reply_parser::fail(std::size_t consumed, error e) {
  error_ = e;
  line_.clear();
  return {consumed, status::error};
}

bool reply_parser::end_line(std::string_view line) {
  if (line.size() < 3 || line[0] < '2' || line[0] > '5' || !is_digit(line[1]) ||
      !is_digit(line[2])) {
    error_ = error::bad_code;
    return false;
  }
  const int code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
  bool last = true;
  if (line.size() > 3) {
    if (line[3] == '-') {
      last = false;
    } else if (line[3] != ' ') {
      error_ = error::bad_separator;
      return false;
    }
  }
  std::string_view text = line.size() > 4 ? line.substr(4) : std::string_view{};

  if (lines_ == 0) {
    reply_.code = code;
    const std::string_view enhanced = leading_enhanced_code(text, line[0]);
    if (!enhanced.empty()) {
      reply_.enhanced = std::string(enhanced);
      text.remove_prefix(enhanced.size());
      if (!text.empty()) text.remove_prefix(1);
    }
  } else {
    if (code != reply_.code) {
      error_ = error::mixed_codes;
      return false;
    }
    const std::string_view enhanced = reply_.enhanced;
    if (!enhanced.empty() && text.starts_with(enhanced) &&
        (text.size() == enhanced.size() || text[enhanced.size()] == ' ')) {
      text.remove_prefix(enhanced.size());
      if (!text.empty()) text.remove_prefix(1);
    }
    reply_.text.push_back('\n');
  }
  if (++lines_ > limits_.max_lines) {
    error_ = error::too_many_lines;
    return false;
  }
  reply_.text.append(text);
  complete_ = last;
  return true;
}

reply_parser::result reply_parser::put(std::string_view in) {
  if (error_ != error::none) return {0, status::error};
  if (complete_) {
    reply_ = reply{};
    lines_ = 0;
    size_ = 0;
    complete_ = false;
  }
  std::size_t i = 0;
  while (i < in.size()) {
    const std::size_t nl = in.find('\n', i);
    const std::size_t end = nl == std::string_view::npos ? in.size() : nl;
    const std::string_view segment = in.substr(i, end - i);
    // Octets still allowed: on this line before its LF, and in this reply with
    // LFs. The first octet over a limit ends the parse right there, so the error
    // and the octets consumed do not depend on how the input was split.
    const std::size_t line_room = limits_.max_line_length - 1 - line_.size();
    const std::size_t reply_room = limits_.max_reply_size - size_ - line_.size();
    const std::size_t octets = segment.size() + (nl == std::string_view::npos ? 0 : 1);
    const bool line_over = segment.size() > line_room;
    const bool reply_over = octets > reply_room;
    if (line_over && (!reply_over || line_room <= reply_room)) {
      return fail(i + line_room + 1, error::line_too_long);
    }
    if (reply_over) return fail(i + reply_room + 1, error::reply_too_long);
    if (nl == std::string_view::npos) {
      line_.append(segment);
      return {in.size(), status::need_more};
    }
    size_ += line_.size() + segment.size() + 1;
    i = nl + 1;
    std::string_view line = segment;
    if (!line_.empty()) {
      line_.append(segment);
      line = line_;
    }
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    const bool ok = end_line(line);
    line_.clear();
    if (!ok) return fail(i, error_);
    if (complete_) return {i, status::reply};
  }
  return {i, status::need_more};
}

}  // namespace smtp
