// relayctl health: one line and a Nagios-style exit code (0 OK, 1 WARNING,
// 2 CRITICAL) for hosts without Prometheus, from the daemon's stats: spool
// use, oldest queued message, deferred messages, dead-spool entries, each
// against a warning and a critical threshold (flags). A daemon that does not
// answer is CRITICAL. The judging is pure (judge_health) and unit-tested.
#pragma once

#include <cstdint>
#include <expected>
#include <optional>
#include <string>
#include <vector>

namespace relayctl {

struct health_thresholds {
  double spool_warn = 80, spool_crit = 95;             // percent of spool_max_bytes
  std::int64_t age_warn = 3600, age_crit = 4 * 3600;  // seconds of the oldest message
  std::uint64_t deferred_warn = 100, deferred_crit = 1000;
  std::uint64_t dead_warn = 10, dead_crit = 100;
};

struct health_input {
  std::uint64_t spool_bytes = 0, spool_max_bytes = 0;
  std::uint64_t messages = 0;
  std::int64_t oldest_age_seconds = 0;
  std::uint64_t deferred = 0, dead = 0;
};

struct health_verdict {
  int code = 0;      // 0 OK, 1 WARNING, 2 CRITICAL
  std::string line;  // "RELAYD WARNING - ... | perfdata"
};

health_verdict judge_health(const health_input& in, const health_thresholds& t);

// --spool-warn PCT --spool-crit PCT --age-warn DURATION --age-crit DURATION
// --deferred-warn N --deferred-crit N --dead-warn N --dead-crit N. The error
// says which flag and why (a warning above its critical is one).
std::expected<health_thresholds, std::string> parse_health_flags(const std::vector<std::string>& w);

// Asks the daemon at `socket` and prints the verdict; returns its code.
int health(const std::string& socket, const health_thresholds& t);

}  // namespace relayctl
