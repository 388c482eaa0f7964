// Re-keying already deferred mail after a reload changed the retry settings
// (queue.min_backoff, queue.max_backoff): each deferred recipient's next attempt
// becomes its last attempt plus the backoff the new settings give for its number
// of attempts, as if they had been in force at that attempt (no earlier than
// now, no later than the message's expiry). So lowering min_backoff from 1h to
// 1m makes a message deferred once 10 minutes ago due at once, and raising it
// postpones one that was due in 5 minutes. A message is re-keyed only when its
// due time moves by more than the jitter it already had (10 % of the backoff)
// plus a second; held messages and messages in flight are left alone (the
// result of the attempt in flight is scheduled with the new settings). A
// destination backing off (in memory) ends no later than now plus the new
// backoff for its failures; a longer backoff applies from its next failure.
// The pass itself is scheduler::rekey_deferred (delivery_rekey.cpp).
#pragma once

#include <cstdint>
#include <optional>

#include "queue/record.hpp"
#include "relayd/delivery_retry.hpp"

namespace relayd {

// The message's new due time under `s`, or nullopt when it keeps its own (no
// deferred recipient, held, or a move within the tolerance).
std::optional<std::int64_t> rekeyed_due(const queue::envelope_record& r, const retry_settings& s,
                                        std::int64_t now_us);

}  // namespace relayd
