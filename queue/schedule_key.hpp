// Internal: the keys of the spool's `schedule` database, 8-byte BE due time
// (negative times sort as 0) + 8-byte BE queue ID, and due_of(), the rule that
// says which entry a record has. Pure functions; a key that is not 16 bytes
// parses to nullopt, never an error.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <optional>
#include <string_view>

#include "queue/queue_id.hpp"
#include "queue/record.hpp"
#include "queue/spool.hpp"

namespace queue::detail {

using queue::key_view;  // of an id_key; the overload below is for schedule keys
using schedule_key = std::array<char, 16>;

// The schedule key of a message due at `due_us`.
inline schedule_key make_schedule_key(std::int64_t due_us, std::uint64_t id) {
  schedule_key k{};
  const id_key d = key_of(static_cast<std::uint64_t>(std::max<std::int64_t>(due_us, 0)));
  const id_key i = key_of(id);
  std::copy(d.begin(), d.end(), k.begin());
  std::copy(i.begin(), i.end(), k.begin() + 8);
  return k;
}

inline std::string_view key_view(const schedule_key& k) {
  return {k.data(), k.size()};
}

// A schedule key read back; nullopt when it is not 16 bytes.
inline std::optional<spool::due_entry> parse_schedule_key(std::string_view k) {
  if (k.size() != 16) return std::nullopt;
  const auto due = id_of_key(k.substr(0, 8));
  const auto id = id_of_key(k.substr(8));
  if (!due || !id) return std::nullopt;
  return spool::due_entry{static_cast<std::int64_t>(*due), format_id(*id)};
}

// When the message is due: the smallest next_attempt_us of its pending
// recipients; nullopt when it is held or has none (it has no schedule entry).
inline std::optional<std::int64_t> due_of(const envelope_record& r) {
  if ((r.flags & flag_held) != 0) return std::nullopt;
  std::optional<std::int64_t> due;
  for (const recipient& rc : r.recipients) {
    if (rc.state == rcpt_state::pending && (!due || rc.next_attempt_us < *due)) {
      due = rc.next_attempt_us;
    }
  }
  return due;
}

}  // namespace queue::detail
