// One SMTP command type for both sides of the wire: parse() turns a command line
// (without its CRLF) into a command or a parse_error, encode() writes the
// canonical CRLF-terminated form. A parse_error names one reason, and each reason
// maps to exactly one reply (to_reply). Parsing never throws on any input.
//
// Choices: verbs are case-insensitive; "MAIL FROM:" and "RCPT TO:" may be followed
// by spaces before the "<"; a source route ("<@a,@b:user@c>") is accepted,
// checked and dropped (RFC 5321 4.1.1.3, C.); a mailbox without angle brackets is
// refused; RCPT TO:<Postmaster> without domain parses (the session decides).
// The DSN parameters (RFC 3461) are checked here: RET=FULL|HDRS and ENVID on
// MAIL, NOTIFY (NEVER alone, or a list of SUCCESS, FAILURE, DELAY) and ORCPT
// ("addr-type;xtext") on RCPT; ENVID and ORCPT must be strict xtext (xtext.hpp)
// of printable ASCII, at most 100 and 500 characters as sent. A malformed,
// duplicated or invalid one is bad_parameter (501 5.5.4). REQUIRETLS (RFC 8689 3)
// on MAIL takes no value; whether the session offers it is the session's business.
#pragma once

#include <cstdint>
#include <expected>
#include <optional>
#include <string>
#include <string_view>

#include "smtp/envelope.hpp"
#include "smtp/reply.hpp"

namespace smtp {

enum class verb : std::uint8_t {
  ehlo,
  helo,
  mail,
  rcpt,
  data,
  rset,
  noop,
  quit,
  vrfy,
  help,
  // Recognised; relayd answers 502 5.5.1 to these for now.
  starttls,
  auth,
  bdat,
};
std::string_view to_string(verb v);  // "EHLO", ...

enum class parse_error : std::uint8_t {
  unknown_command,       // 500 5.5.1 (also an empty line)
  invalid_characters,    // 500 5.5.2: NUL, CR, LF or another control character
  no_arguments_allowed,  // 501 5.5.4: DATA, RSET, QUIT with an argument
  missing_argument,      // 501 5.5.4: VRFY without an argument
  helo_syntax,           // 501 5.5.4: EHLO/HELO without a hostname
  mail_syntax,           // 501 5.5.4: not "MAIL FROM:<...>"
  rcpt_syntax,           // 501 5.5.4: not "RCPT TO:<...>"
  bad_sender,            // 501 5.1.7: the reverse-path is not a valid address
  bad_recipient,         // 501 5.1.3: the forward-path is not a valid address
  bad_parameter,         // 501 5.5.4: malformed, duplicated or invalid parameter value
  unknown_parameter,     // 555 5.5.4: a parameter relayd does not support
};
std::string_view to_string(parse_error e);
reply to_reply(parse_error e);

struct command {
  verb what = verb::noop;
  // EHLO/HELO: the client's name; NOOP/HELP/VRFY/AUTH/BDAT/STARTTLS: the argument
  // as given (trailing spaces removed); empty otherwise.
  std::string argument;
  // MAIL/RCPT: the mailbox without "<>" or source route; "" is the null sender.
  std::string path;
  // MAIL parameters (RFC 1870, RFC 6152, RFC 6531).
  std::optional<std::uint64_t> size;
  std::optional<body_type> body;
  bool smtputf8 = false;
  bool requiretls = false;  // MAIL ... REQUIRETLS (RFC 8689)
  // DSN parameters (RFC 3461), xtext decoded. MAIL: RET and ENVID ("" when
  // absent). RCPT: NOTIFY as smtp::notify_bits (0 when absent) and ORCPT as
  // "addr-type;address", e.g. "rfc822;user@example.org" ("" when absent).
  dsn_ret ret = dsn_ret::unspecified;
  std::string envid;
  std::uint8_t notify = 0;
  std::string orcpt;

  static std::expected<command, parse_error> parse(std::string_view line);
  // "MAIL FROM:<a@b> SIZE=10 BODY=8BITMIME SMTPUTF8 REQUIRETLS RET=HDRS ENVID=x\r\n",
  // "RCPT TO:<c@d> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;c+2Bx@d\r\n", ... (ENVID
  // and ORCPT xtext encoded), so that parse(encode()) gives the command back.
  std::string encode() const;

  bool operator==(const command&) const = default;
};

// Local submission (session_options::qualify_domain): `line` with the bare
// local part given as the path of MAIL FROM or RCPT TO ("<root>") rewritten as
// "<root@domain>", parameters kept; nullopt when the line is not such a command
// or its path has a domain, is "<>", or would not be valid with the domain.
std::optional<std::string> qualify_local_part(std::string_view line, std::string_view domain);

}  // namespace smtp
