// Spool records: the per-message envelope/state record and its binary encoding.
// Records start with a version byte; decode() checks every length against the
// input and returns an error for anything it cannot read, never crashing, so a
// damaged record is set aside rather than taking the daemon down.
#pragma once

#include <cstdint>
#include <expected>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "smtp/envelope.hpp"

namespace queue {

// Version 2 added the per-recipient attempt history (first/last attempt, reply
// code, status, remote host, reason); version 3 the typed facts of the last
// outcome (cause, the command answered, the reply text); version 4 the DSN
// parameters (RET, ENVID, NOTIFY, ORCPT) and the local submitter. Versions 1 to
// 3 still decode.
inline constexpr std::uint8_t record_version = 4;

enum class rcpt_state : std::uint8_t {
  pending = 0,    // to be attempted (next_attempt_us says when)
  delivered = 1,  // final: a 2xx was received
  failed = 2,     // final: permanent failure (moved to the dead spool)
};

// Why a recipient's last attempt ended as it did: the one vocabulary the delivery
// agent, the spool, metrics, logs and DSNs share (no sentence is searched for words).
enum class outcome_cause : std::uint8_t {
  unknown = 0,   // a record written before version 3: last_reply holds what is known
  none,          // delivered
  reply,         // the server's reply decided it (reply_code, status, reply_text)
  refused,       // no connection: refused, reset, unreachable, or no host answered
  lost,          // the connection ended before the reply (EOF, reset, write error)
  timeout,       // a connect, read or write deadline passed
  tls,           // TLS handshake failed, or STARTTLS required and refused/not offered
  auth,          // AUTH refused or impossible: our credentials (never a bounce)
  protocol,      // a malformed or unexpected reply
  dns,           // the destination did not resolve (temporarily or for good)
  capability,    // the server lacks what the message needs (SIZE limit, SMTPUTF8)
  local_config,  // our side: configuration or local error
  expired,       // max_lifetime passed before a delivery
};
inline constexpr std::uint8_t outcome_cause_last = static_cast<std::uint8_t>(outcome_cause::expired);
std::string_view to_string(outcome_cause c);  // "unknown", "none", "reply", "refused", ...

// The SMTP command a reply answered ("in reply to ..."); none without a reply.
enum class smtp_command : std::uint8_t {
  none = 0, greeting, ehlo, helo, starttls, auth, mail, rcpt, data, end_of_data, quit,
};
inline constexpr std::uint8_t smtp_command_last = static_cast<std::uint8_t>(smtp_command::quit);
std::string_view to_string(smtp_command c);  // "", "the greeting", "EHLO", ... "end of DATA"

struct recipient {
  std::string address;
  rcpt_state state = rcpt_state::pending;
  std::uint32_t attempts = 0;
  std::int64_t next_attempt_us = 0;  // microseconds since the epoch; 0: as soon as possible
  std::string last_reply;            // "host mx1.example.org[192.0.2.1] said: 451 4.3.0 ..."
  std::int64_t first_attempt_us = 0;  // 0: never attempted
  std::int64_t last_attempt_us = 0;
  std::uint16_t reply_code = 0;  // last SMTP reply code; 0 when the failure was not a reply
  std::string status;            // enhanced status of the last outcome, e.g. "4.4.1", "5.1.1"
  std::string remote_host;       // "mx1.example.org[192.0.2.1]:25" that gave the last outcome
  std::string reason;            // when failed: "rejected", "expired", "no_route", "bounce_failed"
  // Version 3: the facts behind last_reply. A version 1/2 record reads as cause
  // unknown, in_reply_to none and reply_text = last_reply.
  outcome_cause cause = outcome_cause::unknown;
  smtp_command in_reply_to = smtp_command::none;
  std::string reply_text;  // the server's text ("No such user"), or what happened
  // Version 4: RCPT's DSN parameters (smtp::notify_bits, 0 when not given; ORCPT
  // xtext-decoded, "" when not given).
  std::uint8_t notify = 0;
  std::string orcpt;
};

enum message_flags : std::uint32_t {
  flag_eight_bit = 1u << 0,  // BODY=8BITMIME
  flag_smtputf8 = 1u << 1,   // SMTPUTF8
  flag_held = 1u << 2,       // on hold (relayctl -h)
  flag_delay_warned = 1u << 3,  // the one "delayed" DSN has been sent
  // RFC 8689 (relayd/delivery_requiretls.hpp). New bits in an old field: records
  // without them read as before, so no version change.
  flag_requiretls = 1u << 4,    // MAIL ... REQUIRETLS: verified TLS to REQUIRETLS hops only
  flag_tls_optional = 1u << 5,  // "TLS-Required: No" (and no REQUIRETLS): no recipient policy
};

struct envelope_record {
  std::string id;            // queue ID (also the LMDB key, not part of the encoding)
  std::int64_t arrival_us = 0;
  std::uint64_t size = 0;    // octets of the stored message
  std::uint32_t flags = 0;   // message_flags
  std::string sender;        // "" for <>
  std::string client_ip;
  std::string helo;
  std::vector<recipient> recipients;
  // Version 4: MAIL's DSN parameters and who submitted locally (absent for
  // network clients and older records).
  smtp::dsn_ret ret = smtp::dsn_ret::unspecified;
  std::string envid;
  std::optional<smtp::local_identity> local;
};

std::string encode(const envelope_record& r);
// `id` is copied into the result. The error text says what was wrong.
std::expected<envelope_record, std::string> decode(std::string_view id, std::string_view bytes);
// The same into an existing record, whose strings and recipients keep their
// buffers (a scan decoding many records allocates almost nothing). On failure
// `out` holds a partial record and `error` says what was wrong.
bool decode_into(std::string_view id, std::string_view bytes, envelope_record& out,
                 std::string& error);

}  // namespace queue
