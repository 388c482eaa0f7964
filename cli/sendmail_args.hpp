// sendmail's command line, parsed without I/O: the Postfix/sendmail options that
// programs use (cron, PHP's mail(), mailx, git send-email, monitoring scripts)
// plus relayd's --wait. The program name chooses the mode first ("mailq" lists
// the queue, "newaliases" rebuilds the aliases), flags may change it.
// parse_args() never exits or prints: a bad command line is an error value with
// the one-line reason, which main turns into exit status 64 (EX_USAGE).
// Unknown -oX / -OX options are ignored as Postfix does; -O requiretls=yes|no
// asks for REQUIRETLS (RFC 8689) on the submission.
#pragma once

#include <chrono>
#include <cstdint>
#include <expected>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "smtp/envelope.hpp"

namespace sendmail {

enum class mode {
  deliver,       // -bm (default): a message on stdin
  list_queue,    // -bp, mailq
  smtp_stdio,    // -bs: an SMTP dialogue on stdin/stdout
  new_aliases,   // -bi, newaliases
  flush,         // -q
};

struct options {
  mode what = mode::deliver;
  std::optional<std::string> config_path;  // -C FILE
  std::optional<std::string> sender;       // -f / -r ADDR ("" or "<>": the null sender)
  std::optional<std::string> full_name;    // -F NAME (for an added From:)
  bool recipients_from_headers = false;    // -t
  bool ignore_dots = false;                // -i, -oi: a lone "." does not end input
  bool verbose = false;                    // -v
  std::uint8_t notify = 0;                 // -N: smtp::notify_bits, 0 when not given
  smtp::dsn_ret ret = smtp::dsn_ret::unspecified;  // -R full|hdrs
  std::string envid;                               // -V ENVID
  std::optional<smtp::body_type> body;             // -B 7BIT|8BITMIME
  bool requiretls = false;                         // -O requiretls=yes: MAIL ... REQUIRETLS
  // --wait[=TIMEOUT]: after the 250, wait for every recipient's final outcome.
  std::optional<std::chrono::seconds> wait;
  std::vector<std::string> recipients;  // the arguments after the options
};

inline constexpr std::chrono::seconds default_wait_timeout{300};

// `program` is argv[0] (only its base name counts); `args` are argv[1..].
std::expected<options, std::string> parse_args(std::string_view program,
                                               const std::vector<std::string>& args);

// "never" or a comma list of success, failure, delay (case-insensitive).
std::expected<std::uint8_t, std::string> parse_notify(std::string_view value);
// "300", "30s", "5m", "2h": at least 1 s.
std::expected<std::chrono::seconds, std::string> parse_timeout(std::string_view value);

}  // namespace sendmail
