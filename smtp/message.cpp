// RFC 5322 header handling for received messages (see message.hpp). Header
// detection is by line start only ("name" WSP* ":"), so content is never parsed
// beyond the header block. Client-supplied text that goes into Received: is
// stripped of control characters so it cannot add header lines.
#include "smtp/message.hpp"

#include <array>
#include <chrono>

#include "smtp/text.hpp"

namespace smtp {
namespace {

// ftext of RFC 5322 3.6.8: printable ASCII except ':'.
bool is_ftext(char ch) {
  const auto c = static_cast<unsigned char>(ch);
  return c >= 33 && c <= 126 && c != ':';
}

// Length of the field name if `line` starts a header field ("name" WSP* ":"), else 0.
std::size_t field_name_length(std::string_view line) {
  std::size_t i = 0;
  while (i < line.size() && is_ftext(line[i])) ++i;
  const std::size_t name = i;
  if (name == 0) return 0;
  while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
  return i < line.size() && line[i] == ':' ? name : 0;
}

// Calls f(line) for each line of the header block (without CRLF); stops when f
// returns true. Returns the end offset of the header block.
template <typename F>
std::size_t walk_headers(std::string_view message, F&& f) {
  std::size_t pos = 0;
  bool in_field = false;
  while (pos < message.size()) {
    std::size_t eol = message.find("\r\n", pos);
    const std::size_t next = eol == std::string_view::npos ? message.size() : eol + 2;
    if (eol == std::string_view::npos) eol = message.size();
    const std::string_view line = message.substr(pos, eol - pos);
    const bool continuation = in_field && !line.empty() && (line[0] == ' ' || line[0] == '\t');
    if (!continuation) {
      if (field_name_length(line) == 0) return pos;
      in_field = true;
      if (f(line)) return pos;
    }
    pos = next;
  }
  return pos;
}

// Client-supplied text for a header: control characters become spaces, and
// 8-bit bytes become '?' unless the transaction is SMTPUTF8.
void append_clean(std::string& out, std::string_view s, bool utf8) {
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (c < 0x20 || c == 0x7f) {
      out.push_back(' ');
    } else if (c >= 0x80 && !utf8) {
      out.push_back('?');
    } else {
      out.push_back(ch);
    }
  }
}

}  // namespace

std::size_t header_block_end(std::string_view message) {
  return walk_headers(message, [](std::string_view) { return false; });
}

bool has_header(std::string_view message, std::string_view name) {
  bool found = false;
  walk_headers(message, [&](std::string_view line) {
    const std::size_t n = field_name_length(line);
    if (n != name.size() || !text::istarts_with(line, name)) return false;
    found = true;
    return true;
  });
  return found;
}

std::string message_id_for_log(std::string_view message) {
  std::string_view value;
  walk_headers(message, [&](std::string_view line) {
    const std::size_t n = field_name_length(line);
    if (n != 10 || !text::istarts_with(line, "Message-ID")) return false;
    // The field with its folded continuation lines.
    const std::size_t start = static_cast<std::size_t>(line.data() - message.data());
    std::size_t end = start + line.size();
    while (end + 2 < message.size() && message.substr(end, 2) == "\r\n" &&
           (message[end + 2] == ' ' || message[end + 2] == '\t')) {
      const std::size_t eol = message.find("\r\n", end + 2);
      end = eol == std::string_view::npos ? message.size() : eol;
    }
    value = message.substr(start, end - start);
    value.remove_prefix(value.find(':') + 1);
    return true;
  });
  if (value.empty()) return "";
  std::string_view id;
  const auto open = value.find('<');
  const auto close = open == std::string_view::npos ? open : value.find('>', open);
  if (close != std::string_view::npos) {
    id = value.substr(open, close - open + 1);
  } else {
    const auto first = value.find_first_not_of(" \t\r\n");
    if (first == std::string_view::npos) return "";
    id = value.substr(first);
    id = id.substr(0, id.find_first_of(" \t\r\n"));
  }
  constexpr std::size_t max_length = 250;
  std::string out;
  for (char ch : id.substr(0, max_length)) {
    const auto c = static_cast<unsigned char>(ch);
    if (c == '\r' || c == '\n' || c == '\t' || c == ' ') continue;  // folding inside <...>
    out.push_back(c > 32 && c < 127 ? ch : '?');
  }
  return out;
}

std::string format_date(std::int64_t unix_seconds) {
  using namespace std::chrono;
  static constexpr std::array<const char*, 7> day_names{"Sun", "Mon", "Tue", "Wed",
                                                        "Thu", "Fri", "Sat"};
  static constexpr std::array<const char*, 12> month_names{
      "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  const sys_seconds t{seconds{unix_seconds}};
  const sys_days day = floor<days>(t);
  const year_month_day ymd{day};
  const weekday wd{day};
  const auto secs = (t - day).count();
  const auto two = [](long v) {
    std::string s = std::to_string(v);
    return s.size() < 2 ? "0" + s : s;
  };
  std::string out = day_names[wd.c_encoding()];
  out += ", ";
  out += two(static_cast<unsigned>(ymd.day()));
  out += ' ';
  out += month_names[static_cast<unsigned>(ymd.month()) - 1];
  out += ' ';
  out += std::to_string(static_cast<int>(ymd.year()));
  out += ' ';
  out += two(static_cast<long>(secs / 3600)) + ':' + two(static_cast<long>(secs / 60 % 60)) + ':' +
         two(static_cast<long>(secs % 60));
  out += " +0000";
  return out;
}

std::string make_message_id(std::string_view id, std::string_view hostname) {
  std::string out = "<";
  out += id;
  out += '@';
  out += hostname;
  out += '>';
  return out;
}

std::string received_header(const received_info& info) {
  std::string out = "Received: from ";
  const bool utf8 = info.smtputf8;
  if (info.local) {
    out += "local (uid ";
    out += std::to_string(info.local->uid);
    if (!info.local->user.empty()) {
      out += ", ";
      append_clean(out, info.local->user, utf8);
    }
    out += ")\r\n\tby ";
  } else {
    append_clean(out, info.helo, utf8);
    out += " (";
    append_clean(out,
                 info.client_hostname.empty() ? std::string_view("unknown")
                                              : std::string_view(info.client_hostname),
                 utf8);
    out += " [";
    if (info.client_ip.find(':') != std::string::npos) out += "IPv6:";
    append_clean(out, info.client_ip, utf8);
    out += "])\r\n\tby ";
  }
  out += info.hostname;
  out += " (relayd) with ";
  if (info.smtputf8 || info.esmtp) {
    out += info.smtputf8 ? "UTF8SMTP" : "ESMTP";
    if (info.tls) out += 'S';
    if (info.authenticated) out += 'A';
  } else {
    out += "SMTP";  // HELO: RFC 3848 has no TLS or AUTH variant of plain SMTP
  }
  out += " id ";
  out += info.queue_id;
  if (info.recipients.size() == 1) {
    out += "\r\n\tfor <";
    append_clean(out, info.recipients.front(), utf8);
    out += '>';
  }
  out += "; ";
  out += format_date(info.time);
  out += "\r\n";
  return out;
}

std::string build_message(std::string_view content, std::string_view received, std::int64_t time,
                          std::string_view message_id) {
  const std::size_t end = header_block_end(content);
  const std::string_view headers = content.substr(0, end);
  const std::string_view rest = content.substr(end);
  const bool need_date = !has_header(headers, "Date");
  const bool need_id = !has_header(headers, "Message-ID");
  // The body must be separated by an empty line from the header fields above it.
  const bool need_separator = !rest.empty() && !rest.starts_with("\r\n");

  std::string out;
  out.reserve(received.size() + content.size() + 128 + message_id.size());
  out += received;
  out += headers;
  if (!headers.empty() && !headers.ends_with("\r\n")) out += "\r\n";
  if (need_date) {
    out += "Date: ";
    out += format_date(time);
    out += "\r\n";
  }
  if (need_id) {
    out += "Message-ID: ";
    out += message_id;
    out += "\r\n";
  }
  if (need_separator) out += "\r\n";
  out += rest;
  return out;
}

}  // namespace smtp
