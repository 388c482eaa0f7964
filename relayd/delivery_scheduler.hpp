// The scheduler: walks the spool's due index, groups each due message's
// recipients by destination (route, then recipient domain or relayhost) and queues one
// job per destination; it asks its delivery_port (the delivery agent) for at
// most concurrency_per_destination connections each, which pull the jobs.
// Results go back to the spool per recipient (delivery_retry decides backoff
// and expiry). A 421 or 4.7.x rate limit, or a destination that cannot be
// reached at all, backs off the whole destination. Memory stays bounded: at
// most max_in_flight messages are held, the rest stays in LMDB until due.
// Fails by logging: a result the spool cannot store stays due and is retried.
// Shaping, suspensions and circuit breakers: delivery_shaping.cpp.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "queue/spool.hpp"
#include "relayd/config.hpp"
#include "relayd/delivery_rate.hpp"
#include "relayd/delivery_retry.hpp"
#include "relayd/delivery_tls_status.hpp"
#include "relayd/delivery_types.hpp"
#include "relayd/events_format.hpp"
#include "relayd/net.hpp"
#include "smtp/dsn.hpp"

namespace relayd {

class delivery_port;
class event_log;
struct event_batch;
class metrics;
class destination_policies;
struct destination_policy;

// A suspension with no end: until relayctl resume.
inline constexpr std::int64_t suspended_until_resume = INT64_MAX / 2;

// What suspended a destination (the relayd_destinations_suspended label).
enum class suspend_cause : std::uint8_t {
  rule,         // a [[destination.rule]] or built-in profile matched a reply
  relayctl,     // relayctl suspend
  credentials,  // circuit breaker: our credentials or token refused (AUTH 535)
  tls_policy,   // circuit breaker: every MX host tried failed MTA-STS enforce or DANE
  dns,          // circuit breaker: the MX/relayhost lookup failed (SERVFAIL, timeout)
};
inline constexpr std::size_t suspend_cause_count = 5;
std::string_view to_string(suspend_cause c);

// The DNS circuit breaker opens after this many attempts in a row whose lookup
// failed temporarily (SERVFAIL, REFUSED, timeout), each after the
// destination's backoff: a few minutes of broken DNS, not one lost packet.
inline constexpr std::uint32_t dns_breaker_after = 3;

// What destinations of one [[destination]] policy share (or one destination
// alone, when no policy matches it): connections, rate buckets, suspension.
// I/O thread only. Policy groups live as long as the scheduler; a destination's
// own group lives in the destination.
struct destination_group {
  std::string name;  // the policy's match text, or the destination's id
  const destination_policy* policy = nullptr;
  token_bucket rate, connect;  // max_rate, connect_rate (unlimited without)
  std::size_t active = 0;      // connections of all its destinations
  std::int64_t suspended_until_us = 0;  // no connection before; suspended_until_resume: held
  std::string suspend_reason;           // why, for relayctl destinations and the log
  std::int64_t slow_until_us = 0;       // a "slow" rule: one connection, half the rate
  suspend_cause cause = suspend_cause::rule;  // of the current (or last) suspension
  std::uint32_t breaker_failures = 0;   // consecutive systemic failures (breaker open)
  // The "suspended" event was told and "resumed" not yet (once per change):
  // resumed when relayctl resume ends it or a connection works after its end.
  bool suspension_told = false;
  std::string last_reply;               // the last reply or failure heard from it
};

// One destination's waiting jobs and connection bookkeeping. Everything here is
// touched on the I/O thread only.
//
// Lifetime: the scheduler owns each destination (a stable address in
// destinations_) and drops it only when active == 0, nothing waits and no
// backoff is left (maybe_forget), and its own group has no suspension whose
// "resumed" event is still to be told. So a connection worker may hold a
// `destination&` from start_connection() until it calls connection_done(): it
// is counted in `active` all that time. After connection_done() it must not
// touch the destination again.
struct destination {
  destination_key key;
  std::deque<job> waiting;
  std::size_t active = 0;      // connections open or opening (pins this entry)
  std::size_t connecting = 0;  // of those, not yet ready to take a job
  std::size_t waking = 0;      // idle connections woken for a job, not yet resumed
  // Connections lingering for more jobs. Borrowed: each timer lives in the
  // frame of the worker coroutine that pushed it, and that worker takes it out
  // again before the timer dies, unless the scheduler took it out first to wake
  // it (counted in `waking`). The scheduler only ever calls cancel() on an
  // entry, and only while it is in this deque.
  std::deque<asio::steady_timer*> idle;
  std::int64_t backoff_until_us = 0;
  std::uint32_t failures = 0;  // consecutive destination-level failures
  std::uint32_t dns_failures = 0;  // of those, attempts in a row whose lookup failed
  recipient_outcome backoff_reason;  // what started the backoff (421, refused, ...)
  // Shaping: `group` is the policy's shared group or `own`; never null.
  destination_group* group = nullptr;
  std::unique_ptr<destination_group> own;
  bool mx_mode = true;   // MX delivery (not a relayhost): policies apply
  // A connection to it became ready since its last failure: until then at most
  // one connection opens at a time (a circuit breaker's probe, a new destination).
  bool proven = false;
  std::string last_reply;
};

// One line of relayctl destinations.
struct destination_report {
  std::string name;    // destination id ("example.org", "[smtp.example]:587") or a policy
  std::string policy;  // the policy's match text, "" when none
  std::string state;   // "active", "idle", "backoff", "suspended", "held", "slow"
  std::string rate;    // max_rate ("60/m"), "" when unlimited
  std::size_t waiting = 0, connections = 0;
  std::int64_t until_us = 0;  // suspended or backing off until (0: not)
  std::string reason;         // why it is suspended or backing off
  std::string last_reply;
};

// How long each phase of one attempt took, for the log's delays=a/b/c/d.
struct attempt_timing {
  double dns = 0, connect = 0, transfer = 0;  // seconds
};

class scheduler {
 public:
  using clock_fn = std::function<std::int64_t()>;  // wall clock, microseconds

  // `m` counts delivery results, deferrals, dead letters and durations
  // (nullptr: nothing is counted). `now_us` is the wall clock that due times,
  // backoffs and expiry are measured on (default queue::wall_clock_us); tests
  // inject their own and call wake() after moving it. At most `max_in_flight`
  // messages are held in memory at once.
  scheduler(asio::io_context& io, const config& cfg, queue::spool& spool, metrics* m = nullptr,
            clock_fn now_us = {}, std::size_t max_in_flight = 10000);
  ~scheduler();

  // Starts dispatching due mail to `port`. The port (the delivery agent) is
  // built with a reference to this scheduler, so the two point at each other.
  // That is safe because both are used only by handlers that io_ runs: build
  // the scheduler, then the agent, call start(agent), and destroy them (agent
  // first) only after io_ stopped running handlers.
  void start(delivery_port& port);
  // Stops dispatching; connections finish their current transaction.
  // `on_idle` runs once no delivery is running and every result is stored;
  // after it, no spool callback of this scheduler is outstanding.
  void stop(std::function<void()> on_idle);

  std::size_t in_flight_count() const { return in_flight_.size(); }
  bool in_flight(const std::string& id) const { return in_flight_.contains(id); }

  // A message is about to be spooled on another thread (the inbound one), and
  // its arrival is told later by notify_enqueued(due, id): until then the loop
  // does not dispatch it, even once it sees it in the spool, so no delivery
  // event of it can come before its "received". Any thread; arrival_failed()
  // when the enqueue failed.
  void arriving(const std::string& id);
  void arrival_failed(const std::string& id);
  // A message was committed with this due time (new mail). With its `id`, a
  // message the loop has already dispatched (it read the spool after the
  // commit) costs nothing; otherwise, due before the cursor, the loop reads
  // the due index from its start again. Ends the id's arriving().
  void notify_enqueued(std::int64_t due_us, const std::string& id = {});
  // relayctl -f / -r / -H: the spool was rescheduled; forget destination backoffs.
  void rescan(bool clear_backoffs);
  // Plans again at once: reads what is due from the cursor on and sets the next
  // wake-up. For anything that may make mail due sooner than planned (stored
  // results, a clock a test moved).
  void wake();
  // The configuration was reloaded (cfg() now holds the new one): results from
  // now on use its retry settings, new dispatches its routes and concurrency;
  // when min_backoff or max_backoff changed, deferred mail already in the spool
  // is re-keyed (relayd/delivery_rekey.hpp).
  void apply_config();

  // ---- for the delivery_port's connection workers (I/O thread) --------------
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
  // A connection ended (the worker is done with `d`).
  void connection_done(destination& d);

  // A connection to `d` is ready (set-up done): the destination is proven, more
  // connections may open, a circuit breaker closes.
  void connection_ready(destination& d);
  // The MX host name the connection to `d` reached: an "mx:" policy may now match.
  void learned_mx(destination& d, const std::string& host_name);
  // The circuit breaker: a systemic failure (`cause`: credentials for AUTH 535
  // or an OAuth2 token we cannot get; tls_policy when every MX host tried failed
  // its MTA-STS or DANE policy; dns, from unreachable(), after dns_breaker_after
  // failed lookups in a row) suspends d's group for the backoff interval, defers
  // its waiting jobs (no attempt each, nothing bounced) and lets one probe
  // through when it ends; a probe that fails suspends it again for longer, one
  // that connects (connection_ready) closes the breaker.
  void systemic_failure(destination& d, const recipient_outcome& why,
                        suspend_cause cause = suspend_cause::credentials);
  // [[destination]] max_messages_per_connection for d (0: no limit).
  std::size_t messages_per_connection(const destination& d) const;

  // ---- for the control socket (I/O thread) -----------------------------------
  // Where a recipient of mail from `sender` goes: its route and, by MX, its domain.
  destination_key destination_of(const std::string& sender, const std::string& address) const;
  // The name of the group (policy or destination id) `key` is shaped with.
  std::string group_name_of(const destination_key& key) const;
  std::vector<destination_report> report() const;
  // relayctl suspend NAME (a policy's match text, a destination id, a domain, a
  // relayhost or a route name): `for_us` 0 suspends until resume. Returns the
  // group's name, or an error when NAME names nothing relayd can deliver to.
  std::string suspend(const std::string& name, std::int64_t for_us, std::string& error);
  // relayctl resume NAME: ends the suspension and backoff; returns the group's
  // name ("" and `error` set when NAME is not known).
  std::string resume(const std::string& name, std::string& error);

  // Told after the results of each job are stored (on the I/O thread): the
  // message as dispatched, the recipients' new states and what became of the
  // message. For `sendmail --wait` (control_wait_registry). One observer.
  using outcome_observer =
      std::function<void(const queue::envelope_record& snapshot,
                         std::span<const queue::spool::recipient_update> updates,
                         queue::spool::completion c)>;
  void set_outcome_observer(outcome_observer o) { observer_ = std::move(o); }
  // [events]: each stored result (and each notice queued) is told to `e`,
  // stored in the spool's outbox with it. Null: none. `e` outlives the scheduler.
  void set_events(event_log* e) { events_ = e; }
  event_log* events() const { return events_; }

  const config& cfg() const { return cfg_; }
  queue::spool& spool() { return spool_; }
  metrics* stats() const { return metrics_; }  // may be null
  bool stopping() const { return stopping_; }
  std::int64_t now_us() const { return now_us_(); }
  // Each destination's TLS policy and last outcome (set by the connector,
  // read by relayctl destinations); outlives the destinations themselves.
  tls_status_table& tls_status() { return tls_status_; }
  const tls_status_table& tls_status() const { return tls_status_; }

 private:
  awaitable<void> loop();
  awaitable<void> rekey_deferred(retry_settings s);  // delivery_rekey.cpp
  // The spool runs its callbacks on the writer thread; every one the scheduler
  // hands it is made here (see the .cpp for the lifetime rule).
  template <typename F>
  auto on_io_thread(F f);
  void dispatch(const std::string& id, std::int64_t now);
  // `taken`: waiting jobs a ready connection is about to take itself.
  void start_connections(destination& d, std::size_t taken = 0);
  destination& destination_for(const destination_key& key);
  destination_group& group_for(const destination_policy& p);
  // Whether `d` may not connect now (suspended or backing off); `why` then says
  // how its jobs are deferred.
  bool blocked(destination& d, std::int64_t now, recipient_outcome& why);
  // When mail behind g's suspension comes back: its end, or for a suspension
  // until resume after max_backoff (so that expiry still applies).
  std::int64_t wake_after_suspension(const destination_group& g, std::int64_t now) const;
  // Defers one job with `why` (each recipient), as if it had been tried.
  void defer_job(destination& d, job j, const recipient_outcome& why);
  // A reply rule of d's policy matched `o`: acts on the group; true if it did.
  bool apply_rules(destination& d, const recipient_outcome& o);
  void suspend_group(destination_group& g, std::int64_t until_us, std::string reason,
                     suspend_cause cause);
  // g is no longer suspended (`how`: by relayctl, or a connection works): the
  // "resumed" event, once after each "suspended" one.
  void tell_resumed(destination_group& g, const std::string& how);
  // Sets relayd_destinations_suspended from the groups' told states.
  void count_suspended();
  // A job over g's max_rate: the deferral that books its slot (booked: the slot
  // it was given last time, if it comes back at it). None: it may go now.
  std::optional<recipient_outcome> rate_wait(destination_group& g, std::int64_t booked,
                                             std::int64_t now);
  // "421 4.7.28 text" or the sentence, for last_reply.
  static std::string reply_text(const recipient_outcome& o);
  // Defers the waiting jobs of every destination of `g` (blocked now).
  void defer_group(destination_group& g);
  void retry_connects(std::int64_t now);
  // The destination `name` names for suspend/resume (created if needed), or null.
  destination_group* group_named(const std::string& name, bool create);
  void finish_all_waiting(destination& d, recipient_outcome why, const std::string& relay);
  // The last job of `id` has its results stored; `queued`: the message is
  // still in the spool (not delivered or moved to the dead spool).
  void job_stored(const std::string& id, bool queued);
  // The [events] of a job's stored results (`happened`: one per update, its
  // type still to decide; `told_failed`: failed recipients whose sender gets a
  // non-delivery notice).
  event_batch events_of(const queue::envelope_record& msg,
                        std::span<const queue::spool::recipient_update> updates,
                        std::span<const queue::recipient> told_failed,
                        std::vector<event> happened) const;
  // Queues a DSN (failed, delayed or relayed) about `recipients` of `message` to its sender.
  void queue_notice(const queue::envelope_record& message,
                    std::span<const queue::recipient> recipients, smtp::dsn_action action);
  void maybe_forget(destination& d);
  void maybe_idle();

  asio::io_context& io_;
  const config& cfg_;
  queue::spool& spool_;
  clock_fn now_us_;
  retry_settings retry_;
  metrics* metrics_ = nullptr;
  delivery_port* port_ = nullptr;  // set by start(); outlives io_'s handlers (see start())
  std::mt19937_64 rng_;
  std::function<double()> jitter_;

  asio::steady_timer timer_;
  bool wake_pending_ = false;
  bool stopping_ = false;
  std::function<void()> on_idle_;
  outcome_observer observer_;
  event_log* events_ = nullptr;
  std::optional<queue::spool::due_entry> cursor_;
  std::chrono::steady_clock::time_point last_full_scan_;
  std::unordered_map<std::string, std::size_t> in_flight_;  // id -> jobs not yet stored
  // Messages being spooled whose arrival is not told yet (arriving()): the
  // only state another thread touches, under its mutex.
  mutable std::mutex arriving_mu_;
  std::unordered_set<std::string> arriving_;
  bool is_arriving(const std::string& id) const;
  std::string held_by_;  // the arriving message the loop's last pass stopped before
  // In flight and its delay warning queued: the stored flag is not in the snapshot
  // that the message's other jobs hold.
  std::unordered_set<std::string> warned_;
  // Due while still in flight, so the cursor went past them: when their results
  // are stored (possibly due at once) the cursor starts over.
  std::unordered_set<std::string> passed_in_flight_;
  std::unordered_map<std::string, std::unique_ptr<destination>> destinations_;
  std::unique_ptr<destination_policies> policies_;
  std::unordered_map<std::string, std::unique_ptr<destination_group>> groups_;  // by policy
  std::unordered_map<std::string, std::string> mx_of_;  // domain -> MX host it was reached on
  tls_status_table tls_status_;
  // Destinations (ids) waiting for a connect_rate token, and when the first is due.
  std::unordered_set<std::string> connect_waiting_;
  std::int64_t next_connect_us_ = 0;
  std::size_t pending_updates_ = 0;
  std::size_t connections_ = 0;
  const std::size_t max_in_flight_;
  // Reset by the destructor: spool callbacks that arrive later find it expired.
  std::shared_ptr<const bool> alive_ = std::make_shared<const bool>(true);
};

}  // namespace relayd
