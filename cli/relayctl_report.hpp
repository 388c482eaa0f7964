// relayctl report [--since DURATION] [--until DURATION] [--top N] [--json]:
// a pflogsumm-style summary of relayd's own event record (control verb
// report): totals received, delivered, deferred, bounced, expired, dead; per
// recipient domain; top deferral and bounce reasons; messages per submitter.
// --since (default 24h) and --until (default now) count back from now.
// A bad value exits 64 (as relayctl's filters), a word it does not know 2.
#pragma once

#include <boost/json/object.hpp>
#include <cstddef>
#include <cstdint>
#include <expected>
#include <string>
#include <vector>

#include "cli/control_client.hpp"

namespace relayctl {

struct report_options {
  std::int64_t since_seconds = 86400;
  std::int64_t until_seconds = 0;  // back from now; 0: now
  std::size_t top = 10;
  bool json = false;
};

struct report_usage_error {
  int exit_code;  // 64 a bad value, 2 an unknown word
  std::string why;
};

std::expected<report_options, report_usage_error> parse_report_words(const std::vector<std::string>& words);
// The human text of a "report" object (control_protocol.hpp), pflogsumm's sections.
std::string report_text(const boost::json::object& report);
int report_main(control_client& c, const report_options& o);

}  // namespace relayctl
