// DATA transparency for the client (see dot_stuffer.hpp). Each line is copied as
// one run found with memchr, so the cost is a few operations per line, not per
// byte; only line starts, CRs and LFs are looked at individually.
#include "smtp/dot_stuffer.hpp"

#include <cstring>

namespace smtp {
namespace {

const char* find_byte(const char* begin, const char* end, char c) {
  if (begin >= end) return nullptr;
  return static_cast<const char*>(std::memchr(begin, c, static_cast<std::size_t>(end - begin)));
}

}  // namespace

void dot_stuffer::reset() {
  line_start_ = true;
  pending_cr_ = false;
}

void dot_stuffer::put(std::string_view content, std::string& out) {
  const char* p = content.data();
  const char* const end = p + content.size();
  if (p == end) return;
  if (pending_cr_) {
    // CR LF split across pieces, or a bare CR: either way one CRLF goes out.
    pending_cr_ = false;
    out += "\r\n";
    line_start_ = true;
    if (*p == '\n') ++p;
  }
  while (p < end) {
    if (line_start_ && *p == '.') out.push_back('.');
    const char* lf = find_byte(p, end, '\n');
    const char* line_end = lf != nullptr ? lf : end;
    // A CR right before the LF is the line's own CRLF; any other CR is bare.
    const char* text_end = (lf != nullptr && lf > p && lf[-1] == '\r') ? lf - 1 : line_end;
    if (const char* cr = find_byte(p, text_end, '\r')) {
      out.append(p, cr);
      if (cr + 1 == end) {  // the LF may come with the next piece
        pending_cr_ = true;
        line_start_ = false;
        return;
      }
      out += "\r\n";
      line_start_ = true;
      p = cr + 1;
      continue;
    }
    out.append(p, text_end);
    if (lf == nullptr) {
      line_start_ = false;
      return;
    }
    out += "\r\n";
    line_start_ = true;
    p = lf + 1;
  }
}

void dot_stuffer::finish(std::string& out) {
  if (pending_cr_) {
    out += "\r\n";
    line_start_ = true;
  }
  if (!line_start_) out += "\r\n";
  out += ".\r\n";
  reset();
}

std::string dot_stuff(std::string_view content) {
  // Exact size for CRLF content: one extra octet per line starting with ".",
  // plus at most CRLF "." CRLF at the end.
  std::size_t dots = !content.empty() && content.front() == '.' ? 1 : 0;
  const char* p = content.data();
  const char* const end = p + content.size();
  while (const char* lf = find_byte(p, end, '\n')) {
    if (lf + 1 < end && lf[1] == '.') ++dots;
    p = lf + 1;
  }
  std::string out;
  out.reserve(content.size() + dots + 5);
  dot_stuffer stuffer;
  stuffer.put(content, out);
  stuffer.finish(out);
  return out;
}

}  // namespace smtp
