// The metrics that are not about one message at a time: per-destination series
// under a cardinality cap (the top N destinations by pending recipients, the
// rest as "other"), the [events] outbox and webhook counters and
// relayd_build_info. Part of class metrics (metrics.hpp); same locking rules.
#include <fmt/format.h>

#include <algorithm>
#include <iterator>
#include <vector>

#include "relayd/metrics.hpp"

#ifndef RELAYD_VERSION
#define RELAYD_VERSION "unknown"
#endif

namespace relayd {
namespace {

constexpr std::string_view other = "other";

void head(std::string& out, std::string_view name, std::string_view type, std::string_view help) {
  fmt::format_to(std::back_inserter(out), "# HELP {} {}\n# TYPE {} {}\n", name,
                 metrics::escape_help(help), name, type);
}

}  // namespace

std::string_view destination_domain(std::string_view address) {
  const auto at = address.rfind('@');
  return at == std::string_view::npos ? address : address.substr(at + 1);
}

void metrics::set_destination_gauges(const std::map<std::string, destination_count, std::less<>>& all,
                                     std::size_t top) {
  std::vector<std::pair<std::string_view, destination_count>> ranked(all.begin(), all.end());
  // Most queued first; ties by name so the choice is stable between scans.
  std::ranges::sort(ranked, [](const auto& a, const auto& b) {
    return a.second.queued != b.second.queued ? a.second.queued > b.second.queued : a.first < b.first;
  });
  std::map<std::string, destination_count, std::less<>> kept;
  destination_count rest;
  for (std::size_t i = 0; i < ranked.size(); ++i) {
    if (i < top && ranked[i].first != other) {
      kept.emplace(std::string(ranked[i].first), ranked[i].second);
    } else {
      rest.queued += ranked[i].second.queued;
      rest.deferred += ranked[i].second.deferred;
    }
  }
  kept[std::string(other)] = rest;
  std::lock_guard lock(mu_);
  destinations_top_ = top;
  destination_gauges_ = std::move(kept);
}

void metrics::set_suspended_destinations(std::map<std::string, std::size_t, std::less<>> by_cause) {
  std::lock_guard lock(mu_);
  suspended_ = std::move(by_cause);
}

void metrics::destination_result(std::string_view destination, attempt_result r) {
  std::lock_guard lock(mu_);
  std::string_view name = destination;
  if (!destination_gauges_.contains(destination)) name = other;
  // Names that left the top keep their series; past 2 x destinations_top
  // names (not counting "other"), a new one counts as other.
  const std::size_t named = destination_results_.size() - destination_results_.count(other);
  if (name != other && !destination_results_.contains(name) && named >= 2 * destinations_top_)
    name = other;
  auto it = destination_results_.try_emplace(std::string(name)).first;
  ++it->second[static_cast<std::size_t>(r)];
}

void metrics::render_more(std::string& out) const {
  auto load = [](const std::atomic<std::uint64_t>& a) { return a.load(std::memory_order_relaxed); };
  auto put = [&out](std::string_view name, auto v) { fmt::format_to(std::back_inserter(out), "{} {}\n", name, v); };

  head(out, "relayd_build_info", "gauge", "Always 1; the version of the running relayd.");
  fmt::format_to(std::back_inserter(out), "relayd_build_info{{version=\"{}\"}} 1\n",
                 escape_label_value(RELAYD_VERSION));

  head(out, "relayd_events_dropped_total", "counter",
       "Event lines not written to the [events] file (write error or writer behind).");
  put("relayd_events_dropped_total", load(events_dropped_));
  head(out, "relayd_events_outbox", "gauge", "Events waiting in the spool for the webhook.");
  put("relayd_events_outbox", load(events_outbox_));
  head(out, "relayd_events_webhook_posts_total", "counter",
       "Batches posted to the [events] webhook, by result (ok: a 2xx answer).");
  fmt::format_to(std::back_inserter(out),
                 "relayd_events_webhook_posts_total{{result=\"ok\"}} {}\n"
                 "relayd_events_webhook_posts_total{{result=\"failed\"}} {}\n",
                 load(webhook_ok_), load(webhook_failed_));

  head(out, "relayd_destination_queued_recipients", "gauge",
       "Pending recipients per destination (recipient domain): the [metrics] "
       "destinations_top with the most, the rest as other.");
  for (const auto& [name, c] : destination_gauges_)
    fmt::format_to(std::back_inserter(out), "relayd_destination_queued_recipients{{destination=\"{}\"}} {}\n",
                   escape_label_value(name), c.queued);
  head(out, "relayd_destination_deferred_recipients", "gauge",
       "Of the pending recipients per destination, those attempted at least once.");
  for (const auto& [name, c] : destination_gauges_)
    fmt::format_to(std::back_inserter(out), "relayd_destination_deferred_recipients{{destination=\"{}\"}} {}\n",
                   escape_label_value(name), c.deferred);
  head(out, "relayd_destinations_suspended", "gauge",
       "Destinations suspended (no connection, mail deferred) until relayctl resume or the "
       "first connection that works after the suspension, by cause: rule, relayctl, or a "
       "circuit breaker (credentials, tls_policy, dns).");
  for (const auto& [cause, n] : suspended_)
    fmt::format_to(std::back_inserter(out), "relayd_destinations_suspended{{cause=\"{}\"}} {}\n",
                   escape_label_value(cause), n);
  head(out, "relayd_destination_attempts_total", "counter",
       "Recipient delivery results per destination (top destinations, the rest as other).");
  for (const auto& [name, counts] : destination_results_)
    for (std::size_t i = 0; i < attempt_result_count; ++i)
      fmt::format_to(std::back_inserter(out),
                     "relayd_destination_attempts_total{{destination=\"{}\",result=\"{}\"}} {}\n",
                     escape_label_value(name), to_string(static_cast<attempt_result>(i)), counts[i]);
}

}  // namespace relayd
