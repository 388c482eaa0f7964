// Header helpers for a received message (RFC 5322): find whether the header block
// has a field, format Date and Message-ID, build relayd's Received: trace field,
// and put them all in place. Input is the un-stuffed DATA content with CRLF line
// endings; nothing here fails or throws, malformed headers are left untouched.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <optional>
#include <vector>

#include "smtp/envelope.hpp"

namespace smtp {

// Octets of the header block: the leading lines that are header fields (or their
// folded continuations). The block ends before the first other line: the empty
// line that separates the body, a non-header line, or the end of the message.
std::size_t header_block_end(std::string_view message);
// True when a field named `name` (case-insensitive, e.g. "Message-ID") starts a
// line of the header block.
bool has_header(std::string_view message, std::string_view name);

// The Message-ID field's msg-id for a log line: "<left@right>" (unfolded, the
// first <...> of the field), at most 250 characters of printable ASCII (others
// become '?'); "" when the header block has no Message-ID field or it holds no
// "<...>" (then the field's first word, cleaned the same way).
std::string message_id_for_log(std::string_view message);

// RFC 5322 date-time in UTC: "Tue, 02 Jan 2024 03:04:05 +0000".
std::string format_date(std::int64_t unix_seconds);
// "<ID@hostname>"
std::string make_message_id(std::string_view id, std::string_view hostname);

struct received_info {
  std::string helo;             // EHLO/HELO argument
  std::string client_hostname;  // reverse DNS name, "" when unknown
  std::string client_ip;        // "192.0.2.1" or "2001:db8::1"
  // A local submission: "from local (uid 33, www-data)" replaces helo, name and IP.
  std::optional<local_identity> local;
  std::string hostname;         // relayd's own name
  bool esmtp = true;            // EHLO (ESMTP) or HELO (SMTP)
  bool smtputf8 = false;        // SMTPUTF8 transaction: "with UTF8SMTP" (RFC 6531 3.7.3)
  bool tls = false;             // under TLS: ESMTPS / UTF8SMTPS (RFC 3848, RFC 6531)
  bool authenticated = false;   // after AUTH: ESMTPA / ESMTPSA / UTF8SMTPA / UTF8SMTPSA
  std::string queue_id;
  std::vector<std::string> recipients;  // "for <rcpt>" only when there is exactly one
  std::int64_t time = 0;                // seconds since the epoch
};
// "Received: from HELO (hostname [IP])\r\n\tby HOST (relayd) with ESMTP id ID\r\n\tfor <r>;
// DATE\r\n"; for a local submission "Received: from local (uid N, user)\r\n\tby ...".
std::string received_header(const received_info& info);

// The message as it goes into the spool: `received` first, then the content with
// `Date:` and `Message-ID:` appended to the header block when it lacks them. A
// blank line is inserted when the content has a body but no empty separator line.
std::string build_message(std::string_view content, std::string_view received, std::int64_t time,
                          std::string_view message_id);

}  // namespace smtp
