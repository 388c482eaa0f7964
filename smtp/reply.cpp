// Wire and log forms of smtp::reply. Encoding never fails: text lines are split at
// '\n', stray CR and other control characters are replaced by spaces so a reply can
// never end early or smuggle an extra line, and every line repeats the enhanced code.
#include "smtp/reply.hpp"

#include <cstddef>
#include <string>
#include <string_view>

namespace smtp {
namespace {

// Calls f(line, last) for each line of the text; a trailing '\n' does not add
// an empty last line.
template <typename F>
void for_each_line(std::string_view text, F f) {
  std::size_t start = 0;
  while (true) {
    const std::size_t nl = text.find('\n', start);
    if (nl == std::string_view::npos || nl + 1 == text.size()) {
      f(text.substr(start, nl == std::string_view::npos ? std::string_view::npos : nl - start),
        true);
      return;
    }
    f(text.substr(start, nl - start), false);
    start = nl + 1;
  }
}

void append_clean(std::string& out, std::string_view line) {
  const std::size_t at = out.size();
  out.append(line);
  for (std::size_t i = at; i < out.size(); ++i) {
    const auto u = static_cast<unsigned char>(out[i]);
    if (u < 0x20 || u == 0x7f) out[i] = ' ';
  }
}

std::string code_text(int code) {
  if (code < 100 || code > 999) return "000";
  return std::to_string(code);
}

}  // namespace

std::string reply::encode() const {
  const std::string code_str = code_text(code);
  std::string out;
  out.reserve(text.size() + 8 + enhanced.size());
  for_each_line(text, [&](std::string_view line, bool last) {
    out += code_str;
    out.push_back(last ? ' ' : '-');
    if (!enhanced.empty()) {
      append_clean(out, enhanced);
      if (!line.empty()) out.push_back(' ');
    }
    append_clean(out, line);
    if (enhanced.empty() && line.empty() && last) out.pop_back();
    out += "\r\n";
  });
  return out;
}

std::string reply::to_string() const {
  std::string out = code_text(code);
  if (!enhanced.empty()) {
    out.push_back(' ');
    append_clean(out, enhanced);
  }
  bool first = true, only_empty = false;
  for_each_line(text, [&](std::string_view line, bool last) {
    out += first ? " " : "; ";
    append_clean(out, line);
    only_empty = first && last && line.empty();
    first = false;
  });
  if (only_empty) out.pop_back();
  return out;
}

}  // namespace smtp
