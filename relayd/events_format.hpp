// Events for other systems (DESIGN "Destinations, rules and events"): one JSON
// object per state change of a message or recipient, the same text in the
// [events] file and in the webhook's batches. Pure: no I/O, no clock.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "queue/record.hpp"

namespace relayd {

enum class event_type : std::uint8_t {
  received,   // the message was committed to the queue (one per message)
  deferred,   // a recipient's attempt failed for now (or waits behind its destination's backoff)
  delivered,  // a recipient was accepted by the next hop
  bounced,    // a recipient failed for good and its sender gets a non-delivery notice
  dead,       // a recipient failed for good and nobody is told (null sender, NOTIFY=NEVER,
              // bounces off): only the dead spool has it
  expired,    // a recipient's lifetime (max_lifetime) ran out
  suspended,  // a destination was suspended (queue_id and recipient empty)
  resumed,    // a destination was resumed
};
std::string_view to_string(event_type t);

struct event {
  event_type type = event_type::received;
  std::string event_id;  // unique across restarts: the receiver's key for de-duplication
  std::int64_t time_us = 0;
  std::string queue_id;
  std::string message_id;  // the Message-ID header, "" when the message has none
  std::string sender;      // "" for <>
  std::string recipient;   // "" for received, suspended, resumed
  std::string destination;  // where the recipient goes: domain, relayhost or route name
  std::string reply;        // the last reply or what happened ("" for received)
  std::string status;       // enhanced status ("4.4.1"), "" when none
  std::uint32_t attempt = 0;  // attempts made for this recipient so far
  std::string submitter;      // "smtp 192.0.2.1", "smtp 192.0.2.1 sasl=alice",
                              // "local uid=1000 user=alice unit=cron.service", "relayd"
};

// One line of JSON (no newline): {"event_id":..,"time":"2026-12-02T14:00:00.123456Z",
// "type":..,"queue_id":..,"message_id":..,"sender":..,"recipient":..,
// "destination":..,"reply":..,"status":..,"attempt":N,"submitter":..}. Strings
// are escaped (any octets; invalid UTF-8 becomes U+FFFD).
std::string to_json(const event& e);

// The length (1-4) of the UTF-8 sequence at s[i]: a lead octet and its
// continuation octets, all inside `s`; 0 when there is none there.
std::size_t utf8_length_at(std::string_view s, std::size_t i);

// `s` with every octet that does not start a valid UTF-8 sequence replaced
// by U+FFFD (the JSON lines and the report's records carry valid UTF-8 only).
std::string utf8_or_replaced(std::string_view s);

// The Message-ID of a message whose start is `head` (header fields up to the
// first empty line; folded values unfolded): "<x@y>", or "" when there is none.
std::string message_id_of(std::string_view head);

// The submitter text of a queued message (see event::submitter); `sasl` is the
// AUTH user, "" when none.
std::string submitter_of(const queue::envelope_record& r, std::string_view sasl = {});

// The event of a recipient's new state: delivered, deferred, expired, or for a
// failed one bounced when `notified` (a failure DSN was queued for it), else dead.
event_type event_type_of(const queue::recipient& r, bool notified);

}  // namespace relayd
