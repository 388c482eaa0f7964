// Delivery status notifications for spooled messages: turns a message's
// recipients (as the queue stores them) into the DSN that relayd queues for the
// original sender, and decides who gets one: the message (null sender, bounces
// off), each recipient's NOTIFY (RFC 3461 4.1) and the message's RET (4.3). No I/O: the scheduler reads the
// original from the spool and queues the result.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "queue/record.hpp"
#include "smtp/dsn.hpp"

namespace relayd {

struct config;

// Whether a message may cause a DSN at all: never for the null sender (no bounce
// of a bounce) and never with `[queue] bounces = false`.
bool may_notify(const config& cfg, const queue::envelope_record& message);

// Whether this deferral is the one that sends the "delayed" DSN: delay_warning
// is on, has passed since arrival, and none was sent before.
bool delay_warning_due(const config& cfg, const queue::envelope_record& message,
                       std::int64_t now_us);

// RFC 3461 4.1: whether recipient `r` wants a notice of `action`. Without
// NOTIFY: failed and delayed, not relayed. NOTIFY=NEVER: none; otherwise the
// kinds it lists (SUCCESS for relayed).
bool wants_notice(const queue::recipient& r, smtp::dsn_action action);

// The recipients of `recipients` that want a notice of `action`, in order.
std::vector<queue::recipient> asking_for(std::span<const queue::recipient> recipients,
                                         smtp::dsn_action action);

// The DSN, as a ready-to-spool record and message from <> to the original sender.
struct notice {
  queue::envelope_record envelope;  // id, arrival, size, flags and the one recipient set
  std::string message;
};

// `recipients`: the recipients this DSN reports, in their new state (failed,
// pending for "delayed", delivered for "relayed"); their ORCPT becomes
// Original-Recipient and the message's ENVID Original-Envelope-Id. `original`:
// the spooled message, attached whole for RET=FULL, else its header block only
// (RET=HDRS and, as before DSN support, when RET was not given). `id` is the
// new queue ID of the DSN.
notice make_notice(const config& cfg, const queue::envelope_record& message,
                   std::span<const queue::recipient> recipients, smtp::dsn_action action,
                   std::string_view original, std::string id, std::int64_t now_us);

// The parts of a stored recipient a DSN uses: the server's reply from its fields
// (reply_code and reply_text; a record older than version 3 has only its
// "last_reply" sentence, "host mx[ip] said: 550 5.1.1 No (in reply to RCPT TO)",
// which is taken apart instead) and the host of remote_host.
std::string remote_reply(const queue::recipient& r);  // "550 5.1.1 No"; "" without a reply
std::string remote_mta(std::string_view remote_host);  // "mx.example.org"; "" when none

}  // namespace relayd
