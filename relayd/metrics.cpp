// Implements metrics.hpp. Plain counters are relaxed atomics; labelled series, the
// histogram and the queue gauges sit behind one mutex that render() also takes, so
// a histogram's buckets, _sum and _count are always read together.
#include "relayd/metrics.hpp"

#include <fmt/format.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#include <chrono>
#include <cmath>
#include <limits>

namespace relayd {
namespace {

constexpr std::size_t max_label_len = 40;
constexpr std::size_t max_dynamic_series = 64;  // per labelled family; more go to "other"

constexpr std::array<std::string_view, attempt_result_count> attempt_names = {"sent", "deferred",
                                                                              "failed"};
constexpr std::array<std::string_view, deferral_class_count> deferral_names = {
    "4xx", "421_throttle", "connect", "dns", "tls", "timeout", "local"};
constexpr std::array<std::string_view, 4> state_names = {"active", "deferred", "held", "dead"};

// "Rejected" -> "rejected", "no route!" -> "no_route_", "" -> "unknown".
std::string sanitize_reason(std::string_view in) {
  std::string out;
  for (char ch : in.substr(0, max_label_len)) {
    auto c = static_cast<unsigned char>(ch);
    if (c >= 'A' && c <= 'Z') c = static_cast<unsigned char>(c - 'A' + 'a');
    out +=
        (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ? static_cast<char>(c) : '_';
  }
  return out.empty() ? "unknown" : out;
}

template <typename Map>
typename Map::mapped_type& slot(Map& m, std::string_view key) {
  auto it = m.find(key);
  if (it != m.end()) return it->second;
  if (m.size() >= max_dynamic_series) return m[std::string("other")];
  return m.emplace(std::string(key), typename Map::mapped_type{}).first->second;
}

void family(std::string& out, std::string_view name, std::string_view type, std::string_view help) {
  fmt::format_to(std::back_inserter(out), "# HELP {} {}\n# TYPE {} {}\n", name,
                 metrics::escape_help(help), name, type);
}

template <typename V>
void sample(std::string& out, std::string_view name, V value) {
  fmt::format_to(std::back_inserter(out), "{} {}\n", name, value);
}

template <typename V>
void sample(std::string& out, std::string_view name, std::string_view label,
            std::string_view label_value, V value) {
  fmt::format_to(std::back_inserter(out), "{}{{{}=\"{}\"}} {}\n", name, label,
                 metrics::escape_label_value(label_value), value);
}

}  // namespace

std::string_view to_string(attempt_result r) {
  return attempt_names[static_cast<std::size_t>(r)];
}
attempt_result attempt_result_of(outcome_kind k) {
  switch (k) {
    case outcome_kind::delivered: return attempt_result::sent;
    case outcome_kind::failed: return attempt_result::failed;
    case outcome_kind::deferred: break;
  }
  return attempt_result::deferred;
}
std::string_view to_string(deferral_class c) {
  return deferral_names[static_cast<std::size_t>(c)];
}

deferral_class classify_deferral(const recipient_outcome& o) {
  using queue::outcome_cause;
  switch (o.cause) {
    case outcome_cause::auth:
    case outcome_cause::local_config: return deferral_class::local;
    case outcome_cause::tls: return deferral_class::tls;
    case outcome_cause::reply:
      if (o.code == 421 || (o.code >= 400 && o.code < 500 && o.status.starts_with("4.7.")))
        return deferral_class::throttle_421;
      return deferral_class::reply_4xx;  // any reply, 5xx set-up ones included
    case outcome_cause::dns: return deferral_class::dns;
    case outcome_cause::timeout: return deferral_class::timeout;
    case outcome_cause::refused:
    case outcome_cause::lost: return deferral_class::connect;
    case outcome_cause::unknown:
    case outcome_cause::none:
    case outcome_cause::protocol:
    case outcome_cause::capability:
    case outcome_cause::expired: break;
  }
  return deferral_class::local;  // protocol error, local error, ...
}

bool waits_deferred(const queue::recipient& rc) {
  // An outcome without an attempt (a destination backing off, suspended, or
  // over its rate) still leaves its reply: the recipient waits deferred.
  return rc.state == queue::rcpt_state::pending && (rc.attempts > 0 || !rc.last_reply.empty());
}

queue_state state_of(const queue::envelope_record& r) {
  if (r.flags & queue::flag_held) return queue_state::held;
  for (const auto& rc : r.recipients)
    if (waits_deferred(rc)) return queue_state::deferred;
  return queue_state::active;
}

void queue_census::add(const queue::envelope_record& r) {
  switch (state_of(r)) {
    case queue_state::held:
      ++gauges.held;
      return;
    case queue_state::deferred:
      ++gauges.deferred;
      break;
    case queue_state::active:
    case queue_state::dead:
      ++gauges.active;
      break;
  }
  const double age = static_cast<double>(now_us_ - r.arrival_us) / 1e6;
  gauges.oldest_age_seconds = std::max(gauges.oldest_age_seconds, age);
}

std::uint64_t effective_spool_max(const std::string& dir, std::uint64_t used_bytes,
                                  std::uint64_t max_size, std::uint64_t min_free_disk) {
  struct statvfs vfs {};
  if (::statvfs(dir.c_str(), &vfs) != 0) return max_size != 0 ? max_size : used_bytes;
  const auto avail = static_cast<std::uint64_t>(vfs.f_bavail) * vfs.f_frsize;
  std::uint64_t file = 0;
  struct stat st {};
  if (::stat((dir + "/data.mdb").c_str(), &st) == 0) file = static_cast<std::uint64_t>(st.st_size);
  // The spool refuses mail once free disk drops below min_free_disk.
  const std::uint64_t disk_cap =
      std::max(file, used_bytes) + (avail > min_free_disk ? avail - min_free_disk : 0);
  return max_size != 0 ? std::min(max_size, disk_cap) : disk_cap;
}

metrics::metrics(double start_time_seconds) : start_time_(start_time_seconds) {
  if (start_time_ == 0) {
    start_time_ =
        std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  }
  for (auto r : known_dead_reasons) dead_letters_.emplace(std::string(r), 0);
  for (auto r : {"success", "failure", "testing_failure"})
    tls_policy_results_.emplace(std::pair<std::string, std::string>{"mta-sts", r}, 0);
  for (auto r : {"success", "failure"})
    tls_policy_results_.emplace(std::pair<std::string, std::string>{"dane", r}, 0);
  reload_at_ = start_time_;
}

void metrics::set_config_reload(bool ok, double at_seconds) {
  std::lock_guard lock(mu_);
  reload_ok_ = ok;
  if (ok) reload_at_ = at_seconds;
}

void metrics::dead_letter(std::string_view reason) {
  const auto r = sanitize_reason(reason);
  std::lock_guard lock(mu_);
  ++slot(dead_letters_, r);
}

void metrics::smtp_rejection(int code) {
  const std::string c = code >= 400 && code <= 599 ? std::to_string(code) : "other";
  std::lock_guard lock(mu_);
  ++slot(rejections_, c);
}

void metrics::observe_delivery_duration(double seconds) {
  if (std::isnan(seconds)) return;
  if (seconds < 0) seconds = 0;
  std::lock_guard lock(mu_);
  for (std::size_t i = 0; i < duration_buckets.size(); ++i) {
    if (seconds <= duration_buckets[i]) {
      ++bucket_counts_[i];
      break;
    }
  }
  ++duration_count_;
  duration_sum_ += seconds;
}

void metrics::add_listener(std::string_view listener) {
  std::lock_guard lock(mu_);
  slot(connections_, listener);
}

void metrics::connection_opened(std::string_view listener) {
  std::lock_guard lock(mu_);
  ++slot(connections_, listener);
}

void metrics::connection_closed(std::string_view listener) {
  std::lock_guard lock(mu_);
  auto& n = slot(connections_, listener);
  if (n > 0) --n;
}

void metrics::set_queue_gauges(const queue_gauges& g) {
  std::lock_guard lock(mu_);
  queue_ = g;
}

namespace {

// Prometheus text format escaping: backslash and newline always, the double
// quote only inside label values.
std::string escape(std::string_view v, bool quote) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '\n')
      out += "\\n";
    else if (c == '"' && quote)
      out += "\\\"";
    else
      out += c;
  }
  return out;
}

}  // namespace

std::string metrics::escape_label_value(std::string_view v) { return escape(v, true); }

std::string metrics::escape_help(std::string_view v) { return escape(v, false); }

std::string metrics::format_value(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (v == std::floor(v) && std::fabs(v) < 1e15)
    return fmt::format("{}", static_cast<long long>(v));
  return fmt::format("{}", v);  // shortest form that reads back exactly
}

void metrics::set_dkim_key_dns_match(std::string_view domain, std::string_view selector,
                                     bool match) {
  std::lock_guard lock(mu_);
  dkim_dns_match_[{std::string(domain), std::string(selector)}] = match ? 1 : 0;
}

void metrics::tls_policy_result(std::string_view policy, std::string_view result) {
  std::lock_guard lock(mu_);
  // Both labels are constants of delivery_tls_report.cpp, never data.
  ++tls_policy_results_[{std::string(policy), std::string(result)}];
}

std::string metrics::render() const {
  auto load = [](const std::atomic<std::uint64_t>& a) { return a.load(std::memory_order_relaxed); };
  std::string out;
  out.reserve(4096);

  family(out, "relayd_messages_received_total", "counter",
         "Messages accepted (250 after DATA, committed to the spool).");
  sample(out, "relayd_messages_received_total", load(received_));

  family(out, "relayd_delivery_attempts_total", "counter",
         "Recipient delivery results, one per status= log line, by result.");
  for (std::size_t i = 0; i < attempt_result_count; ++i)
    sample(out, "relayd_delivery_attempts_total", "result", attempt_names[i], load(attempts_[i]));

  family(out, "relayd_deferrals_total", "counter",
         "Recipient deferrals by class of the reply or failure that caused them.");
  for (std::size_t i = 0; i < deferral_class_count; ++i)
    sample(out, "relayd_deferrals_total", "class", deferral_names[i], load(deferrals_[i]));

  family(out, "relayd_bounces_total", "counter", "Failure DSNs (bounces) queued to senders.");
  sample(out, "relayd_bounces_total", load(bounces_));

  family(out, "relayd_delay_warnings_total", "counter",
         "Delay warning DSNs (Action: delayed) queued to senders.");
  sample(out, "relayd_delay_warnings_total", load(delay_warnings_));

  family(out, "relayd_in_flight_messages", "gauge",
         "Messages dispatched to delivery whose results are not stored yet.");
  sample(out, "relayd_in_flight_messages", load(in_flight_));

  family(out, "relayd_start_time_seconds", "gauge", "Start time of the daemon, Unix seconds.");
  sample(out, "relayd_start_time_seconds", format_value(start_time_));

  std::lock_guard lock(mu_);
  family(out, "relayd_config_last_reload_successful", "gauge",
         "Whether the last configuration reload succeeded (1) or kept the running one (0).");
  sample(out, "relayd_config_last_reload_successful", reload_ok_ ? "1" : "0");
  family(out, "relayd_config_last_reload_success_timestamp_seconds", "gauge",
         "When the configuration was last loaded successfully (start or reload), Unix seconds.");
  sample(out, "relayd_config_last_reload_success_timestamp_seconds", format_value(reload_at_));
  family(out, "relayd_dead_letters_total", "counter",
         "Recipients moved to the dead spool (a message counts once per failed recipient), "
         "by reason class.");
  for (const auto& [reason, n] : dead_letters_)
    sample(out, "relayd_dead_letters_total", "reason", reason, n);

  family(out, "relayd_smtp_rejections_total", "counter",
         "Replies >= 400 sent to SMTP clients, by reply code.");
  for (const auto& [code, n] : rejections_)
    sample(out, "relayd_smtp_rejections_total", "code", code, n);

  family(out, "relayd_smtp_connections", "gauge", "Open inbound SMTP connections per listener.");
  for (const auto& [listener, n] : connections_)
    sample(out, "relayd_smtp_connections", "listener", listener, n);

  family(out, "relayd_delivery_duration_seconds", "histogram",
         "Duration of one delivery transaction: DNS, connect and transfer.");
  std::uint64_t cumulative = 0;
  for (std::size_t i = 0; i < duration_buckets.size(); ++i) {
    cumulative += bucket_counts_[i];
    sample(out, "relayd_delivery_duration_seconds_bucket", "le", format_value(duration_buckets[i]),
           cumulative);
  }
  sample(out, "relayd_delivery_duration_seconds_bucket", "le", "+Inf", duration_count_);
  sample(out, "relayd_delivery_duration_seconds_sum", format_value(duration_sum_));
  sample(out, "relayd_delivery_duration_seconds_count", duration_count_);

  family(out, "relayd_queue_messages", "gauge",
         "Messages in the queue by state (active, deferred, held) and dead-spool entries.");
  const std::array<std::uint64_t, 4> states = {queue_.active, queue_.deferred, queue_.held,
                                               queue_.dead};
  for (std::size_t i = 0; i < states.size(); ++i)
    sample(out, "relayd_queue_messages", "state", state_names[i], states[i]);

  family(out, "relayd_queue_oldest_age_seconds", "gauge",
         "Age of the oldest active or deferred message; 0 when there is none.");
  sample(out, "relayd_queue_oldest_age_seconds", format_value(queue_.oldest_age_seconds));

  family(out, "relayd_spool_bytes", "gauge", "Bytes of the spool in use (LMDB pages).");
  sample(out, "relayd_spool_bytes", queue_.spool_bytes);

  family(out, "relayd_spool_max_bytes", "gauge",
         "Bytes the spool can grow to: max_spool_size or what the disk allows.");
  sample(out, "relayd_spool_max_bytes", queue_.spool_max_bytes);

  if (!dkim_dns_match_.empty())
    family(out, "relayd_dkim_key_dns_match", "gauge",
           "1 while the [[dkim]] selector's DNS TXT record publishes the configured key, else 0.");
  for (const auto& [name, v] : dkim_dns_match_)
    fmt::format_to(std::back_inserter(out),
                   "relayd_dkim_key_dns_match{{domain=\"{}\",selector=\"{}\"}} {}\n",
                   escape_label_value(name.first), escape_label_value(name.second), v);

  family(out, "relayd_tls_policy_results_total", "counter",
         "Outbound TLS policy outcomes by policy (mta-sts, none) and result (success; failure: "
         "an enforced policy refused the MX host or its TLS; testing_failure: a policy in "
         "testing mode would have).");
  for (const auto& [key, n] : tls_policy_results_)
    fmt::format_to(std::back_inserter(out),
                   "relayd_tls_policy_results_total{{policy=\"{}\",result=\"{}\"}} {}\n",
                   escape_label_value(key.first), escape_label_value(key.second), n);
  render_more(out);
  return out;
}

}  // namespace relayd
