// SMTP command parsing and encoding (see command.hpp). The grammar is RFC 5321
// 4.1.1 and 4.1.2 with the MAIL parameters of SIZE (RFC 1870), BODY (RFC 6152),
// SMTPUTF8 (RFC 6531), RET and ENVID and the RCPT parameters NOTIFY and ORCPT
// (RFC 3461); every failure returns the parse_error of its reason.
#include "smtp/command.hpp"

#include <array>
#include <cstddef>
#include <utility>

#include "smtp/address.hpp"
#include "smtp/replies.hpp"
#include "smtp/text.hpp"
#include "smtp/xtext.hpp"

namespace smtp {
namespace {

struct verb_name {
  std::string_view name;
  verb what;
};
constexpr std::array<verb_name, 13> verbs{{
    {"EHLO", verb::ehlo},
    {"HELO", verb::helo},
    {"MAIL", verb::mail},
    {"RCPT", verb::rcpt},
    {"DATA", verb::data},
    {"RSET", verb::rset},
    {"NOOP", verb::noop},
    {"QUIT", verb::quit},
    {"VRFY", verb::vrfy},
    {"HELP", verb::help},
    {"STARTTLS", verb::starttls},
    {"AUTH", verb::auth},
    {"BDAT", verb::bdat},
}};

using text::iequals;
using text::istarts_with;
using text::trim;

bool has_control(std::string_view line) {
  for (char ch : line) {
    const auto c = static_cast<unsigned char>(ch);
    if ((c < 0x20 && c != '\t') || c == 0x7f) return true;
  }
  return false;
}

bool is_alnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

// esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-")
bool is_keyword(std::string_view k) {
  if (k.empty() || !is_alnum(k.front())) return false;
  for (char c : k) {
    if (!is_alnum(c) && c != '-') return false;
  }
  return true;
}

// esmtp-value = 1*(%d33-60 / %d62-126), plus UTF-8 (RFC 6531 3.3)
bool is_value(std::string_view v) {
  if (v.empty()) return false;
  for (char ch : v) {
    const auto c = static_cast<unsigned char>(ch);
    if (c == '=' || c <= 32 || c == 127) return false;
  }
  return true;
}

struct path_parts {
  std::string_view mailbox;  // without "<>" and source route
  std::string_view rest;     // what follows the ">"
};

// Reads "<" [A-d-l ":"] Mailbox ">" (or "<>") at the start of `s`.
std::optional<path_parts> split_path(std::string_view s) {
  if (s.empty() || s.front() != '<') return std::nullopt;
  std::size_t i = 1;
  // Find the closing '>' outside a quoted local part.
  bool quoted = false;
  std::size_t close = std::string_view::npos;
  for (std::size_t k = 1; k < s.size(); ++k) {
    const char c = s[k];
    if (quoted) {
      if (c == '\\') {
        ++k;
      } else if (c == '"') {
        quoted = false;
      }
    } else if (c == '"') {
      quoted = true;
    } else if (c == '>') {
      close = k;
      break;
    }
  }
  if (close == std::string_view::npos || close + 1 > max_path_length) return std::nullopt;
  std::string_view inner = s.substr(i, close - i);
  if (!inner.empty() && inner.front() == '@') {
    // A-d-l = At-domain *( "," At-domain ); each At-domain = "@" Domain.
    const std::size_t colon = inner.find(':');
    if (colon == std::string_view::npos) return std::nullopt;
    std::string_view route = inner.substr(0, colon);
    while (true) {
      const std::size_t comma = route.find(',');
      const std::string_view at_domain = route.substr(0, comma);
      if (at_domain.size() < 2 || at_domain.front() != '@' ||
          !is_valid_domain(at_domain.substr(1), true)) {
        return std::nullopt;
      }
      if (comma == std::string_view::npos) break;
      route.remove_prefix(comma + 1);
    }
    inner.remove_prefix(colon + 1);
    if (inner.empty()) return std::nullopt;
  }
  return path_parts{inner, s.substr(close + 1)};
}

// RFC 3461 4.4 and 4.2: ENVID and ORCPT values as sent, xtext included.
constexpr std::size_t max_envid = 100;
constexpr std::size_t max_orcpt = 500;

// Calls on_param(key, has_value, value) for each SP-separated "KEYWORD[=VALUE]"
// after a path, after checking its syntax; stops at the first error.
template <typename F>
std::expected<void, parse_error> for_each_param(std::string_view rest, F&& on_param) {
  while (true) {
    while (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);
    if (rest.empty()) return {};
    const std::size_t sp = rest.find(' ');
    const std::string_view param = rest.substr(0, sp);
    rest.remove_prefix(sp == std::string_view::npos ? rest.size() : sp);

    const std::size_t eq = param.find('=');
    const std::string_view key = param.substr(0, eq);
    const bool has_value = eq != std::string_view::npos;
    const std::string_view value = has_value ? param.substr(eq + 1) : std::string_view{};
    if (!is_keyword(key) || (has_value && !is_value(value))) {
      return std::unexpected(parse_error::bad_parameter);
    }
    if (auto ok = on_param(key, has_value, value); !ok) return ok;
  }
}

// An xtext value decoded into printable ASCII (RFC 3461 4: the decoded ENVID
// and ORCPT address are graphic characters and spaces).
std::optional<std::string> decode_printable(std::string_view value) {
  auto decoded = xtext::decode(value);
  if (!decoded || decoded->empty()) return std::nullopt;
  for (char c : *decoded) {
    if (c < 0x20 || c > 0x7e) return std::nullopt;
  }
  return decoded;
}

// NOTIFY=NEVER or a comma-separated list of SUCCESS, FAILURE, DELAY, each once.
std::optional<std::uint8_t> parse_notify(std::string_view value) {
  std::uint8_t bits = 0;
  while (true) {
    const std::size_t comma = value.find(',');
    const std::string_view word = value.substr(0, comma);
    std::uint8_t bit = 0;
    if (iequals(word, "NEVER")) bit = notify_never;
    if (iequals(word, "SUCCESS")) bit = notify_success;
    if (iequals(word, "FAILURE")) bit = notify_failure;
    if (iequals(word, "DELAY")) bit = notify_delay;
    if (bit == 0 || (bits & bit) != 0) return std::nullopt;
    bits |= bit;
    if (comma == std::string_view::npos) break;
    value.remove_prefix(comma + 1);
  }
  if ((bits & notify_never) && bits != notify_never) return std::nullopt;
  return bits;
}

// ORCPT=addr-type;xtext, kept as "addr-type;decoded address".
std::optional<std::string> parse_orcpt(std::string_view value) {
  if (value.size() > max_orcpt) return std::nullopt;
  const std::size_t semi = value.find(';');
  if (semi == std::string_view::npos) return std::nullopt;
  const std::string_view type = value.substr(0, semi);
  if (!is_keyword(type)) return std::nullopt;
  const auto address = decode_printable(value.substr(semi + 1));
  if (!address) return std::nullopt;
  return std::string(type) + ";" + *address;
}

std::expected<void, parse_error> parse_mail_params(std::string_view rest, command& cmd) {
  bool seen_size = false;
  bool seen_body = false;
  bool seen_utf8 = false;
  bool seen_ret = false;
  bool seen_envid = false;
  bool seen_requiretls = false;
  const auto bad = std::unexpected(parse_error::bad_parameter);
  return for_each_param(rest, [&](std::string_view key, bool has_value,
                                  std::string_view value) -> std::expected<void, parse_error> {
    if (iequals(key, "SIZE")) {
      // At most 20 digits: the length of UINT64_MAX.
      const auto n = has_value && value.size() <= 20 ? text::parse_decimal(value) : std::nullopt;
      if (seen_size || !n) return bad;
      seen_size = true;
      cmd.size = *n;
    } else if (iequals(key, "BODY")) {
      if (seen_body || !has_value) return bad;
      seen_body = true;
      if (iequals(value, "7BIT")) {
        cmd.body = body_type::seven_bit;
      } else if (iequals(value, "8BITMIME")) {
        cmd.body = body_type::eight_bit_mime;
      } else {
        return bad;
      }
    } else if (iequals(key, "SMTPUTF8")) {
      if (seen_utf8 || has_value) return bad;
      seen_utf8 = true;
      cmd.smtputf8 = true;
    } else if (iequals(key, "REQUIRETLS")) {
      if (seen_requiretls || has_value) return bad;
      seen_requiretls = true;
      cmd.requiretls = true;
    } else if (iequals(key, "RET")) {
      if (seen_ret) return bad;
      seen_ret = true;
      if (iequals(value, "FULL")) {
        cmd.ret = dsn_ret::full;
      } else if (iequals(value, "HDRS")) {
        cmd.ret = dsn_ret::headers;
      } else {
        return bad;
      }
    } else if (iequals(key, "ENVID")) {
      auto envid = value.size() <= max_envid ? decode_printable(value) : std::nullopt;
      if (seen_envid || !envid) return bad;
      seen_envid = true;
      cmd.envid = std::move(*envid);
    } else {
      return std::unexpected(parse_error::unknown_parameter);
    }
    return {};
  });
}

std::expected<void, parse_error> parse_rcpt_params(std::string_view rest, command& cmd) {
  bool seen_notify = false;
  bool seen_orcpt = false;
  const auto bad = std::unexpected(parse_error::bad_parameter);
  return for_each_param(rest, [&](std::string_view key, bool,
                                  std::string_view value) -> std::expected<void, parse_error> {
    if (iequals(key, "NOTIFY")) {
      const auto bits = parse_notify(value);
      if (seen_notify || !bits) return bad;
      seen_notify = true;
      cmd.notify = *bits;
    } else if (iequals(key, "ORCPT")) {
      auto orcpt = parse_orcpt(value);
      if (seen_orcpt || !orcpt) return bad;
      seen_orcpt = true;
      cmd.orcpt = std::move(*orcpt);
    } else {
      return std::unexpected(parse_error::unknown_parameter);
    }
    return {};
  });
}

std::expected<command, parse_error> parse_mail(std::string_view args) {
  if (!istarts_with(args, "FROM:")) return std::unexpected(parse_error::mail_syntax);
  args.remove_prefix(5);
  while (!args.empty() && args.front() == ' ') args.remove_prefix(1);
  if (args.empty() || args.front() != '<') return std::unexpected(parse_error::mail_syntax);
  const auto parts = split_path(args);
  if (!parts) return std::unexpected(parse_error::bad_sender);
  if (!parts->mailbox.empty() && !check_mailbox(parts->mailbox, true)) {
    return std::unexpected(parse_error::bad_sender);
  }
  if (!parts->rest.empty() && parts->rest.front() != ' ') {
    return std::unexpected(parse_error::bad_sender);
  }
  command cmd;
  cmd.what = verb::mail;
  cmd.path = std::string(parts->mailbox);
  if (auto ok = parse_mail_params(parts->rest, cmd); !ok) return std::unexpected(ok.error());
  return cmd;
}

std::expected<command, parse_error> parse_rcpt(std::string_view args) {
  if (!istarts_with(args, "TO:")) return std::unexpected(parse_error::rcpt_syntax);
  args.remove_prefix(3);
  while (!args.empty() && args.front() == ' ') args.remove_prefix(1);
  if (args.empty() || args.front() != '<') return std::unexpected(parse_error::rcpt_syntax);
  const auto parts = split_path(args);
  if (!parts || parts->mailbox.empty()) return std::unexpected(parse_error::bad_recipient);
  if (!iequals(parts->mailbox, "postmaster") && !check_mailbox(parts->mailbox, true)) {
    return std::unexpected(parse_error::bad_recipient);
  }
  if (!parts->rest.empty() && parts->rest.front() != ' ') {
    return std::unexpected(parse_error::bad_recipient);
  }
  command cmd;
  cmd.what = verb::rcpt;
  cmd.path = std::string(parts->mailbox);
  if (auto ok = parse_rcpt_params(parts->rest, cmd); !ok) return std::unexpected(ok.error());
  return cmd;
}

}  // namespace

std::string_view to_string(verb v) {
  for (const auto& entry : verbs) {
    if (entry.what == v) return entry.name;
  }
  return "?";
}

std::string_view to_string(parse_error e) {
  switch (e) {
    case parse_error::unknown_command:
      return "unknown command";
    case parse_error::invalid_characters:
      return "invalid characters";
    case parse_error::no_arguments_allowed:
      return "no arguments allowed";
    case parse_error::missing_argument:
      return "missing argument";
    case parse_error::helo_syntax:
      return "EHLO/HELO syntax";
    case parse_error::mail_syntax:
      return "MAIL syntax";
    case parse_error::rcpt_syntax:
      return "RCPT syntax";
    case parse_error::bad_sender:
      return "bad sender address";
    case parse_error::bad_recipient:
      return "bad recipient address";
    case parse_error::bad_parameter:
      return "bad parameter";
    case parse_error::unknown_parameter:
      return "unknown parameter";
  }
  return "parse error";
}

reply to_reply(parse_error e) {
  switch (e) {
    case parse_error::unknown_command:
      return replies::unknown_command();
    case parse_error::invalid_characters:
      return replies::invalid_characters();
    case parse_error::no_arguments_allowed:
      return replies::no_arguments_allowed();
    case parse_error::missing_argument:
      return replies::missing_argument();
    case parse_error::helo_syntax:
      return replies::helo_syntax();
    case parse_error::mail_syntax:
      return replies::mail_syntax();
    case parse_error::rcpt_syntax:
      return replies::rcpt_syntax();
    case parse_error::bad_sender:
      return replies::bad_sender_syntax();
    case parse_error::bad_recipient:
      return replies::bad_recipient_syntax();
    case parse_error::bad_parameter:
      return replies::bad_parameter();
    case parse_error::unknown_parameter:
      return replies::unknown_parameter();
  }
  return replies::unknown_command();
}

namespace {

// "SUCCESS,FAILURE,DELAY" (in this order) or "NEVER".
std::string notify_list(std::uint8_t bits) {
  if (bits & notify_never) return "NEVER";
  std::string out;
  const auto add = [&](std::uint8_t bit, std::string_view word) {
    if (!(bits & bit)) return;
    if (!out.empty()) out += ',';
    out += word;
  };
  add(notify_success, "SUCCESS");
  add(notify_failure, "FAILURE");
  add(notify_delay, "DELAY");
  return out;
}

// "addr-type;address" as sent: the address xtext encoded ("rfc822" when the
// stored value has no type).
std::string encode_orcpt(std::string_view orcpt) {
  const std::size_t semi = orcpt.find(';');
  if (semi == std::string_view::npos) return "rfc822;" + xtext::encode(orcpt);
  return std::string(orcpt.substr(0, semi + 1)) + xtext::encode(orcpt.substr(semi + 1));
}

}  // namespace

std::expected<command, parse_error> command::parse(std::string_view line) {
  if (has_control(line)) return std::unexpected(parse_error::invalid_characters);
  line = trim(line);
  const std::size_t sp = line.find(' ');
  const std::string_view name = line.substr(0, sp);
  const std::string_view args =
      sp == std::string_view::npos ? std::string_view{} : trim(line.substr(sp + 1));

  const verb_name* found = nullptr;
  for (const auto& entry : verbs) {
    if (iequals(name, entry.name)) found = &entry;
  }
  if (found == nullptr) return std::unexpected(parse_error::unknown_command);

  command cmd;
  cmd.what = found->what;
  switch (cmd.what) {
    case verb::ehlo:
    case verb::helo:
      if (args.empty()) return std::unexpected(parse_error::helo_syntax);
      cmd.argument = std::string(args);
      return cmd;
    case verb::mail:
      return parse_mail(args);
    case verb::rcpt:
      return parse_rcpt(args);
    case verb::data:
    case verb::rset:
    case verb::quit:
      if (!args.empty()) return std::unexpected(parse_error::no_arguments_allowed);
      return cmd;
    case verb::vrfy:
      if (args.empty()) return std::unexpected(parse_error::missing_argument);
      cmd.argument = std::string(args);
      return cmd;
    case verb::noop:
    case verb::help:
    case verb::starttls:
    case verb::auth:
    case verb::bdat:
      cmd.argument = std::string(args);
      return cmd;
  }
  return std::unexpected(parse_error::unknown_command);
}

std::string command::encode() const {
  std::string out(to_string(what));
  switch (what) {
    case verb::mail:
      out += " FROM:<";
      out += path;
      out += '>';
      if (size) out += " SIZE=" + std::to_string(*size);
      if (body) out += *body == body_type::eight_bit_mime ? " BODY=8BITMIME" : " BODY=7BIT";
      if (smtputf8) out += " SMTPUTF8";
      if (requiretls) out += " REQUIRETLS";
      if (ret != dsn_ret::unspecified) out += ret == dsn_ret::full ? " RET=FULL" : " RET=HDRS";
      if (!envid.empty()) out += " ENVID=" + xtext::encode(envid);
      break;
    case verb::rcpt:
      out += " TO:<";
      out += path;
      out += '>';
      if (notify != 0) out += " NOTIFY=" + notify_list(notify);
      if (!orcpt.empty()) out += " ORCPT=" + encode_orcpt(orcpt);
      break;
    case verb::data:
    case verb::rset:
    case verb::quit:
      break;
    default:
      if (!argument.empty()) {
        out += ' ';
        out += argument;
      }
      break;
  }
  out += "\r\n";
  return out;
}

std::optional<std::string> qualify_local_part(std::string_view line, std::string_view domain) {
  const std::size_t open = line.find('<');
  if (open == std::string_view::npos || domain.empty()) return std::nullopt;
  // "MAIL FROM:" or "RCPT TO:" before the path, spaced as parse() accepts it.
  const std::string_view head = trim(line.substr(0, open));
  const std::size_t sp = head.find(' ');
  if (sp == std::string_view::npos) return std::nullopt;
  const std::string_view name = head.substr(0, sp);
  const std::string_view keyword = trim(head.substr(sp + 1));
  if (!(iequals(name, "MAIL") && iequals(keyword, "FROM:")) &&
      !(iequals(name, "RCPT") && iequals(keyword, "TO:"))) {
    return std::nullopt;
  }
  const auto parts = split_path(line.substr(open));
  if (!parts || parts->mailbox.empty()) return std::nullopt;
  const auto bare = check_mailbox(parts->mailbox, true);
  if (bare || bare.error() != address_error::missing_domain) return std::nullopt;
  std::string mailbox(parts->mailbox);
  mailbox += '@';
  mailbox += domain;
  if (!check_mailbox(mailbox, true)) return std::nullopt;
  std::string out(line.substr(0, open));
  out += '<';
  out += mailbox;
  out += '>';
  out += parts->rest;
  return out;
}

}  // namespace smtp
