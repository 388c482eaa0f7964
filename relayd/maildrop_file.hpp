// The drop directory's files (issue 12, "never lose a message"): when relayd is
// not running, `sendmail` stores the envelope and the message in one file of
// `[local] maildrop`; the daemon imports it later (inbound_maildrop). This is the
// format, a durable writer and a strict reader, with no Asio and no LMDB, so
// cli/ links it. The writer returns only once the file is on disk under its
// final name; the reader never crashes and rejects anything malformed with a
// reason. Nothing here decides who submitted a file: the importer takes the
// submitter from the file's owner (st_uid), never from its content.
//
// File names. Final: "<T>.<P>.<R>", T = 16 uppercase hex digits of the wall
// clock in microseconds, P = the writer's PID in decimal, R = 16 lowercase hex
// digits from getrandom(2) (unique and unpredictable). Temporary: "." + a final
// name + ".tmp"; the importer looks only at final names (is_drop_name()).
//
// Format, version 1. Text lines end in "\n"; every string is length-prefixed
// ("<decimal length>:<octets>") so it may hold any octet, and every number is
// decimal without sign or leading zero. Fields come in this order, each exactly
// once; anything else is malformed:
//
//   relayd-maildrop 1\n
//   sender <len>:<reverse-path without <>, "" = null sender>\n
//   body 7bit|8bitmime\n
//   smtputf8 0|1\n
//   ret -|full|hdrs\n
//   envid <len>:<ENVID, xtext-decoded; "" when absent>\n
//   rcpts <count>\n                               (1 or more)
//   rcpt <notify bits> <len>:<address> <len>:<ORCPT or "">\n   (count times)
//   message <len>\n
//   <len octets: the message, CRLF line endings, not dot-stuffed>
//   end\n                                         (then end of file)
//
// Version 2 (written only for a REQUIRETLS message, so that a relayd that
// knows only version 1 sets such a file aside instead of dropping the
// requirement) adds one line after "smtputf8":
//
//   requiretls 0|1\n
//
// The envelope is checked as the SMTP server would check it (address syntax,
// UTF-8 only with smtputf8, NOTIFY bits, printable ENVID/ORCPT) and the
// message may hold no bare CR or LF, so an imported file can never smuggle a
// command into the delivery dialogue. write() refuses what parse() would.
//
// Permissions (see inbound_maildrop.hpp): the directory is owned by the
// daemon's user and the maildrop group, mode 1730; `sendmail` is set-group-id
// to that group; files are created 0640.
#pragma once

#include <sys/types.h>

#include <expected>
#include <filesystem>
#include <string>
#include <string_view>

#include "smtp/envelope.hpp"

namespace relayd::maildrop {

inline constexpr std::string_view magic = "relayd-maildrop";
inline constexpr unsigned format_version = 2;  // the newest read; 1 is still written and read
inline constexpr mode_t file_mode = 0640;
inline constexpr mode_t dir_mode = 01730;
// The envelope part of a file is small: a reader may refuse more than this
// plus the message's size.
inline constexpr std::size_t max_envelope_bytes = 16u << 20;

// What a drop file holds: the envelope (sender, recipients with NOTIFY and
// ORCPT, RET, ENVID, body type, SMTPUTF8, REQUIRETLS; the rest is left empty) and the
// message.
struct dropped {
  smtp::envelope envelope;
  std::string message;
};

// Whether `env` and `message` may be written (and would be read back): the
// reason when not.
std::expected<void, std::string> check(const smtp::envelope& env, std::string_view message);

// The file's bytes (no check: call check() first).
std::string encode(const smtp::envelope& env, std::string_view message);

// Parses a whole file. Fails with a reason ("line 3: expected \"body\"",
// "truncated in the message", ...) on anything malformed, including a
// version it does not know and trailing bytes.
std::expected<dropped, std::string> parse(std::string_view bytes);

// Writes one drop file into `dir`: a temporary file (O_CREAT|O_EXCL, mode
// 0640), its content, fdatasync, rename to a fresh final name, then the
// directory synced (fsync of the directory when the caller may open it,
// otherwise syncfs: a group member of a 1730 directory cannot read it).
// Returns the final name once all of that is done; on any failure returns the
// reason and leaves no file behind.
std::expected<std::string, std::string> write(const std::filesystem::path& dir,
                                              const smtp::envelope& env,
                                              std::string_view message);

// True for a final drop file name (not a temporary one, not anything else).
bool is_drop_name(std::string_view name);
// A fresh final name (time, PID, 64 random bits).
std::string make_name();

// Why a drop directory with this mode is unsafe to import from ("" when it
// is not): not a directory, or writable by group or others without the
// sticky bit (anyone could then delete or replace another user's file).
std::string unsafe_mode(mode_t mode);

}  // namespace relayd::maildrop
