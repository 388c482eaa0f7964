// Which queued messages (or dead-spool entries) an operator means: relayctl's
// --from --to --domain --older --reason, evaluated by the daemon for listings,
// the bulk actions and --shape, so an action touches exactly what a listing with
// the same filter shows. Pure and I/O-free; it cannot fail (the values were
// checked when the request was read: check_filter()).
//
// Address criteria are case-insensitive: "user@example.org" is that address,
// "example.org" or "@example.org" any address in that domain, "<>" the null
// sender. --to, --domain and --reason must hold for one and the same recipient
// (a pending one in the queue, a failed one in the dead spool); --older compares
// the arrival (queue) or the failure time (dead spool) with now - DURATION.
#pragma once

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "relayd/config_values.hpp"

namespace queue {
struct envelope_record;
}

namespace relayd {

struct queue_filter {
  std::string from;    // "" = any sender
  std::string to;      // "" = any recipient
  std::string domain;  // recipient domain; "" = any
  std::string reason;  // substring of the last reply (or dead reason); "" = any
  std::optional<std::int64_t> older_seconds;  // nullopt = any age
  bool empty() const {
    return from.empty() && to.empty() && domain.empty() && reason.empty() && !older_seconds;
  }
  bool operator==(const queue_filter&) const = default;
};

// "" when the values can be used, else why not ("--to: ..." naming the option).
// Inline: relayctl and the protocol parser check filters without the matcher.
inline std::string check_filter(const queue_filter& f) {
  auto has_control = [](std::string_view s) {
    return std::ranges::any_of(
        s, [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; });
  };
  const std::pair<const char*, const std::string*> texts[] = {
      {"--from", &f.from}, {"--to", &f.to}, {"--domain", &f.domain}, {"--reason", &f.reason}};
  for (const auto& [name, value] : texts) {
    if (value->size() > 1000) return std::string(name) + ": longer than 1000 characters";
    if (has_control(*value)) return std::string(name) + ": control characters are not allowed";
  }
  if (f.to == "<>") return "--to: a recipient is never the null sender <>";
  if (f.from == "@" || f.to == "@") return "--from/--to: give an address or a domain, not \"@\"";
  if (f.domain.find('@') != std::string::npos)
    return "--domain: give a domain (example.org), not an address";
  if (f.older_seconds &&
      (*f.older_seconds < 0 || static_cast<std::uint64_t>(*f.older_seconds) > max_duration_seconds))
    return "--older: a duration from 0s to 36500d";
  return {};
}

class queue_matcher {
 public:
  // `now_us`: the daemon's clock when the request arrived (microseconds).
  queue_matcher(queue_filter f, std::int64_t now_us);
  // A queued message (its pending recipients) or, with `dead`, a dead-spool
  // entry (its failed recipients).
  bool matches(const queue::envelope_record& r, bool dead = false) const;

 private:
  queue_filter f_;
  std::int64_t cutoff_us_ = 0;  // arrival or failure strictly before this (with --older)
};

// "user@Example.ORG" -> "example.org"; "" when there is no '@'.
std::string address_domain(std::string_view address);

}  // namespace relayd
