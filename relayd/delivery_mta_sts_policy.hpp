// MTA-STS (RFC 8461) without I/O: the `_mta-sts` TXT record, the policy file
// served at https://mta-sts.DOMAIN/.well-known/mta-sts.txt, MX pattern
// matching, the cache record kept in the spool, and the decision whether a
// cached policy is still good or must be fetched again. Every parse failure is
// an error value naming what is wrong; nothing here throws or logs.
#pragma once

#include <chrono>
#include <cstdint>
#include <expected>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace relayd::mta_sts {

enum class mode { enforce, testing, none };
std::string_view to_string(mode m);  // "enforce", "testing", "none"

inline constexpr std::size_t max_policy_size = 64 * 1024;       // octets of the policy file
inline constexpr std::int64_t max_max_age = 31557600;            // RFC 8461 3.2: about a year

struct policy {
  mode what = mode::none;
  std::vector<std::string> mx;  // patterns in lower case: "mx.example.org", "*.example.net"
  std::int64_t max_age = 0;     // seconds
};

// Parses a policy file (RFC 8461 3.2): "key: value" lines ended by CRLF or LF;
// version must be STSv1, mode enforce|testing|none, max_age 0..31557600 in at
// most 10 digits, at least one mx unless the mode is none. A pattern is a host
// name, or "*." and a host name (one leftmost label). Unknown keys are ignored;
// version, mode or max_age given twice is an error, as is a line without a colon.
std::expected<policy, std::string> parse_policy(std::string_view text);

// Whether `host` (an MX host name; a trailing dot and case are ignored) matches
// `pattern`: equal, or "*.suffix" with exactly one label before ".suffix".
bool mx_pattern_matches(std::string_view pattern, std::string_view host);
bool mx_allowed(const policy& p, std::string_view host);

// The `_mta-sts.DOMAIN` TXT records (each one's strings joined). A record is
// "v=STSv1; id=ID[; other=value...]" with ID 1-32 letters or digits; records
// not starting with "v=STSv1" are not MTA-STS records and are skipped.
// Result: the id when exactly one record is an MTA-STS record and it is valid;
// an error for none ("no v=STSv1 record"), several, or a malformed one.
std::expected<std::string, std::string> policy_id(const std::vector<std::string>& records);

// A policy as the spool keeps it (versioned: a record that does not decode is
// dropped and fetched again).
struct cached_policy {
  std::string id;              // the TXT id it was fetched under
  std::int64_t fetched_at = 0;  // Unix seconds
  std::string text;            // the policy file as served (re-parsed on decode)
  policy parsed;
  std::int64_t expires_at() const { return fetched_at + parsed.max_age; }
  bool fresh(std::int64_t now) const { return now < expires_at(); }
};
std::string encode(const cached_policy& c);
std::optional<cached_policy> decode(std::string_view record);

// What to do with a destination's TXT answer and the cached policy (RFC 8461 5.1):
enum class step {
  use_cached,     // same id and unexpired: no fetch
  fetch,          // a new id, or no usable cached policy while a record exists
  keep_cached,    // no record, or DNS failed: the cached policy lasts until it expires
  none,           // no record and nothing cached: no policy
};
// `txt_id`: the id of the record, or nullopt when there is none (or DNS failed).
step next_step(const std::optional<cached_policy>& cached, const std::optional<std::string>& txt_id,
               std::int64_t now);

}  // namespace relayd::mta_sts
