// Outcome mapping (Postfix's smtp_trouble.c): client, connect, TLS and DNS results
// become recipient_outcomes of typed facts (code, enhanced status, text, command
// answered, remote host, cause), and each translation of a recipient's fate lives
// here once. Pure functions without I/O or Asio; they never fail.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "dns/mx_resolver.hpp"
#include "queue/record.hpp"
#include "relayd/delivery_types.hpp"
#include "smtp/client_session.hpp"

namespace relayd {

// One recipient's result of a transaction. `lost_as`: set when the pump lost the
// connection (lost or timeout), the cause of the client's synthetic 4.4.2 replies.
recipient_outcome outcome_of(const smtp::recipient_result& r, std::string_view relay,
                             std::optional<queue::outcome_cause> lost_as = std::nullopt);
// A failure of the connection set-up (greeting, EHLO, STARTTLS, AUTH, lost).
// Always deferred: another host or a later attempt may do better, and a 5xx
// during set-up is reported with a 4.x.x status.
recipient_outcome outcome_of(const smtp::connection_failure& f, std::string_view relay,
                             std::optional<queue::outcome_cause> lost_as = std::nullopt);
// No TCP connection to `relay`: `why` is the system's message.
recipient_outcome connect_failed(std::string_view relay, bool timed_out, std::string_view why);
// The TLS handshake with `relay` failed (certificate or OpenSSL reason in `why`).
recipient_outcome tls_failed(std::string_view relay, std::string_view why);
// The MX list had no address to try.
recipient_outcome no_host_answered();
// Resolving the destination failed. `relayhost`: "[smtp.example]:587" in smarthost
// mode, where even NXDOMAIN only defers (our configuration, not the recipient's).
recipient_outcome dns_failed(const dns::mx_result& mx, std::string_view relayhost);

// The sentence for the log and the spool's last_reply, made from the fields:
//   "host mx[192.0.2.1]:25 said: 550 5.1.1 No (in reply to RCPT TO)"
//   "mx[192.0.2.1]:25: Connection lost: timeout (in phase mail)"
std::string describe(const recipient_outcome& o);

// A transaction on a reused connection that ended before the server answered
// anything of it (the connection was closed while idle): not an attempt, and the
// message cannot have been accepted, so it may go again at once on a new one.
bool server_heard_nothing(const smtp::transaction_result& r);

// The translations of a recipient's fate, each in one place.
outcome_kind fate_of(queue::rcpt_state s);    // pending -> deferred, failed -> failed
std::string_view log_word(outcome_kind k);    // "sent", "deferred", "bounced"
queue::smtp_command command_of(smtp::client_phase p);

// Stores the facts of `o` in the spool's recipient (code, status, text, command,
// cause, remote host and the describe() sentence as last_reply).
void record_outcome(queue::recipient& r, const recipient_outcome& o);

}  // namespace relayd
