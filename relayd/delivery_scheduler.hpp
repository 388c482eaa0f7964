// The scheduler: walks the spool's due index, groups each due message's
// recipients by destination (recipient domain, or the relayhost) and queues one
// job per destination; delivery agents pull jobs over at most
// concurrency_per_destination connections each. Results go back to the spool
// per recipient (retry_policy decides backoff and expiry). A 421 or 4.7.x rate
// limit, or a destination that cannot be reached at all, backs off the whole
// destination. Memory stays bounded: at most max_in_flight messages are held,
// the rest stays in LMDB until due.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "queue/spool.hpp"
#include "relayd/config.hpp"
#include "relayd/delivery_retry.hpp"
#include "relayd/delivery_types.hpp"
#include "relayd/net.hpp"

namespace relayd {

class delivery_agent;
class metrics;

// One destination's waiting jobs and connection bookkeeping.
struct destination {
  destination_key key;
  std::deque<job> waiting;
  std::size_t active = 0;      // connections open or opening
  std::size_t connecting = 0;  // of those, not yet ready to take a job
  std::size_t waking = 0;      // idle connections woken for a job, not yet resumed
  std::deque<asio::steady_timer*> idle;  // connections lingering for more jobs
  std::int64_t backoff_until_us = 0;
  std::uint32_t failures = 0;  // consecutive destination-level failures
  recipient_outcome backoff_reason;  // what started the backoff (421, refused, ...)
};

// How long each phase of one attempt took, for the log's delays=a/b/c/d.
struct attempt_timing {
  double dns = 0, connect = 0, transfer = 0;  // seconds
};

class scheduler {
 public:
  using clock_fn = std::function<std::int64_t()>;  // wall clock, microseconds

  scheduler(asio::io_context& io, const config& cfg, queue::spool& spool, clock_fn now_us = {});
  ~scheduler();

  void set_agent(delivery_agent* agent) { agent_ = agent; }
  // Counters for delivery results, deferrals, dead letters and durations.
  void set_metrics(metrics* m) { metrics_ = m; }
  std::size_t in_flight_count() const { return in_flight_.size(); }
  void start();
  // Stops dispatching; connections finish their current transaction.
  // `on_idle` runs once no delivery is running and every result is stored.
  void stop(std::function<void()> on_idle);

  // A message was committed with this due time (new mail).
  void notify_enqueued(std::int64_t due_us);
  // relayctl -f / -r / -H: the spool was rescheduled; forget destination backoffs.
  void rescan(bool clear_backoffs);
  bool in_flight(const std::string& id) const { return in_flight_.contains(id); }

  // ---- for delivery agents --------------------------------------------------
  std::optional<job> next_job(destination& d);
  // Stores the outcome of a job's recipients (one per recipient of the job).
  void complete(destination& d, job j, std::vector<recipient_outcome> outcomes,
                const std::string& relay, const attempt_timing& timing);
  // The destination answered 421 / 4.7.x rate limit: every waiting job is
  // deferred until the destination's backoff ends (not counted as an attempt).
  void throttle(destination& d, const recipient_outcome& why);
  // No connection could be made (DNS retry, every host refused or timed out):
  // if no other connection to it works, the waiting jobs are deferred with
  // `why` and the destination backs off.
  void unreachable(destination& d, const recipient_outcome& why);
  // Permanent routing failure (NXDOMAIN, null MX): every waiting job fails.
  void no_route(destination& d, const recipient_outcome& why);
  // A connection ended (the agent's worker is done).
  void connection_done(destination& d);

  const config& cfg() const { return cfg_; }
  queue::spool& spool() { return spool_; }
  bool stopping() const { return stopping_; }
  std::int64_t now_us() const { return now_us_(); }

 private:
  awaitable<void> loop();
  void wake();
  void dispatch(const std::string& id, std::int64_t now);
  void start_connections(destination& d);
  destination& destination_for(const std::string& name);
  std::string destination_name(const std::string& address) const;
  void finish_all_waiting(destination& d, recipient_outcome why, const std::string& relay);
  void job_stored(const std::string& id);
  // Queues a DSN (failed or delayed) about `recipients` of `message` to its sender.
  void queue_notice(const queue::envelope_record& message,
                    std::span<const queue::recipient> recipients, bool failed);
  void maybe_forget(destination& d);
  void maybe_idle();

  asio::io_context& io_;
  const config& cfg_;
  queue::spool& spool_;
  clock_fn now_us_;
  retry_settings retry_;
  delivery_agent* agent_ = nullptr;
  metrics* metrics_ = nullptr;
  std::mt19937_64 rng_;
  std::function<double()> jitter_;

  asio::steady_timer timer_;
  bool wake_pending_ = false;
  bool stopping_ = false;
  std::function<void()> on_idle_;
  std::optional<queue::spool::due_entry> cursor_;
  std::chrono::steady_clock::time_point last_full_scan_;
  std::unordered_map<std::string, std::size_t> in_flight_;  // id -> jobs not yet stored
  // In flight and its delay warning queued: the stored flag is not in the snapshot
  // that the message's other jobs hold.
  std::unordered_set<std::string> warned_;
  // Due while still in flight, so the cursor went past them: when their results
  // are stored (possibly due at once) the cursor starts over.
  std::unordered_set<std::string> passed_in_flight_;
  std::unordered_map<std::string, std::unique_ptr<destination>> destinations_;
  std::size_t pending_updates_ = 0;
  std::size_t connections_ = 0;
  static constexpr std::size_t max_in_flight = 10000;
};

}  // namespace relayd
