// DKIM canonicalization and header selection (see dkim_canon.hpp). Lines end
// in CRLF as in the spool and on the wire; a lone LF ends a header line too,
// so a field never swallows the separator.
#include "smtp/dkim_canon.hpp"

#include <algorithm>
#include <array>
#include <cassert>
#include <cstdint>
#include <cstring>

#include "smtp/text.hpp"

namespace smtp::dkim {
namespace {

bool is_wsp(char c) { return c == ' ' || c == '\t'; }

using smtp::text::iequals;

// Appends `s` with each run of WSP made one SP and a run at the end dropped;
// `unfold` also drops CR and LF (a header's folds). Runs of other characters
// are appended whole (this is most of the signing's canonicalization time).
void compress_wsp(std::string& out, std::string_view s, bool unfold) {
  auto skipped = [unfold](char c) { return unfold && (c == '\r' || c == '\n'); };
  bool in_wsp = false;
  for (std::size_t i = 0; i < s.size();) {
    const char c = s[i];
    if (skipped(c)) {
      ++i;
      continue;
    }
    if (is_wsp(c)) {
      in_wsp = true;
      ++i;
      continue;
    }
    if (in_wsp) out += ' ';
    in_wsp = false;
    std::size_t end = i + 1;
    while (end < s.size() && !is_wsp(s[end]) && !skipped(s[end])) ++end;
    out.append(s, i, end - i);
    i = end;
  }
  // A trailing run is dropped: WSP at the end is removed in both canonicalizations.
}

// From, To... are over-signed; the others are signed as often as present.
constexpr std::array<std::string_view, 7> oversigned = {"From",       "To",      "Cc",      "Subject",
                                                        "Date",       "Message-ID", "Reply-To"};
constexpr std::array<std::string_view, 19> also_signed = {
    "Sender",           "In-Reply-To",   "References",    "MIME-Version",
    "Content-Type",     "Content-Transfer-Encoding",      "Resent-Date",
    "Resent-From",      "Resent-Sender", "Resent-To",     "Resent-Cc",
    "List-Id",          "List-Help",     "List-Unsubscribe", "List-Unsubscribe-Post",
    "List-Subscribe",   "List-Post",     "List-Owner",    "List-Archive"};

// True when compress_wsp(out, line, false) would append `line` unchanged: no
// tab, no two spaces in a row, no space at the end. The usual body line is
// like that, and this test (eight bytes at a time) is much cheaper than the
// character-by-character rewrite.
bool plain_line(std::string_view line) {
  if (line.empty()) return true;
  if (is_wsp(line.back())) return false;
  constexpr std::uint64_t ones = 0x0101010101010101, low7 = 0x7f7f7f7f7f7f7f7f;
  // The top bit of each byte of `w` equal to `c` (exact: no carry between bytes).
  auto bytes_equal = [](std::uint64_t w, unsigned char c) {
    const std::uint64_t x = w ^ (ones * c);
    return ~(((x & low7) + low7) | x) & ~low7;
  };
  for (std::size_t i = 0; i < line.size(); i += 8) {
    std::uint64_t w = 0;  // bytes past the end stay 0: neither space nor tab
    std::memcpy(&w, line.data() + i, std::min<std::size_t>(8, line.size() - i));
    const std::uint64_t spaces = bytes_equal(w, ' ');
    // Two neighbouring bytes both spaces, inside this word or across the previous one.
    if ((bytes_equal(w, '\t') | (spaces & (spaces >> 8))) != 0) return false;
    if (i > 0 && line[i - 1] == ' ' && line[i] == ' ') return false;
  }
  return true;
}

// Each field's name, computed once per message (signed_names and
// header_hash_input compare every listed name against every field).
std::vector<std::string_view> names_of(const std::vector<std::string_view>& fields) {
  std::vector<std::string_view> out;
  out.reserve(fields.size());
  for (std::string_view f : fields) out.push_back(field_name(f));
  return out;
}

std::size_t count_named(const std::vector<std::string_view>& field_names, std::string_view name) {
  return static_cast<std::size_t>(
      std::ranges::count_if(field_names, [&](std::string_view f) { return iequals(f, name); }));
}

}  // namespace

split_message split(std::string_view message) {
  split_message out;
  std::size_t pos = 0;
  std::size_t field_start = std::string_view::npos;
  while (pos < message.size()) {
    const std::size_t lf = message.find('\n', pos);
    const std::size_t end = lf == std::string_view::npos ? message.size() : lf + 1;
    std::string_view line = message.substr(pos, end - pos);
    std::string_view content = line;
    if (content.ends_with('\n')) content.remove_suffix(1);
    if (content.ends_with('\r')) content.remove_suffix(1);
    if (content.empty()) {  // the separator
      if (field_start != std::string_view::npos) {
        std::string_view f = message.substr(field_start, pos - field_start);
        while (f.ends_with('\n') || f.ends_with('\r')) f.remove_suffix(1);
        out.fields.push_back(f);
      }
      out.body = message.substr(end);
      return out;
    }
    if (!is_wsp(content.front()) || field_start == std::string_view::npos) {
      if (field_start != std::string_view::npos) {
        std::string_view f = message.substr(field_start, pos - field_start);
        while (f.ends_with('\n') || f.ends_with('\r')) f.remove_suffix(1);
        out.fields.push_back(f);
      }
      field_start = pos;
    }
    pos = end;
  }
  if (field_start != std::string_view::npos) {
    std::string_view f = message.substr(field_start);
    while (f.ends_with('\n') || f.ends_with('\r')) f.remove_suffix(1);
    out.fields.push_back(f);
  }
  return out;
}

std::string_view field_name(std::string_view field) {
  const std::size_t colon = field.find(':');
  if (colon == std::string_view::npos) return {};
  std::string_view name = field.substr(0, colon);
  while (!name.empty() && is_wsp(name.back())) name.remove_suffix(1);
  return name;
}

std::string relaxed_header(std::string_view field) {
  const std::size_t colon = field.find(':');
  std::string_view name = field.substr(0, colon);
  std::string_view value = colon == std::string_view::npos ? std::string_view{}
                                                           : field.substr(colon + 1);
  std::string out;
  out.reserve(field.size() + 2);
  for (char c : name)
    if (!is_wsp(c) && c != '\r' && c != '\n') out += smtp::text::lower(c);
  out += ':';
  const std::size_t mark = out.size();
  compress_wsp(out, value, true);
  if (out.size() > mark && out[mark] == ' ') out.erase(mark, 1);  // WSP after the colon
  out += "\r\n";
  return out;
}

std::string relaxed_body(std::string_view body) {
  std::string out;
  out.reserve(body.size() + 2);
  std::size_t keep = 0;  // out's length up to the last non-empty line
  std::size_t pos = 0;
  while (pos < body.size()) {
    std::size_t eol = body.find("\r\n", pos);
    const std::size_t next = eol == std::string_view::npos ? body.size() : eol + 2;
    if (eol == std::string_view::npos) eol = body.size();
    const std::size_t line_start = out.size();
    const std::string_view line = body.substr(pos, eol - pos);
    if (plain_line(line))
      out += line;
    else
      compress_wsp(out, line, false);
    const bool empty_line = out.size() == line_start;
    out += "\r\n";
    if (!empty_line) keep = out.size();
    pos = next;
  }
  out.resize(keep);
  return out;
}

std::vector<std::string> signed_names(const std::vector<std::string_view>& fields) {
  const std::vector<std::string_view> present = names_of(fields);
  std::vector<std::string> names;
  for (std::string_view n : oversigned)
    for (std::size_t i = 0, k = count_named(present, n) + 1; i < k; ++i) names.emplace_back(n);
  for (std::string_view n : also_signed)
    for (std::size_t i = 0, k = count_named(present, n); i < k; ++i) names.emplace_back(n);
  return names;
}

std::string header_hash_input(const std::vector<std::string_view>& fields,
                              const std::vector<std::string>& names) {
  const std::vector<std::string_view> present = names_of(fields);
  std::string out;
  std::vector<bool> used(fields.size(), false);
  for (const std::string& name : names) {
    for (std::size_t i = fields.size(); i-- > 0;) {
      if (used[i] || !iequals(present[i], name)) continue;
      used[i] = true;
      out += relaxed_header(fields[i]);
      break;
    }
  }
  return out;
}

std::optional<std::string> from_domain(const std::vector<std::string_view>& fields) {
  const auto it =
      std::ranges::find_if(fields, [](std::string_view f) { return iequals(field_name(f), "From"); });
  if (it == fields.end()) return std::nullopt;
  const std::string_view value = it->substr(it->find(':') + 1);
  // The first address: the <...> of a name-addr, else the addr-spec outside
  // quoted strings and comments, up to the first comma.
  std::string plain, angle;
  bool quoted = false, in_angle = false, escaped = false;
  int comment = 0;
  for (char c : value) {
    if (escaped) {
      escaped = false;
      (in_angle ? angle : plain) += c;
      continue;
    }
    if (quoted) {
      if (c == '\\') escaped = true;
      else if (c == '"') quoted = false;
      continue;  // the display name or a quoted local part: never the domain
    }
    if (comment > 0) {
      if (c == '\\') escaped = true;
      else if (c == '(') ++comment;
      else if (c == ')') --comment;
      continue;
    }
    if (c == '"') quoted = true;
    else if (c == '(') ++comment;
    else if (c == '<' && !in_angle) in_angle = true, angle.clear();
    else if (c == '>' && in_angle) break;
    else if (c == ',' && !in_angle) break;
    else if (!is_wsp(c) && c != '\r' && c != '\n') (in_angle ? angle : plain) += c;
  }
  const std::string& address = !angle.empty() ? angle : plain;
  const std::size_t at = address.rfind('@');
  if (at == std::string::npos || at + 1 == address.size()) return std::nullopt;
  return smtp::text::lower(address.substr(at + 1));
}

std::string fold_signature(const std::vector<tag>& tags, std::size_t width) {
  assert(!tags.empty() && tags.back().name == "b");
  std::string out = "DKIM-Signature:";
  std::size_t column = out.size();
  auto new_line = [&] {
    out += "\r\n ";
    column = 1;
  };
  for (std::size_t t = 0; t < tags.size(); ++t) {
    const tag& g = tags[t];
    const bool last = t + 1 == tags.size();
    const std::string whole = g.name + "=" + g.value + (last ? "" : ";");
    if (last) {
      new_line();
    } else if (column + 1 + whole.size() <= width) {
      out += ' ';
      ++column;
    } else {
      new_line();
    }
    if (column + whole.size() <= width) {
      out += whole;
      column += whole.size();
      continue;
    }
    // Too long for one line: h= breaks after a colon, base64 anywhere.
    out += g.name + "=";
    column += g.name.size() + 1;
    auto put = [&](std::string_view p) {  // a piece that may not be broken
      if (column + p.size() > width) new_line();
      out += p;
      column += p.size();
    };
    std::string_view v = g.value;
    if (g.name == "h") {
      while (!v.empty()) {
        const std::size_t colon = v.find(':');
        const std::size_t n = colon == std::string_view::npos ? v.size() : colon + 1;
        put(v.substr(0, n));
        v.remove_prefix(n);
      }
    } else {
      // base64, breakable after any character: what fits of the line, at least one.
      while (!v.empty()) {
        if (column + 1 > width) new_line();
        const std::size_t n = std::min(v.size(), std::max<std::size_t>(1, width - std::min(width, column)));
        out += v.substr(0, n);
        column += n;
        v.remove_prefix(n);
      }
    }
    if (!last) put(";");
  }
  return out;
}

}  // namespace smtp::dkim
