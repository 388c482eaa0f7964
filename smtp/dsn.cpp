// Composition of delivery status notifications (see dsn.hpp). Outside text goes
// through one cleaner (control characters out, 8-bit octets kept only as UTF-8)
// and then one folder (fields) or wrapper (the text part), so no line exceeds 998
// octets whatever comes in. The MIME boundary is checked against every part.
#include "smtp/dsn.hpp"

#include <algorithm>
#include <cstddef>

#include "smtp/message.hpp"

namespace smtp {
namespace {

constexpr std::size_t max_line = 998;       // octets before CRLF (RFC 5322 2.1.1)
constexpr std::size_t fold_at = 78;         // where fields and text prefer to break
constexpr std::size_t max_text = 8 * 1024;  // of one reply, explanation or address
constexpr std::size_t max_header_block = 64 * 1024;
constexpr std::size_t max_host = 255;
constexpr std::size_t max_boundary_id = 24;               // keeps the boundary under 70 octets
constexpr std::string_view replacement = "\xEF\xBF\xBD";  // U+FFFD
constexpr std::int64_t max_date = 253402300799;           // 9999-12-31T23:59:59Z

std::string date(std::int64_t t) {
  return format_date(std::clamp<std::int64_t>(t, 0, max_date));
}

bool is_ascii(std::string_view s) {
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return static_cast<unsigned char>(c) < 0x80; });
}

bool is_alnum(char c) {
  return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

// Decodes the UTF-8 sequence at s[i] and moves i past it. An ill-formed one
// (overlong, surrogate, beyond U+10FFFF, cut short) gives -1 and skips one octet.
std::int32_t next_code_point(std::string_view s, std::size_t& i) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  if (b0 < 0x80) {
    ++i;
    return b0;
  }
  std::size_t len = 0;
  std::int32_t cp = 0;
  std::int32_t min = 0;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    len = 2, cp = b0 & 0x1F, min = 0x80;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    len = 3, cp = b0 & 0x0F, min = 0x800;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    len = 4, cp = b0 & 0x07, min = 0x10000;
  } else {
    ++i;
    return -1;
  }
  if (s.size() - i < len) {
    ++i;
    return -1;
  }
  for (std::size_t k = 1; k < len; ++k) {
    const auto b = static_cast<unsigned char>(s[i + k]);
    if ((b & 0xC0) != 0x80) {
      ++i;
      return -1;
    }
    cp = (cp << 6) | (b & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
    ++i;
    return -1;
  }
  i += len;
  return cp;
}

// Outside text made fit for one field or paragraph: control characters (CR and
// LF among them) and runs of white space become one space, the ends are trimmed,
// and 8-bit octets stay only as well-formed UTF-8 (else U+FFFD) or, with `ascii`,
// become '?'. At most `cap` octets are kept.
std::string clean(std::string_view s, bool ascii, std::size_t cap = max_text) {
  std::string out;
  bool space = false;
  std::size_t i = 0;
  while (i < s.size()) {
    const std::size_t start = i;
    const std::int32_t cp = next_code_point(s, i);
    std::string_view piece;
    if (cp < 0) {
      piece = ascii ? "?" : replacement;
    } else if (cp <= 0x20 || cp == 0x7F || (cp >= 0x80 && cp <= 0x9F)) {
      space = !out.empty();
      continue;
    } else if (cp >= 0x80 && ascii) {
      piece = "?";
    } else {
      piece = s.substr(start, i - start);
    }
    if (out.size() + (space ? 1 : 0) + piece.size() > cap) break;
    if (space) out += ' ';
    space = false;
    out += piece;
  }
  return out;
}

// A host name or address for Reporting-MTA and Remote-MTA: letters, digits and
// ". - _ :" only.
std::string host_name(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (out.size() == max_host) break;
    if (is_alnum(c) || c == '.' || c == '-' || c == '_' || c == ':') out += c;
  }
  return out;
}

// Octets of s to take so that no more than n (>= 1) are taken and, where it can
// be helped, no UTF-8 sequence is split. At least one.
std::size_t utf8_prefix(std::string_view s, std::size_t n) {
  if (n >= s.size()) return s.size();
  std::size_t k = n;
  while (k > 0 && (static_cast<unsigned char>(s[k]) & 0xC0) == 0x80) --k;
  return k > 0 ? k : std::max<std::size_t>(n, 1);
}

// Calls f(word) for each space-separated word of s.
template <typename F>
void for_each_word(std::string_view s, F&& f) {
  while (!s.empty()) {
    const std::size_t sp = s.find(' ');
    const std::string_view word = s.substr(0, sp);
    s = sp == std::string_view::npos ? std::string_view() : s.substr(sp + 1);
    if (!word.empty()) f(word);
  }
}

// "Name: value" CRLF, folded before spaces (RFC 5322 2.2.3) into lines of about
// 78 octets; a word too long for any line is cut so that none exceeds 998.
// `value` comes from clean(): single spaces, no control characters.
void append_field(std::string& out, std::string_view name, std::string_view value) {
  out += name;
  out += ':';
  std::size_t line = name.size() + 1;
  bool words = false;  // the current line holds part of the value
  for_each_word(value, [&](std::string_view word) {
    if (words && line + 1 + word.size() > fold_at) {
      out += "\r\n";
      line = 0;
    }
    out += ' ';
    ++line;
    words = true;
    while (line + word.size() > max_line) {
      const std::size_t n = utf8_prefix(word, max_line - line);
      out += word.substr(0, n);
      out += "\r\n ";
      line = 1;
      word.remove_prefix(n);
    }
    out += word;
    line += word.size();
  });
  out += "\r\n";
}

// `text` (from clean()) as CRLF lines that start with `indent`, broken before
// spaces at about 78 octets and never beyond 998.
void append_wrapped(std::string& out, std::string_view indent, std::string_view text) {
  std::size_t line = 0;
  bool words = false;
  for_each_word(text, [&](std::string_view word) {
    if (words && line + 1 + word.size() <= fold_at) {
      out += ' ';
      ++line;
    } else {
      if (words) out += "\r\n";
      out += indent;
      line = indent.size();
    }
    words = true;
    while (line + word.size() > max_line) {
      const std::size_t n = utf8_prefix(word, max_line - line);
      out += word.substr(0, n);
      out += "\r\n";
      out += indent;
      line = indent.size();
      word.remove_prefix(n);
    }
    out += word;
    line += word.size();
  });
  if (words) out += "\r\n";
}

void append_hex(std::string& out, std::uint64_t v, std::size_t min_digits) {
  static constexpr char digits[] = "0123456789ABCDEF";
  std::string s;
  do {
    s.insert(s.begin(), digits[v & 0xF]);
    v >>= 4;
  } while (v != 0 || s.size() < min_digits);
  out += s;
}

// RFC 3464 address-type "; " address: "rfc822; a@b" when it is ASCII, else the
// utf-8-addr-xtext of RFC 6533 3, "utf-8; j\x{F6}rg@b", which keeps the
// delivery-status part 7-bit: '\', '+', '=', space and non-ASCII characters go
// as \x{HEXPOINT}, upper-case hex without leading zeros.
std::string typed_address(std::string_view address) {
  const std::string a = clean(address, false);
  if (is_ascii(a)) return "rfc822; " + a;
  std::string out = "utf-8; ";
  std::size_t i = 0;
  while (i < a.size()) {
    std::int32_t cp = next_code_point(a, i);
    if (cp < 0) cp = 0xFFFD;  // clean() left none
    if (cp > 0x20 && cp < 0x7F && cp != '\\' && cp != '+' && cp != '=') {
      out += static_cast<char>(cp);
    } else {
      out += "\\x{";
      append_hex(out, static_cast<std::uint64_t>(cp), 1);
      out += '}';
    }
  }
  return out;
}

// s from `pos` on, without leading spaces.
std::string_view text_after(std::string_view s, std::size_t pos) {
  s.remove_prefix(pos);
  while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
  return s;
}

// RFC 3463 3.1: class "." subject "." detail, class 2, 4 or 5, one to three
// digits each.
bool valid_status(std::string_view s) {
  if (s.size() < 5 || (s[0] != '2' && s[0] != '4' && s[0] != '5') || s[1] != '.') return false;
  std::size_t i = 2;
  for (int part = 0; part < 2; ++part) {
    std::size_t digits = 0;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') ++i, ++digits;
    if (digits == 0 || digits > 3) return false;
    if (part == 0) {
      if (i == s.size() || s[i] != '.') return false;
      ++i;
    }
  }
  return i == s.size();
}

std::string status_of(const dsn_recipient& r) {
  if (valid_status(r.status)) return r.status;
  switch (r.action) {
    case dsn_action::failed:
      return "5.0.0";
    case dsn_action::delayed:
      return "4.0.0";
    case dsn_action::relayed:
      break;
  }
  return "2.0.0";
}

std::string_view action_name(dsn_action a) {
  switch (a) {
    case dsn_action::failed:
      return "failed";
    case dsn_action::delayed:
      return "delayed";
    case dsn_action::relayed:
      break;
  }
  return "relayed";
}

// ORCPT "type;address" as RFC 3464 2.3.1 writes it: "rfc822; address". 7-bit:
// the parser admits printable ASCII only, anything else becomes '?'.
std::string original_recipient(std::string_view orcpt) {
  const std::string v = clean(orcpt, true);
  const std::size_t semi = v.find(';');
  if (semi == std::string::npos) return "rfc822; " + v;
  return v.substr(0, semi) + "; " + std::string(text_after(v, semi + 1));
}

// Calls f(line) for each line of s, without its end: CRLF, a bare LF or a bare
// CR. Stops when f returns false.
template <typename F>
void for_each_line(std::string_view s, F&& f) {
  std::size_t pos = 0;
  while (pos < s.size()) {
    const std::size_t end = s.find_first_of("\r\n", pos);
    if (end == std::string_view::npos) {
      f(s.substr(pos));
      return;
    }
    if (!f(s.substr(pos, end - pos))) return;
    pos = end + (s[end] == '\r' && end + 1 < s.size() && s[end + 1] == '\n' ? 2 : 1);
  }
}

// One line of the original with CRLF, NUL octets as spaces, cut into pieces of
// at most 998 octets: in the header block the pieces continue the field (CRLF
// SP), in the body they become lines of their own.
void append_original_line(std::string& out, std::string_view line, bool header) {
  const std::string_view next_piece = header ? "\r\n " : "\r\n";
  std::size_t room = max_line;
  while (true) {
    const std::size_t n = utf8_prefix(line, room);
    for (char c : line.substr(0, n)) out += c == '\0' ? ' ' : c;
    line.remove_prefix(n);
    if (line.empty()) break;
    out += next_piece;
    room = max_line - (next_piece.size() - 2);
  }
  out += "\r\n";
}

struct mime_part {
  std::string type;
  std::string content;
  bool eight_bit = false;
};

// The original as the third part: its header block (up to the first empty line,
// cut at a line boundary to 64 KiB) or, with the body, all of it.
mime_part original_part(std::string_view original, bool include_body) {
  mime_part part;
  bool in_header = true;
  bool header_eight_bit = false;
  std::string piece;
  for_each_line(original, [&](std::string_view line) {
    if (in_header && line.empty()) {
      if (!include_body) return false;
      in_header = false;
      part.content += "\r\n";
      return true;
    }
    piece.clear();
    append_original_line(piece, line, in_header);
    if (in_header && !include_body && part.content.size() + piece.size() > max_header_block) {
      return false;
    }
    if (in_header && !is_ascii(line)) header_eight_bit = true;
    part.content += piece;
    return true;
  });
  if (include_body) {
    part.type = header_eight_bit ? "message/global" : "message/rfc822";
  } else {
    part.type = header_eight_bit ? "message/global-headers" : "text/rfc822-headers";
  }
  part.eight_bit = !is_ascii(part.content);
  return part;
}

// The human-readable part: who writes, what happened, then each recipient with
// its explanation (and, when delayed, until when relayd keeps trying).
mime_part text_part(const dsn_request& request, std::string_view host) {
  mime_part part;
  part.type = "text/plain; charset=utf-8";
  std::string& out = part.content;
  append_wrapped(out, "", "This is the mail delivery system at " + std::string(host) + ".");
  const auto list = [&](dsn_action action, std::string_view intro) {
    bool first = true;
    for (const dsn_recipient& r : request.recipients) {
      if (r.action != action) continue;
      if (first) {
        out += "\r\n";
        append_wrapped(out, "", intro);
        first = false;
      }
      out += "\r\n";
      append_wrapped(out, "", "<" + clean(r.address, false) + ">");
      std::string why = clean(r.explanation, false);
      if (why.empty()) why = clean(r.diagnostic, false);
      if (why.empty()) why = "delivery status " + status_of(r);
      append_wrapped(out, "    ", why);
      if (action == dsn_action::delayed && r.will_retry_until != 0) {
        append_wrapped(out, "    ", "Still being retried until " + date(r.will_retry_until) + ".");
      }
    }
  };
  const std::string_view attached =
      request.redacted ? "Your message is not attached: it was sent with REQUIRETLS, and this "
                         "notice may travel without TLS."
      : request.include_body ? "Your message is attached."
                             : "The headers of your message are attached.";
  list(dsn_action::failed,
       "Your message could not be delivered to the recipients below, and the mail system has "
       "given up. " +
           std::string(attached));
  list(dsn_action::delayed,
       "Your message has not been delivered yet to the recipients below. The mail system is "
       "still trying, so you need not send it again; it will tell you if it gives up.");
  list(dsn_action::relayed,
       "Your message was relayed to the recipients below, as you asked to be told. The next "
       "mail system does not report delivery status, so this is the last notice you will "
       "get about them. " +
           std::string(attached));
  part.eight_bit = !is_ascii(out);
  return part;
}

// The machine-readable part (RFC 3464 2.2, 2.3): per-message fields, then one
// group of per-recipient fields each, groups separated by empty lines. 7-bit.
mime_part status_part(const dsn_request& request, std::string_view host) {
  mime_part part;
  part.type = "message/delivery-status";
  std::string& out = part.content;
  const std::string envid = clean(request.envelope_id, true);
  if (!envid.empty()) append_field(out, "Original-Envelope-Id", envid);  // RFC 3464 2.2.1
  append_field(out, "Reporting-MTA", "dns; " + std::string(host));
  const std::string id = clean(request.queue_id, true, 256);
  if (!id.empty()) append_field(out, "X-Relayd-Queue-ID", id);
  if (request.arrival != 0) append_field(out, "Arrival-Date", date(request.arrival));
  for (const dsn_recipient& r : request.recipients) {
    out += "\r\n";
    if (!r.original_recipient.empty())
      append_field(out, "Original-Recipient", original_recipient(r.original_recipient));
    append_field(out, "Final-Recipient", typed_address(r.address));
    append_field(out, "Action", action_name(r.action));
    append_field(out, "Status", status_of(r));
    const std::string remote = host_name(r.remote_mta);
    if (!remote.empty()) append_field(out, "Remote-MTA", "dns; " + remote);
    const std::string diagnostic = clean(r.diagnostic, true);
    if (!diagnostic.empty()) append_field(out, "Diagnostic-Code", "smtp; " + diagnostic);
    if (r.last_attempt != 0) append_field(out, "Last-Attempt-Date", date(r.last_attempt));
    if (r.action == dsn_action::delayed && r.will_retry_until != 0) {
      append_field(out, "Will-Retry-Until", date(r.will_retry_until));
    }
  }
  return part;
}

bool contains(const std::vector<const mime_part*>& parts, std::string_view s) {
  return std::any_of(parts.begin(), parts.end(),
                     [&](const mime_part* p) { return p->content.find(s) != std::string::npos; });
}

// FNV-1a over the parts: salts the boundary after a collision, so that content
// cannot be written in advance to collide with every candidate.
std::uint64_t content_hash(const std::vector<const mime_part*>& parts) {
  std::uint64_t h = 0xcbf29ce484222325ULL;
  for (const mime_part* p : parts) {
    for (char c : p->content) {
      h ^= static_cast<unsigned char>(c);
      h *= 0x100000001b3ULL;
    }
  }
  return h;
}

// "=_ID.N" ("=_ID.N.HASH" after the first try) that occurs in no part. "=_"
// cannot occur in quoted-printable or base64 text, so the first try nearly
// always fits.
std::string pick_boundary(std::string_view queue_id, const std::vector<const mime_part*>& parts) {
  std::string id;
  for (char c : queue_id) {
    if (id.size() == max_boundary_id) break;
    if (is_alnum(c)) id += c;
  }
  std::uint64_t hash = 0;
  for (std::uint64_t n = 0;; ++n) {
    std::string b = "=_" + id + "." + std::to_string(n);
    if (n > 0) {
      if (n == 1) hash = content_hash(parts);
      b += '.';
      append_hex(b, hash + n, 16);
    }
    if (!contains(parts, b)) return b;
  }
}

void append_part(std::string& out, std::string_view boundary, std::string_view description,
                 const mime_part& part) {
  out += "\r\n--";
  out += boundary;
  out += "\r\n";
  append_field(out, "Content-Description", description);
  append_field(out, "Content-Type", part.type);
  if (part.eight_bit) append_field(out, "Content-Transfer-Encoding", "8bit");
  out += "\r\n";
  out += part.content;
}

}  // namespace

std::string compose_dsn(const dsn_request& request) {
  std::string host = host_name(request.reporting_mta);
  if (host.empty()) host = "localhost";
  const auto any = [&](dsn_action a) {
    return std::any_of(request.recipients.begin(), request.recipients.end(),
                       [a](const dsn_recipient& r) { return r.action == a; });
  };
  const bool failed = request.recipients.empty() || any(dsn_action::failed);
  const std::string_view subject = failed                       ? "Undelivered Mail Returned to Sender"
                                   : any(dsn_action::delayed) ? "Delayed Mail (still being retried)"
                                                              : "Relayed Mail Delivery Report";

  const mime_part text = text_part(request, host);
  const mime_part status = status_part(request, host);
  const mime_part original = request.redacted ? mime_part{}
                                              : original_part(request.original, request.include_body);
  const std::string boundary = pick_boundary(request.queue_id, {&text, &status, &original});

  std::string out;
  out.reserve(text.content.size() + status.content.size() + original.content.size() + 1024);
  append_field(out, "From", "Mail Delivery System <MAILER-DAEMON@" + host + ">");
  append_field(out, "To", "<" + clean(request.original_sender, false) + ">");
  append_field(out, "Subject", subject);
  append_field(out, "Date", date(request.now));
  const std::string message_id = clean(request.message_id, true);
  if (!message_id.empty()) append_field(out, "Message-ID", message_id);
  append_field(out, "Auto-Submitted", "auto-replied");  // RFC 3834 5
  append_field(out, "MIME-Version", "1.0");
  append_field(out, "Content-Type",
               "multipart/report; report-type=delivery-status; boundary=\"" + boundary + "\"");
  if (text.eight_bit || original.eight_bit) {
    append_field(out, "Content-Transfer-Encoding", "8bit");
  }
  out += "\r\nThis is a MIME-encapsulated message.\r\n";
  append_part(out, boundary, "Notification", text);
  append_part(out, boundary, "Delivery report", status);
  if (!request.redacted)
    append_part(out, boundary,
                request.include_body ? "Original message" : "Headers of the original message",
                original);
  out += "\r\n--";
  out += boundary;
  out += "--\r\n";
  return out;
}

}  // namespace smtp
