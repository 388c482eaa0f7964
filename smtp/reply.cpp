// Wire and log forms of smtp::reply. Encoding never fails: text lines are split at
// '\n', stray CR and other control characters are replaced by spaces so a reply can
// never end early or smuggle an extra line, and every line repeats the enhanced code.
#include "smtp/reply.hpp"

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace smtp {
namespace {

// The text split into lines; a trailing '\n' does not add an empty last line.
std::vector<std::string_view> split_lines(std::string_view text) {
  std::vector<std::string_view> lines;
  std::size_t start = 0;
  while (true) {
    std::size_t nl = text.find('\n', start);
    if (nl == std::string_view::npos) {
      lines.push_back(text.substr(start));
      break;
    }
    lines.push_back(text.substr(start, nl - start));
    start = nl + 1;
    if (start == text.size()) break;
  }
  return lines;
}

void append_clean(std::string& out, std::string_view line) {
  for (char c : line) {
    auto u = static_cast<unsigned char>(c);
    out.push_back(u < 0x20 || u == 0x7f ? ' ' : c);
  }
}

std::string code_text(int code) {
  if (code < 100 || code > 999) return "000";
  return std::to_string(code);
}

}  // namespace

std::string reply::encode() const {
  const std::string code_str = code_text(code);
  const std::vector<std::string_view> lines = split_lines(text);
  std::string out;
  out.reserve(text.size() + lines.size() * (6 + enhanced.size()));
  for (std::size_t i = 0; i < lines.size(); ++i) {
    out += code_str;
    out.push_back(i + 1 == lines.size() ? ' ' : '-');
    if (!enhanced.empty()) {
      append_clean(out, enhanced);
      if (!lines[i].empty()) out.push_back(' ');
    }
    append_clean(out, lines[i]);
    if (enhanced.empty() && lines[i].empty() && i + 1 == lines.size()) out.pop_back();
    out += "\r\n";
  }
  return out;
}

std::string reply::to_string() const {
  std::string out = code_text(code);
  if (!enhanced.empty()) {
    out.push_back(' ');
    append_clean(out, enhanced);
  }
  const std::vector<std::string_view> lines = split_lines(text);
  for (std::size_t i = 0; i < lines.size(); ++i) {
    out += i == 0 ? " " : "; ";
    append_clean(out, lines[i]);
  }
  if (lines.size() == 1 && lines[0].empty()) out.pop_back();
  return out;
}

}  // namespace smtp
