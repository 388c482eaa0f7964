// MTA-STS (RFC 8461) without a lookup storm: per policy domain, the last
// `_mta-sts` TXT answer for a short time (its TTL, at most 5 minutes) and the
// failed policy fetches, which back off (5 minutes, doubling to 1 hour) while
// the TXT id stays the same; a new id may be fetched at once (RFC 8461 3.3 lets
// senders rate-limit fetches; 5.1: a new id means a new policy). Pure: no I/O,
// no clock (the caller gives Unix seconds). Bounded: at most `capacity`
// domains, the entries that hold nothing live go first.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>

namespace relayd::mta_sts {

inline constexpr std::int64_t txt_keep_max = 300;        // seconds a TXT answer is kept at most
inline constexpr std::int64_t fetch_backoff_first = 300;  // after the first failed fetch
inline constexpr std::int64_t fetch_backoff_max = 3600;

// A remembered TXT answer: the record's id, or none (no valid v=STSv1 record).
struct txt_memory {
  std::optional<std::string> id;
};

class lookup_memory {
 public:
  explicit lookup_memory(std::size_t capacity = 10000) : capacity_(capacity) {}

  // The TXT answer remembered for `domain`, unless it expired.
  std::optional<txt_memory> txt(const std::string& domain, std::int64_t now) const;
  // Keeps an answer (a definite one: a record, or none) for min(ttl, txt_keep_max)
  // seconds; ttl 0 keeps nothing.
  void remember_txt(const std::string& domain, std::optional<std::string> id, std::int64_t ttl,
                    std::int64_t now);

  // Whether the policy of `domain` may be fetched under `id` now: not while the
  // backoff of a failed fetch under the same id runs. `until`: its end.
  bool may_fetch(const std::string& domain, const std::string& id, std::int64_t now,
                 std::int64_t* until = nullptr) const;
  // A fetch under `id` failed at `now`; returns the end of the backoff it starts
  // (doubled after each further failure under the same id, at most fetch_backoff_max).
  std::int64_t fetch_failed(const std::string& domain, const std::string& id, std::int64_t now);
  // A fetch succeeded: the backoff is over.
  void fetch_succeeded(const std::string& domain);

  std::size_t size() const { return domains_.size(); }

 private:
  struct entry {
    std::optional<txt_memory> txt;
    std::int64_t txt_until = 0;
    std::string failed_id;         // the id the failed fetches were under ("" none)
    std::uint32_t failures = 0;    // consecutive, under failed_id
    std::int64_t retry_after = 0;  // no fetch under failed_id before
  };
  entry& slot(const std::string& domain, std::int64_t now);

  std::size_t capacity_;
  std::map<std::string, entry, std::less<>> domains_;
};

}  // namespace relayd::mta_sts
