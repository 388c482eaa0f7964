// Implements sendmail_message.hpp: a byte-at-a-time line assembler for stdin,
// an RFC 5322 address-list scanner (quotes, comments, angle addresses, groups)
// and the header fix-ups, reusing smtp/message for the header block, Date: and
// the header test. Pure functions; bad input is left alone or skipped.
#include "cli/sendmail_message.hpp"

#include <algorithm>
#include <cctype>

#include "smtp/address.hpp"
#include "smtp/message.hpp"
#include "smtp/text.hpp"

namespace sendmail {
namespace {

using smtp::text::iequals;

bool is_wsp(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

// One header field of the block: [start, end) including its folded lines and
// final CRLF; `name` without the colon.
struct field {
  std::size_t start, end;
  std::string_view name;
  std::string_view value;  // after the colon, up to `end`
};

std::vector<field> header_fields(std::string_view msg) {
  std::vector<field> out;
  const std::size_t block = smtp::header_block_end(msg);
  std::size_t pos = 0;
  while (pos < block) {
    std::size_t end = pos;
    do {  // this line, then every continuation line (starting with SP or HT)
      auto nl = msg.find('\n', end);
      end = nl == std::string_view::npos || nl + 1 > block ? block : nl + 1;
    } while (end < block && (msg[end] == ' ' || msg[end] == '\t'));
    std::string_view text = msg.substr(pos, end - pos);
    auto colon = text.find(':');
    if (colon != std::string_view::npos) {
      std::string_view name = text.substr(0, colon);
      while (!name.empty() && (name.back() == ' ' || name.back() == '\t')) name.remove_suffix(1);
      out.push_back({pos, end, name, text.substr(colon + 1)});
    }
    pos = end;
  }
  return out;
}

// An element of an address list once its comments are gone: the text outside
// angle brackets and the text inside them (the address, when present).
struct element {
  std::string outside, inside;
  bool angle_open = false;  // between < and >
  bool angle = false;       // an angle address was seen: it is the address
};

void finish_element(element& e, std::vector<std::string>& out) {
  std::string addr;
  if (e.angle) {
    addr = e.inside;
    // An obsolete source route "@a,@b:user@x" is dropped (RFC 5322 4.4).
    if (!addr.empty() && addr[0] == '@') {
      auto colon = addr.find(':');
      addr = colon == std::string::npos ? std::string() : addr.substr(colon + 1);
    }
  } else {
    addr = e.outside;
  }
  // Folding whitespace around the parts of an addr-spec is not part of it
  // (quoted strings keep theirs: they were copied with their quotes).
  std::string compact;
  bool quoted = false;
  for (std::size_t i = 0; i < addr.size(); ++i) {
    char c = addr[i];
    if (c == '\\' && quoted && i + 1 < addr.size()) {
      compact += c;
      compact += addr[++i];
      continue;
    }
    if (c == '"') quoted = !quoted;
    if (!quoted && is_wsp(c)) continue;
    compact += c;
  }
  if (!compact.empty()) out.push_back(std::move(compact));
  e = element{};
}

std::string quoted_string(std::string_view name) {
  std::string q = "\"";
  for (char c : name) {
    if (c == '"' || c == '\\') q += '\\';
    if (c == '\r' || c == '\n') c = ' ';
    q += c;
  }
  return q + "\"";
}

}  // namespace

// ---- input_reader -----------------------------------------------------------

void input_reader::end_line() {
  if (!ignore_dots_ && line_ == ".") {
    ended_ = true;
    line_.clear();
    return;
  }
  out_ += line_;
  out_ += "\r\n";
  line_.clear();
}

bool input_reader::put(std::string_view chunk) {
  for (char c : chunk) {
    if (ended_) return false;
    if (pending_cr_) {
      pending_cr_ = false;
      if (c == '\n') continue;  // the LF of a CRLF already ended the line
    }
    if (c == '\r') {
      end_line();
      pending_cr_ = true;
    } else if (c == '\n') {
      end_line();
    } else {
      line_ += c;
    }
  }
  return !ended_;
}

void input_reader::finish() {
  if (ended_) return;
  if (!line_.empty()) end_line();
}

// ---- addresses --------------------------------------------------------------

std::vector<std::string> parse_address_list(std::string_view v) {
  std::vector<std::string> out;
  element e;
  bool quoted = false;
  int comment = 0;  // nesting depth of ( )
  for (std::size_t i = 0; i < v.size(); ++i) {
    const char c = v[i];
    if (comment > 0) {
      if (c == '\\') ++i;
      else if (c == '(') ++comment;
      else if (c == ')') --comment;
      continue;
    }
    std::string& sink = e.angle_open ? e.inside : e.outside;
    if (quoted) {
      sink += c;
      if (c == '\\' && i + 1 < v.size()) sink += v[++i];
      else if (c == '"') quoted = false;
      continue;
    }
    switch (c) {
      case '"':
        quoted = true;
        sink += c;
        break;
      case '(':
        comment = 1;
        sink += ' ';
        break;
      case '<':  // what came before was a display name
        e.angle_open = true;
        e.inside.clear();
        break;
      case '>':  // the address is complete; text after it is ignored
        e.angle_open = false;
        e.angle = true;
        break;
      case ':':
        if (e.angle_open) sink += c;  // a source route inside <...>
        else e = element{};           // a group's display name
        break;
      case ',':
      case ';':
        if (e.angle_open) sink += c;  // a source route's list
        else finish_element(e, out);
        break;
      default:
        sink += c;
    }
  }
  finish_element(e, out);
  return out;
}

std::string qualify(std::string_view address, std::string_view domain) {
  if (address.size() >= 2 && address.front() == '<' && address.back() == '>')
    address = address.substr(1, address.size() - 2);
  std::string a(address);
  if (a.empty() || a.find('@') != std::string::npos || domain.empty()) return a;
  return a + "@" + std::string(domain);
}

std::expected<void, std::string> check_address(std::string_view address) {
  auto ok = smtp::check_mailbox(address, false);
  if (ok) return {};
  return std::unexpected("bad address <" + std::string(address) + ">: " +
                         std::string(smtp::to_string(ok.error())));
}

bool has_8bit(std::string_view content) {
  return std::any_of(content.begin(), content.end(),
                     [](char c) { return static_cast<unsigned char>(c) >= 0x80; });
}

std::string from_field(std::string_view full_name, std::string_view address) {
  std::string addr = address.empty() ? "<>" : "<" + std::string(address) + ">";
  if (full_name.empty()) return "From: " + addr + "\r\n";
  // RFC 5322 atext plus spaces may go bare; anything else is quoted.
  const bool plain = std::all_of(full_name.begin(), full_name.end(), [](unsigned char c) {
    return std::isalnum(c) || c == ' ' || c >= 0x80 ||
           std::string_view("!#$%&'*+-/=?^_`{|}~").find(static_cast<char>(c)) !=
               std::string_view::npos;
  });
  std::string name = plain ? std::string(full_name) : quoted_string(full_name);
  return "From: " + name + " " + addr + "\r\n";
}

// ---- the header fix-ups -----------------------------------------------------

prepared_message prepare_message(std::string content, const header_fixes& fixes) {
  prepared_message out;
  auto fields = header_fields(content);
  if (fixes.extract_recipients) {
    for (const auto& f : fields)
      if (iequals(f.name, "To") || iequals(f.name, "Cc") || iequals(f.name, "Bcc"))
        for (auto& a : parse_address_list(f.value)) out.header_recipients.push_back(std::move(a));
  }
  // Bcc: never leaves with the message (with or without -t, as sendmail does).
  for (auto it = fields.rbegin(); it != fields.rend(); ++it)
    if (iequals(it->name, "Bcc")) content.erase(it->start, it->end - it->start);

  std::string added;
  if (!smtp::has_header(content, "From")) added += from_field(fixes.full_name, fixes.from_address);
  if (!smtp::has_header(content, "Date")) added += "Date: " + smtp::format_date(fixes.now) + "\r\n";
  if (!smtp::has_header(content, "Message-ID")) added += "Message-ID: " + fixes.message_id + "\r\n";
  if (!added.empty()) {
    const std::size_t end = smtp::header_block_end(content);
    // Without an empty line after the header block, the body would start right
    // after the added fields: give it its separator.
    const bool separated = std::string_view(content).substr(end).starts_with("\r\n");
    const bool body_follows = end < content.size();
    if (body_follows && !separated) added += "\r\n";
    content.insert(end, added);
  }
  out.content = std::move(content);
  return out;
}

}  // namespace sendmail
