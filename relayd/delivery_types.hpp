// Plain data passed between the scheduler and the delivery agents: a job is one
// message's due recipients for one destination; an outcome is what happened to
// one recipient on one attempt. No I/O here.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "queue/record.hpp"

namespace relayd {

// Where a job goes: the recipient domain (MX mode) or the relayhost (smarthost),
// on a route (relayd/delivery_route.hpp; 0: [delivery]). Each route is a
// destination of its own: its concurrency and backoff are its own.
struct destination_key {
  std::string name;       // "example.org", "[smtp.example.net]:587", or a relayhost route's name
  std::size_t route = 0;  // route number
  bool operator==(const destination_key&) const = default;
  // The scheduler's map key: the name alone on the default route.
  std::string id() const { return route == 0 ? name : std::to_string(route) + "/" + name; }
};

struct job {
  std::shared_ptr<const queue::envelope_record> message;  // snapshot at dispatch
  std::vector<std::size_t> recipients;                    // indexes into message->recipients
  std::int64_t dispatched_us = 0;
};

// A recipient's fate on one attempt: the one relayd-side vocabulary. The spool's
// queue::rcpt_state, the log words (sent|deferred|bounced) and the metrics label
// (sent|deferred|failed) are each translated from it in one function
// (delivery_outcome.hpp, metrics.cpp).
enum class outcome_kind : std::uint8_t { delivered, deferred, failed };

// The facts of one outcome. Everything that renders it (the log line, the spool's
// last_reply, metrics, DSNs, relayctl) reads these fields; `description` is the
// sentence describe() made from them, kept for the log and for older readers.
struct recipient_outcome {
  std::size_t index = 0;  // into message->recipients
  outcome_kind what = outcome_kind::deferred;
  std::uint16_t code = 0;    // SMTP reply code; 0 when the server did not reply (DNS, connect, TLS)
  std::string status;        // enhanced status, e.g. "4.4.1" (synthesised when missing)
  std::string description;   // "host mx1.example.org[192.0.2.1] said: 451 4.3.0 Try later ..."
  std::string remote_host;   // "mx1.example.org[192.0.2.1]:25" or "" before any connection
  std::string reason;        // for failed: "rejected", "no_route", ...
  bool counts_as_attempt = true;  // false when the destination was throttled before trying
  std::int64_t not_before_us = 0;  // deferred: retry exactly then (destination backoff)
  queue::outcome_cause cause = queue::outcome_cause::unknown;  // why (reply, refused, ...)
  queue::smtp_command in_reply_to = queue::smtp_command::none;  // what the reply answered
  std::string text;  // the server's reply text, or what happened ("Connection refused")
  bool throttles_destination = false;  // 421 / 4.7.x: the whole destination backs off
  // delivered: the next hop advertised DSN and took the recipient's NOTIFY/ORCPT
  // on, so it reports delivery (RFC 3461 5.2.1); false: a NOTIFY=SUCCESS
  // recipient gets a "relayed" notice from relayd (5.2.2).
  bool next_hop_dsn = false;
  // deferred: held back by relayd's own shaping ([[destination]] max_rate), not a
  // failure: no attempt, no deferral in the metrics.
  bool shaped = false;
};

}  // namespace relayd
