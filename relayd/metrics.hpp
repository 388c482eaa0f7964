// The daemon's Prometheus metrics (DESIGN.md, "Metrics"): counters, one histogram
// and gauges, rendered in text exposition format 0.0.4 by render(). No I/O and no
// Asio here (metrics_http serves render() over HTTP). Every method is thread-safe;
// the daemon calls them all on its I/O thread. Label values that come from data
// (reasons, listeners) are escaped; reasons are reduced to [a-z0-9_] so a bad value
// can never explode the number of series.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <utility>
#include <mutex>
#include <string>
#include <string_view>

#include "queue/record.hpp"
#include "relayd/delivery_types.hpp"

namespace relayd {

// relayd_delivery_attempts_total{result}.
enum class attempt_result : std::uint8_t { sent, deferred, failed };
inline constexpr std::size_t attempt_result_count = 3;

// relayd_deferrals_total{class}: why a recipient was deferred.
enum class deferral_class : std::uint8_t {
  reply_4xx,     // "4xx": the server answered with a temporary failure
  throttle_421,  // "421_throttle": 421 or 4xx 4.7.x: the destination backs off
  connect,       // "connect": refused, reset, lost, no host answered
  dns,           // "dns": SERVFAIL, REFUSED, resolver timeout (4.4.3)
  tls,           // "tls": handshake failed, STARTTLS refused (4.7.5)
  timeout,       // "timeout": connect or command timeout
  local,         // "local": our side: AUTH refused (535), local processing error
};
inline constexpr std::size_t deferral_class_count = 7;

std::string_view to_string(attempt_result r);
// The label of a recipient's fate (outcome_kind): delivered -> sent.
attempt_result attempt_result_of(outcome_kind k);
std::string_view to_string(deferral_class c);

// The class of a deferred outcome, from its typed facts (cause, code, enhanced
// status; see delivery_outcome.hpp), never from its text. Suspended deferrals
// (destination backing off) carry the original reason and get its class.
deferral_class classify_deferral(const recipient_outcome& o);

// relayd_queue_messages{state}: a message's state as relayctl shows it.
enum class queue_state : std::uint8_t { active, deferred, held, dead };
// held if flag_held; deferred if a pending recipient waits deferred; else active.
queue_state state_of(const queue::envelope_record& r);
// A pending recipient that has been deferred: tried, or held back by its
// destination's backoff, suspension or rate (relayctl and the metrics agree).
bool waits_deferred(const queue::recipient& rc);

// The queue gauges, filled by a periodic spool scan (see queue_census below).
struct queue_gauges {
  std::uint64_t active = 0, deferred = 0, held = 0, dead = 0;
  double oldest_age_seconds = 0;      // oldest active or deferred message; 0 when none
  std::uint64_t spool_bytes = 0;      // spool::used_bytes()
  std::uint64_t spool_max_bytes = 0;  // effective_spool_max()
};

// Accumulates queue_gauges over spool::scan() batches:
//   queue_census c(now_us); spool.scan(after, n, [&](auto& r) { c.add(r); }); ...
//   c.gauges.dead = spool.dead_count(); ...
struct queue_census {
  explicit queue_census(std::int64_t now_us) : now_us_(now_us) {}
  void add(const queue::envelope_record& r);
  queue_gauges gauges;

 private:
  std::int64_t now_us_;
};

// What "full" means for the spool: min(max_size, used + free disk - min_free_disk),
// where max_size 0 means no limit (statvfs on `dir`; falls back to max_size or
// used when statvfs fails).
std::uint64_t effective_spool_max(const std::string& dir, std::uint64_t used_bytes,
                                  std::uint64_t max_size, std::uint64_t min_free_disk);

// Pending recipients of one destination (metrics_destinations.cpp).
struct destination_count {
  std::uint64_t queued = 0;    // pending recipients
  std::uint64_t deferred = 0;  // of those, attempted at least once
};

// The destination name of a recipient in the per-destination series: the
// part after the last '@' (the whole address when it has none).
std::string_view destination_domain(std::string_view address);

class metrics {
 public:
  // Upper bounds of relayd_delivery_duration_seconds's buckets (+Inf implied).
  static constexpr std::array<double, 14> duration_buckets = {
      0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300};
  // Dead-letter reasons exported at 0 from the start, so increase() sees the first one.
  static constexpr std::array<std::string_view, 4> known_dead_reasons = {
      "rejected", "expired", "no_route", "bounce_failed"};

  // `start_time_seconds`: relayd_start_time_seconds (Unix time; 0: now).
  explicit metrics(double start_time_seconds = 0);
  metrics(const metrics&) = delete;
  metrics& operator=(const metrics&) = delete;

  // ---- counters ------------------------------------------------------------
  void message_received() { received_.fetch_add(1, std::memory_order_relaxed); }
  // One recipient's delivery result (one per "status=" log line).
  void delivery_attempt(attempt_result r) {
    attempts_[static_cast<std::size_t>(r)].fetch_add(1, std::memory_order_relaxed);
  }
  void delivery_attempt(outcome_kind k) { delivery_attempt(attempt_result_of(k)); }
  void deferral(deferral_class c) {
    deferrals_[static_cast<std::size_t>(c)].fetch_add(1, std::memory_order_relaxed);
  }
  // A dead-spool entry was made; `reason` is its reason class ("rejected", ...).
  void dead_letter(std::string_view reason);
  void bounce() { bounces_.fetch_add(1, std::memory_order_relaxed); }  // failure DSN queued
  void delay_warning() { delay_warnings_.fetch_add(1, std::memory_order_relaxed); }
  // A reply >= 400 the SMTP server sent to a client (codes outside 400..599: "other").
  void smtp_rejection(int code);

  // ---- histogram -----------------------------------------------------------
  // Seconds one delivery transaction took (DNS + connect + transfer).
  void observe_delivery_duration(double seconds);

  // ---- gauges --------------------------------------------------------------
  // Registers a listener at 0 connections (call when it starts listening).
  void add_listener(std::string_view listener);
  void connection_opened(std::string_view listener);
  void connection_closed(std::string_view listener);
  void set_in_flight(std::uint64_t messages) {
    in_flight_.store(messages, std::memory_order_relaxed);
  }
  void set_queue_gauges(const queue_gauges& g);
  void set_queue_gauges(std::uint64_t active, std::uint64_t deferred, std::uint64_t held,
                        std::uint64_t dead, double oldest_age_seconds, std::uint64_t spool_bytes,
                        std::uint64_t spool_max_bytes) {
    set_queue_gauges(queue_gauges{active, deferred, held, dead, oldest_age_seconds, spool_bytes,
                                  spool_max_bytes});
  }

  // relayd_dkim_key_dns_match{domain,selector}: 1 while the selector's DNS
  // record publishes the configured key, else 0 (dkim_dns_monitor).
  void set_dkim_key_dns_match(std::string_view domain, std::string_view selector, bool match);

  // relayd_config_last_reload_successful (1 at start) and
  // relayd_config_last_reload_success_timestamp_seconds (the start time until a
  // reload succeeds): `ok` false keeps the timestamp (`at_seconds` is ignored).
  void set_config_reload(bool ok, double at_seconds);
  // relayd_tls_policy_results_total{policy,result}: one outbound TLS policy
  // outcome (relayd/delivery_tls_report.hpp names the labels). The MTA-STS
  // series are exported at 0 from the start, so increase() sees the first one.
  void tls_policy_result(std::string_view policy, std::string_view result);
  // ---- [events] (relayd/events_log) ----------------------------------------
  void events_dropped(std::uint64_t n) { events_dropped_.fetch_add(n, std::memory_order_relaxed); }
  void set_events_outbox(std::uint64_t n) { events_outbox_.store(n, std::memory_order_relaxed); }
  void webhook_post(bool ok) {
    (ok ? webhook_ok_ : webhook_failed_).fetch_add(1, std::memory_order_relaxed);
  }

  // ---- per destination (metrics_destinations.cpp) ----------------------------
  // The census's pending recipients per destination (recipient domain): the
  // `destinations_top` with the most get their own series, the rest add up
  // under "other". Also decides which destinations destination_result() names.
  void set_destination_gauges(const std::map<std::string, destination_count, std::less<>>& all,
                              std::size_t top);
  // One recipient's result at `destination` (its domain), for
  // relayd_destination_attempts_total{destination,result}: a destination not in
  // the current top counts as "other".
  void destination_result(std::string_view destination, attempt_result r);
  // relayd_destinations_suspended{cause=...}: destinations (or [[destination]]
  // groups) suspended now, by what suspended them (delivery_scheduler.hpp's
  // suspend_cause names); set by the scheduler at each suspend and resume.
  void set_suspended_destinations(std::map<std::string, std::size_t, std::less<>> by_cause);

  // ---- exposition ----------------------------------------------------------
  // Prometheus text format 0.0.4 (Content-Type "text/plain; version=0.0.4").
  std::string render() const;
  static constexpr std::string_view content_type = "text/plain; version=0.0.4; charset=utf-8";

  // Escaping of the text format, exposed for tests.
  static std::string escape_label_value(std::string_view v);  // \ " and newline
  static std::string escape_help(std::string_view v);         // \ and newline
  static std::string format_value(double v);                  // 1, 0.5, +Inf, NaN

 private:
  std::atomic<std::uint64_t> received_{0};
  std::array<std::atomic<std::uint64_t>, attempt_result_count> attempts_{};
  std::array<std::atomic<std::uint64_t>, deferral_class_count> deferrals_{};
  std::atomic<std::uint64_t> bounces_{0};
  std::atomic<std::uint64_t> delay_warnings_{0};
  std::atomic<std::uint64_t> in_flight_{0};
  double start_time_;

  mutable std::mutex mu_;  // guards everything below
  std::map<std::string, std::uint64_t, std::less<>> dead_letters_;
  std::map<std::string, std::uint64_t, std::less<>> rejections_;
  std::map<std::string, std::int64_t, std::less<>> connections_;
  std::array<std::uint64_t, duration_buckets.size()> bucket_counts_{};  // not cumulative
  std::uint64_t duration_count_ = 0;
  double duration_sum_ = 0;
  queue_gauges queue_;
  std::map<std::pair<std::string, std::string>, int> dkim_dns_match_;  // (domain, selector)
  bool reload_ok_ = true;
  double reload_at_ = 0;  // the start time until a reload succeeds
  std::map<std::pair<std::string, std::string>, std::uint64_t> tls_policy_results_;  // (policy, result)

  // metrics_destinations.cpp: [events] counters, build info, per-destination series.
  void render_more(std::string& out) const;  // called by render() with mu_ held
  std::atomic<std::uint64_t> events_dropped_{0}, events_outbox_{0}, webhook_ok_{0},
      webhook_failed_{0};
  std::size_t destinations_top_ = 20;
  std::map<std::string, destination_count, std::less<>> destination_gauges_;  // top + "other"
  std::map<std::string, std::size_t, std::less<>> suspended_;  // by cause
  // Counters by (destination, result); at most 2 x destinations_top names and "other".
  std::map<std::string, std::array<std::uint64_t, attempt_result_count>, std::less<>>
      destination_results_;
};

}  // namespace relayd
