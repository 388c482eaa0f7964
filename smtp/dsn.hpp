// Delivery status notifications: compose_dsn builds the complete RFC 3464 report
// (a multipart/report of RFC 6522) that relayd spools to tell a sender that
// delivery failed, is delayed, or (NOTIFY=SUCCESS, RFC 3461) that the message was
// relayed to a next hop that does not report delivery itself. Pure and total: remote replies and the original
// message are untrusted and are cleaned so that the result has CRLF line endings
// only, lines of at most 998 octets and no field or boundary it did not put there.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace smtp {

// RFC 3464 2.3.3. relayd never delivers to a mailbox, so its success notice is
// always "relayed" (RFC 3461 5.2.2); a DSN-capable next hop reports delivery.
enum class dsn_action : std::uint8_t { failed, delayed, relayed };

struct dsn_recipient {
  // The recipient as delivery saw it. Non-ASCII (SMTPUTF8) addresses become
  // "utf-8; ..." in the 7-bit form of RFC 6533 3, ASCII ones "rfc822; ...".
  std::string address;
  // ORCPT as given on RCPT, decoded: "rfc822;user@example.org", written as
  // Original-Recipient (RFC 3464 2.3.1); "" omits the field.
  std::string original_recipient;
  dsn_action action = dsn_action::failed;
  // RFC 3463 "5.1.1", "4.4.1", "2.0.0"...; anything else becomes 5.0.0 (failed),
  // 4.0.0 (delayed) or 2.0.0 (relayed).
  std::string status;
  std::string remote_mta;             // "mx1.example.org" (no brackets, no port); "" when none
  std::string diagnostic;             // the remote reply "550 5.1.1 No such user"; "" when none
  std::string explanation;            // for people: "host mx1.example.org[192.0.2.1] said: 550 ..."
  std::int64_t last_attempt = 0;      // seconds since the epoch; 0 when never tried
  std::int64_t will_retry_until = 0;  // delayed only: when relayd gives up; 0 when unknown
};

struct dsn_request {
  std::string reporting_mta;    // our host name: From: MAILER-DAEMON@, Reporting-MTA
  std::string queue_id;         // of the original: X-Relayd-Queue-ID and the MIME boundary
  std::string original_sender;  // envelope sender of the original: To: of the DSN
  std::string envelope_id;      // ENVID of the original (decoded): Original-Envelope-Id; "" omits it
  std::int64_t arrival = 0;     // Arrival-Date; 0 omits it
  std::int64_t now = 0;         // Date: of the DSN
  std::string message_id;       // "<id@host>" for the DSN itself
  std::vector<dsn_recipient> recipients;  // one group each in the delivery-status part
  std::string_view original;              // the spooled original message (headers + body)
  // false: its header block only, as text/rfc822-headers (RFC 6522), cut to 64 KiB
  // at a line boundary; true: the whole message as message/rfc822.
  bool include_body = false;
  // RFC 8689 5: nothing of the original at all (no third part), so that the
  // notice of a REQUIRETLS message may travel without REQUIRETLS.
  bool redacted = false;
};

// The DSN as it goes into the spool, to be sent with the null reverse-path <>.
// Subject and the human-readable part say "failed" when any recipient failed,
// else "delayed" when any is delayed, else that the message was relayed. The result is 7-bit unless the text, an address or the
// original holds 8-bit octets; then the parts that do say
// Content-Transfer-Encoding: 8bit and original headers with 8-bit octets go in
// message/global-headers (message/global with the body), as RFC 6533 6.3 and
// RFC 6532 3.7 ask. The message/delivery-status part is always 7-bit.
std::string compose_dsn(const dsn_request& request);

}  // namespace smtp
