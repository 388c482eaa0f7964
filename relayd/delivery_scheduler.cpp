// Implements delivery_scheduler.hpp: dispatch, results, backoff (the shaping,
// suspensions and circuit breakers are in delivery_shaping.cpp). Everything
// here runs on the I/O thread; the spool's completions are posted back to it (on_io_thread). The due index is read with a cursor that
// only moves forward (new and rescheduled messages sort after it), and is reset
// by explicit rescans, by new mail due before it, and every 30 s as a safety net.
#include "relayd/delivery_scheduler.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <map>

#include "queue/clock.hpp"
#include "relayd/delivery_destination.hpp"
#include "relayd/delivery_notice.hpp"
#include "relayd/delivery_outcome.hpp"
#include "relayd/delivery_port.hpp"
#include "relayd/delivery_route.hpp"
#include "relayd/duration_text.hpp"
#include "relayd/events_log.hpp"
#include "relayd/metrics.hpp"
#include "smtp/text.hpp"

namespace relayd {
namespace {

constexpr std::size_t due_batch = 256;
constexpr auto full_scan_interval = std::chrono::seconds(30);
constexpr std::int64_t max_sleep_us = 30'000'000;
constexpr std::int64_t held_sleep_us = 1'000'000;  // before a message still arriving


}  // namespace

std::string scheduler::reply_text(const recipient_outcome& o) {
  return o.description.empty() ? describe(o) : o.description;
}

scheduler::scheduler(asio::io_context& io, const config& cfg, queue::spool& spool, metrics* m,
                     clock_fn now_us, std::size_t max_in_flight)
    : io_(io),
      cfg_(cfg),
      spool_(spool),
      now_us_(now_us ? std::move(now_us) : clock_fn(queue::wall_clock_us)),
      retry_{cfg.queue.min_backoff, cfg.queue.max_backoff, cfg.queue.max_lifetime},
      metrics_(m),
      rng_(std::random_device{}()),
      timer_(io),
      policies_(std::make_unique<destination_policies>(cfg)),
      max_in_flight_(max_in_flight) {
  jitter_ = [this] { return std::uniform_real_distribution<double>(0.0, 1.0)(rng_); };
}

scheduler::~scheduler() = default;

// The one way a spool callback reaches the scheduler. The spool runs `done` on
// its writer thread (spool.hpp); this posts `f` with the callback's arguments
// to io_, where it runs only if the scheduler still exists: alive_ dies with
// the scheduler, which is destroyed on the thread that runs io_ (or after io_
// stopped), so the check cannot race with the destructor. `f` may capture
// `this` for that reason and nothing else borrowed.
template <typename F>
auto scheduler::on_io_thread(F f) {
  return [ex = io_.get_executor(), alive = std::weak_ptr<const bool>(alive_),
          f = std::move(f)](auto... args) mutable {
    asio::post(ex, [alive = std::move(alive), f = std::move(f), ... a = std::move(args)]() mutable {
      if (!alive.expired()) f(std::move(a)...);
    });
  };
}

void scheduler::start(delivery_port& port) {
  port_ = &port;
  // loop() uses `this` until it returns (after stop()) or until io_ is
  // destroyed with it suspended; hence the rule in the header: the scheduler is
  // destroyed only once io_ runs no more handlers.
  last_full_scan_ = std::chrono::steady_clock::now();
  asio::co_spawn(io_, loop(), [](std::exception_ptr e) {
    if (!e) return;
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& ex) {
      spdlog::critical("scheduler stopped: {}", ex.what());
    }
  });
}

void scheduler::stop(std::function<void()> on_idle) {
  stopping_ = true;
  on_idle_ = std::move(on_idle);
  timer_.cancel();
  for (auto& [name, d] : destinations_) {
    for (auto* t : d->idle) {
      ++d->waking;  // the woken connection finds no job and closes
      t->cancel();
    }
    d->idle.clear();
  }
  maybe_idle();
}

void scheduler::wake() {
  wake_pending_ = true;
  timer_.cancel();
}

void scheduler::arriving(const std::string& id) {
  std::lock_guard lk(arriving_mu_);
  arriving_.insert(id);
}

void scheduler::arrival_failed(const std::string& id) {
  std::lock_guard lk(arriving_mu_);
  arriving_.erase(id);
}

bool scheduler::is_arriving(const std::string& id) const {
  std::lock_guard lk(arriving_mu_);
  return arriving_.contains(id);
}

void scheduler::notify_enqueued(std::int64_t due_us, const std::string& id) {
  if (!id.empty()) {  // told: no longer held back
    std::lock_guard lk(arriving_mu_);
    arriving_.erase(id);
  }
  // Messages committed together are all seen by the first notice's pass, so
  // the later notices usually find theirs dispatched already: starting over
  // for them would re-read every message in flight.
  if (!id.empty() && in_flight_.contains(id)) return;
  if (cursor_ && due_us <= cursor_->due_us) {
    cursor_.reset();
  } else if (!held_by_.empty() && held_by_ != id) {
    return;  // the loop waits before another arriving message: that one's notice wakes it
  }
  wake();
}

void scheduler::rescan(bool clear_backoffs) {
  // A flush does not end suspensions by rules or relayctl suspend: relayctl
  // resume does.
  if (clear_backoffs) {
    for (auto& [name, d] : destinations_) {
      d->backoff_until_us = 0;
      d->failures = 0;
      // An open circuit breaker is a backoff too: flushed.
      if (d->group->breaker_failures != 0) d->group->suspended_until_us = 0;
    }
  }
  cursor_.reset();
  wake();
}

awaitable<void> scheduler::loop() {
  while (!stopping_) {
    wake_pending_ = false;
    if (std::chrono::steady_clock::now() - last_full_scan_ > full_scan_interval) {
      cursor_.reset();
      last_full_scan_ = std::chrono::steady_clock::now();
    }
    const std::int64_t now = now_us_();
    retry_connects(now);
    std::size_t seen = 0;
    held_by_.clear();
    if (in_flight_.size() < max_in_flight_) {
      auto batch = spool_.due(cursor_, now, due_batch);
      seen = batch.size();
      for (auto& e : batch) {
        // New mail sorts last: the cursor stays before it and its notice
        // (notify_enqueued) wakes the loop, which goes on from there.
        if (is_arriving(e.id)) {
          held_by_ = e.id;
          break;
        }
        cursor_ = e;
        if (in_flight_.contains(e.id))
          passed_in_flight_.insert(e.id);
        else
          dispatch(e.id, now);
        if (in_flight_.size() >= max_in_flight_) break;
      }
    }
    if (stopping_) break;
    const bool held = !held_by_.empty();
    if (seen == due_batch && !held && in_flight_.size() < max_in_flight_) {
      // More is due: let sessions and agents run, then go on.
      co_await asio::post(io_, asio::use_awaitable);
      continue;
    }
    if (wake_pending_) continue;
    std::int64_t sleep_us = max_sleep_us;
    if (held) {
      // Its notice wakes the loop; should it never come (the enqueue failed
      // after all), a second later the message no longer holds it.
      sleep_us = held_sleep_us;
    } else if (in_flight_.size() < max_in_flight_) {
      if (auto next = spool_.next_due_after(now)) sleep_us = std::clamp<std::int64_t>(*next - now, 0, max_sleep_us);
    }
    if (!connect_waiting_.empty())
      sleep_us = std::clamp<std::int64_t>(next_connect_us_ - now, 0, sleep_us);
    timer_.expires_after(std::chrono::microseconds(sleep_us));
    co_await timer_.async_wait(use_tuple);
  }
}

destination_key scheduler::destination_of(const std::string& sender,
                                          const std::string& address) const {
  const std::size_t number = route_for(cfg_.routes, sender, address);
  const bool smarthost = number == default_route ? cfg_.delivery.relayhost.has_value()
                                                 : !cfg_.routes[number - 1].relayhost.empty();
  if (smarthost)
    return {number == default_route ? cfg_.delivery.relayhost->to_string()
                                    : cfg_.routes[number - 1].name,
            number};
  auto at = address.rfind('@');
  return {smtp::text::lower(at == std::string::npos ? address : address.substr(at + 1)), number};
}

destination& scheduler::destination_for(const destination_key& key) {
  auto& slot = destinations_[key.id()];
  if (!slot) {
    slot = std::make_unique<destination>();
    slot->key = key;
    const bool smarthost = key.route == default_route
                               ? cfg_.delivery.relayhost.has_value()
                               : key.route <= cfg_.routes.size() &&
                                     !cfg_.routes[key.route - 1].relayhost.empty();
    slot->mx_mode = !smarthost;
    const destination_policy* p = nullptr;
    if (slot->mx_mode) {
      auto mx = mx_of_.find(key.name);
      p = policies_->find(key.name, mx == mx_of_.end() ? std::string() : mx->second);
    }
    if (p) {
      slot->group = &group_for(*p);
    } else {
      slot->own = std::make_unique<destination_group>();
      slot->own->name = key.id();
      slot->group = slot->own.get();
    }
  }
  return *slot;
}


void scheduler::defer_job(destination& d, job j, const recipient_outcome& why) {
  std::vector<recipient_outcome> outs;
  for (auto i : j.recipients) {
    auto o = why;
    o.index = i;
    outs.push_back(std::move(o));
  }
  complete(d, std::move(j), std::move(outs), why.remote_host.empty() ? "none" : why.remote_host,
           attempt_timing{});
}

void scheduler::dispatch(const std::string& id, std::int64_t now) {
  auto rec = spool_.get(id);
  if (!rec || (rec->flags & queue::flag_held)) return;
  auto snapshot = std::make_shared<const queue::envelope_record>(std::move(*rec));
  std::map<std::string, std::pair<destination_key, std::vector<std::size_t>>> groups;
  for (std::size_t i = 0; i < snapshot->recipients.size(); ++i) {
    const auto& r = snapshot->recipients[i];
    if (r.state != queue::rcpt_state::pending || r.next_attempt_us > now) continue;
    auto key = destination_of(snapshot->sender, r.address);
    auto& g = groups[key.id()];
    g.first = std::move(key);
    g.second.push_back(i);
  }
  if (groups.empty()) return;
  in_flight_[id] = groups.size();
  for (auto& [id_text, group] : groups) {
    auto& [key, indexes] = group;
    auto& d = destination_for(key);
    job j{snapshot, std::move(indexes), now};
    if (recipient_outcome why; blocked(d, now, why)) {
      defer_job(d, std::move(j), why);
      continue;
    }
    auto& g = *d.group;
    if (auto wait = rate_wait(g, snapshot->recipients[j.recipients.front()].next_attempt_us, now)) {
      defer_job(d, std::move(j), *wait);
      continue;
    }
    d.waiting.push_back(std::move(j));
    start_connections(d);
  }
}

void scheduler::start_connections(destination& d, std::size_t taken) {
  if (!port_ || stopping_) return;
  const auto now = now_us_();
  auto& g = *d.group;
  if (g.suspended_until_us > now || d.backoff_until_us > now) return;
  if (g.slow_until_us != 0 && g.slow_until_us <= now) {
    g.slow_until_us = 0;
    g.rate.set_slow(1);
    spdlog::info("destination {}: no longer slowed down", g.name);
  }
  // Lingering connections take new jobs first (connection reuse).
  while (!d.idle.empty() && d.waiting.size() > d.connecting + d.waking + taken) {
    auto* t = d.idle.front();
    d.idle.pop_front();
    ++d.waking;
    t->cancel();
  }
  std::size_t limit = cfg_.delivery.concurrency_per_destination;
  if (g.policy && g.policy->max_connections != 0) limit = g.policy->max_connections;
  if (g.slow_until_us > now) limit = 1;
  while (g.active < limit && d.waiting.size() > d.connecting + d.waking + taken) {
    // Until a connection to it works, one opens at a time: a new destination,
    // and the circuit breaker's probe, cost one attempt, not one per message.
    if (!d.proven && d.connecting > 0) break;
    if (g.connect.limited()) {
      if (!g.connect.ready(now)) {
        const auto at = g.connect.next_token_us(now);
        if (connect_waiting_.empty() || at < next_connect_us_) next_connect_us_ = at;
        connect_waiting_.insert(d.key.id());
        break;
      }
      g.connect.reserve(now);
    }
    ++d.active;
    ++g.active;
    ++d.connecting;
    ++connections_;
    port_->start_connection(d);
  }
}

std::optional<job> scheduler::next_job(destination& d) {
  if (stopping_ || d.waiting.empty()) return std::nullopt;
  if (d.group->suspended_until_us > now_us_()) return std::nullopt;
  job j = std::move(d.waiting.front());
  d.waiting.pop_front();
  return j;
}

void scheduler::complete(destination& d, job j, std::vector<recipient_outcome> outcomes,
                         const std::string& relay, const attempt_timing& timing) {
  const auto now = now_us_();
  const auto& msg = *j.message;
  // A reply rule (suspend, slow, hold) acts before the results are stored, so
  // that the recipients it suspends wait for the end of the suspension.
  for (const auto& o : outcomes) {
    if (o.code == 0 || !o.counts_as_attempt) continue;
    d.last_reply = d.group->last_reply = reply_text(o);
    if (o.what != outcome_kind::delivered && apply_rules(d, o)) break;
  }
  if (d.group->suspended_until_us > now)
    for (auto& o : outcomes)
      if (o.what == outcome_kind::deferred && o.counts_as_attempt && o.not_before_us == 0)
        o.not_before_us = wake_after_suspension(*d.group, now);
  std::vector<queue::spool::recipient_update> updates;
  bool any_delivered = false;
  std::vector<queue::recipient> failed_now, deferred_now, relayed_now;  // for DSNs
  std::vector<event> happened;  // [events], one per recipient (type set below)
  for (auto& o : outcomes) {
    if (o.index >= msg.recipients.size()) continue;
    auto next = apply_outcome(msg.recipients[o.index], o, msg.arrival_us, now, retry_, jitter_);
    // A bounce that cannot be delivered has nobody to tell: dead spool only.
    if (next.state == queue::rcpt_state::failed && msg.sender.empty()) next.reason = "bounce_failed";
    any_delivered |= next.state == queue::rcpt_state::delivered;
    if (next.state == queue::rcpt_state::failed) failed_now.push_back(next);
    if (next.state == queue::rcpt_state::pending) deferred_now.push_back(next);
    if (next.state == queue::rcpt_state::delivered && !o.next_hop_dsn) relayed_now.push_back(next);
    const outcome_kind fate = fate_of(next.state);
    if (metrics_ && !o.shaped) {
      metrics_->delivery_attempt(fate);
      metrics_->destination_result(smtp::text::lower(std::string(destination_domain(next.address))),
                                   attempt_result_of(fate));
      if (fate == outcome_kind::deferred) metrics_->deferral(classify_deferral(o));
    }
    const double queued = static_cast<double>(j.dispatched_us - msg.arrival_us) / 1e6;
    spdlog::info("{}: to=<{}>, relay={}, delay={}, delays={}/{}/{}/{}, dsn={}, status={} ({})",
                 msg.id, next.address, relay,
                 seconds_2dp(static_cast<double>(now - msg.arrival_us) / 1e6),
                 seconds_2dp(std::max(queued, 0.0)), seconds_2dp(timing.dns),
                 seconds_2dp(timing.connect), seconds_2dp(timing.transfer),
                 next.status.empty() ? "-" : next.status, log_word(fate),
                 next.reason == "expired" ? "message expired: " + o.description : o.description);
    if (events_ && events_->enabled())
      happened.push_back(event{.recipient = next.address,
                               .destination = d.key.name,
                               .reply = next.last_reply.empty() ? o.description : next.last_reply,
                               .status = next.status,
                               .attempt = next.attempts});
    updates.push_back({o.index, std::move(next)});
  }
  if (any_delivered) d.failures = 0;
  if (metrics_ && !outcomes.empty() && timing.transfer > 0)
    metrics_->observe_delivery_duration(timing.dns + timing.connect + timing.transfer);
  // relayd_dead_letters_total counts recipients, each when it enters the dead spool.
  std::vector<std::string> dead_reasons;
  for (const auto& r : failed_now) dead_reasons.push_back(r.reason);
  // DSNs go to the spool before the results: the writer commits in order, so a
  // crash may repeat a DSN but never lose one. Each reports only the recipients
  // whose NOTIFY asks for it (wants_notice); the dead spool keeps every failure.
  const bool notify = may_notify(cfg_, msg);
  std::vector<queue::recipient> told_failed;
  if (auto tell = asking_for(failed_now, smtp::dsn_action::failed); notify && !tell.empty()) {
    queue_notice(msg, tell, smtp::dsn_action::failed);
    told_failed = std::move(tell);
  }
  if (auto tell = asking_for(relayed_now, smtp::dsn_action::relayed); notify && !tell.empty())
    queue_notice(msg, tell, smtp::dsn_action::relayed);
  std::uint32_t flags_set = 0;
  if (!deferred_now.empty() && !warned_.contains(msg.id) && delay_warning_due(cfg_, msg, now)) {
    if (auto tell = asking_for(deferred_now, smtp::dsn_action::delayed); !tell.empty()) {
      queue_notice(msg, tell, smtp::dsn_action::delayed);
      flags_set = queue::flag_delay_warned;
      warned_.insert(msg.id);
    }
  }
  event_batch events = events_of(msg, updates, told_failed, std::move(happened));
  auto outbox = events_ ? events_->outbox_lines(events) : std::vector<std::string>{};
  ++pending_updates_;
  const std::string id = msg.id;
  auto observed = observer_ ? updates : std::vector<queue::spool::recipient_update>{};
  spool_.update_recipients(
      id, std::move(updates), flags_set,
      on_io_thread([this, id, dead_reasons = std::move(dead_reasons), message = j.message,
                    observed = std::move(observed),
                    events = std::move(events)](queue::result r, queue::spool::completion c) mutable {
        if (r.code != queue::status::ok && r.code != queue::status::not_found)
          spdlog::error("{}: cannot store delivery results: {}", id, r.detail);
        if (c == queue::spool::completion::delivered) spdlog::info("{}: removed", id);
        if (c == queue::spool::completion::dead) spdlog::info("{}: moved to the dead spool", id);
        if (r.code == queue::status::ok) {
          if (c == queue::spool::completion::pending && !dead_reasons.empty())
            spdlog::info("{}: {} failed recipient(s) moved to the dead spool, the others stay "
                         "queued", id, dead_reasons.size());
          if (metrics_)
            for (const auto& why : dead_reasons) metrics_->dead_letter(why);
          if (observer_) observer_(*message, observed, c);
          if (events_) events_->committed(std::move(events));
        }
        --pending_updates_;
        job_stored(id, r.code != queue::status::ok || c == queue::spool::completion::pending);
      }),
      std::move(outbox));
}

event_batch scheduler::events_of(
    const queue::envelope_record& msg, std::span<const queue::spool::recipient_update> updates,
    std::span<const queue::recipient> told_failed, std::vector<event> happened) const {
  if (happened.empty()) return {};
  // The Message-ID only for events that leave relayd (the report does not count it).
  const auto head = events_->exported() ? spool_.body_head(msg.id, 64 * 1024) : std::nullopt;
  const std::string message_id = head ? message_id_of(*head) : std::string();
  const std::string submitter = submitter_of(msg);
  const auto now = now_us_();
  for (std::size_t i = 0; i < happened.size() && i < updates.size(); ++i) {
    event& e = happened[i];
    const auto& rc = updates[i].value;
    const bool told = std::ranges::any_of(
        told_failed, [&](const queue::recipient& t) { return t.address == rc.address; });
    e.type = event_type_of(rc, told);
    e.time_us = now;
    e.queue_id = msg.id;
    e.message_id = message_id;
    e.sender = msg.sender;
    e.submitter = submitter;
  }
  happened.resize(std::min(happened.size(), updates.size()));
  return events_->batch(std::move(happened));
}

void scheduler::job_stored(const std::string& id, bool queued) {
  auto it = in_flight_.find(id);
  if (it != in_flight_.end() && --it->second == 0) {
    in_flight_.erase(it);
    warned_.erase(id);
    // The cursor went past it while in flight: if it is still queued it may
    // be due again now, so the loop starts over; a message delivered or dead
    // has no entry left to find.
    if (passed_in_flight_.erase(id) != 0 && queued) cursor_.reset();
    // Its next attempt may come before the loop's planned wake-up (or the
    // in-flight limit has room again): plan again.
    wake();
  }
  maybe_idle();
}

void scheduler::queue_notice(const queue::envelope_record& message,
                             std::span<const queue::recipient> recipients,
                             smtp::dsn_action action) {
  const auto now = now_us_();
  const auto original = spool_.body(message.id);
  auto n = make_notice(cfg_, message, recipients, action,
                       original ? std::string_view(*original) : std::string_view(),
                       spool_.new_id(), now);
  const bool failed = action == smtp::dsn_action::failed;
  spdlog::info("{}: sender {} notification: {}", message.id,
               failed ? "non-delivery" : action == smtp::dsn_action::delayed ? "delay" : "success",
               n.envelope.id);
  if (metrics_ && failed) metrics_->bounce();
  if (metrics_ && action == smtp::dsn_action::delayed) metrics_->delay_warning();
  ++pending_updates_;
  std::string dsn_id = n.envelope.id;
  event_batch events = events_ ? events_->received(n.envelope, n.message, {}, "relayd") : event_batch{};
  auto outbox = events_ ? events_->outbox_lines(events) : std::vector<std::string>{};
  spool_.enqueue(std::move(n.envelope), std::move(n.message),
                 on_io_thread([this, dsn = std::move(dsn_id), of = message.id, now,
                               events = std::move(events)](queue::result r) mutable {
                   --pending_updates_;
                   if (r.code == queue::status::ok) {
                     if (events_) events_->committed(std::move(events));
                     notify_enqueued(now);
                   } else {
                     // The dead spool (or the queue) still holds what happened.
                     spdlog::error("{}: cannot queue the notification {}: {}", of, dsn, r.detail);
                   }
                   maybe_idle();
                 }),
                 std::move(outbox));
}

void scheduler::finish_all_waiting(destination& d, recipient_outcome why, const std::string& relay) {
  while (!d.waiting.empty()) {
    job j = std::move(d.waiting.front());
    d.waiting.pop_front();
    std::vector<recipient_outcome> outs;
    for (auto i : j.recipients) {
      auto o = why;
      o.index = i;
      outs.push_back(std::move(o));
    }
    complete(d, std::move(j), std::move(outs), relay, attempt_timing{});
  }
}

void scheduler::throttle(destination& d, const recipient_outcome& why) {
  const auto now = now_us_();
  d.last_reply = d.group->last_reply = reply_text(why);
  if (d.group->suspended_until_us > now || apply_rules(d, why)) {
    defer_group(*d.group);
    return;
  }
  // Other connections of the same round that hear the 421 too do not extend
  // the backoff: one round of refusals is one failure.
  if (d.backoff_until_us <= now) {
    ++d.failures;
    d.backoff_until_us = now + backoff(d.failures, retry_).count();
    d.backoff_reason = why;
    spdlog::warn("destination {} throttled until +{:.1f}s: {}", d.key.name,
                 static_cast<double>(d.backoff_until_us - now) / 1e6, why.description);
  }
  auto o = why;
  o.counts_as_attempt = false;
  o.not_before_us = d.backoff_until_us;
  o.what = outcome_kind::deferred;
  finish_all_waiting(d, o, why.remote_host.empty() ? "none" : why.remote_host);
}

void scheduler::unreachable(destination& d, const recipient_outcome& why) {
  d.last_reply = d.group->last_reply = reply_text(why);
  if (apply_rules(d, why)) return;
  // Other connections to this destination still work: leave the jobs to them.
  if (d.active - d.connecting > 0) return;
  d.proven = false;
  // The DNS circuit breaker: lookups failing (SERVFAIL, timeout) attempt after
  // attempt, or a probe of the open breaker failing so.
  if (why.cause == queue::outcome_cause::dns && why.what == outcome_kind::deferred) {
    if (++d.dns_failures >= dns_breaker_after || d.group->breaker_failures != 0) {
      systemic_failure(d, why, suspend_cause::dns);
      return;
    }
  } else {
    d.dns_failures = 0;
  }
  const auto now = now_us_();
  ++d.failures;
  d.backoff_until_us = now + backoff(d.failures, retry_).count();
  d.backoff_reason = why;
  auto o = why;
  o.what = outcome_kind::deferred;
  finish_all_waiting(d, o, why.remote_host.empty() ? "none" : why.remote_host);
}

void scheduler::no_route(destination& d, const recipient_outcome& why) {
  auto o = why;
  o.what = outcome_kind::failed;
  if (o.reason.empty()) o.reason = "no_route";
  finish_all_waiting(d, o, "none");
}

void scheduler::connection_done(destination& d) {
  --d.active;
  --d.group->active;
  --connections_;
  // Jobs that arrived while this connection was closing get a new one (and
  // other destinations of its group may use the freed connection).
  if (!d.waiting.empty()) start_connections(d);
  if (d.group->policy)
    for (auto& [id, other] : destinations_)
      if (other.get() != &d && other->group == d.group && !other->waiting.empty())
        start_connections(*other);
  maybe_forget(d);
  maybe_idle();
}

void scheduler::maybe_forget(destination& d) {
  // Destinations with nothing going on and no backoff to remember are dropped,
  // so the map stays as small as the set of busy destinations.
  const auto now = now_us_();
  if (d.active == 0 && d.waiting.empty() && d.backoff_until_us <= now &&
      (d.group != d.own.get() ||
       (d.own->suspended_until_us <= now && !d.own->suspension_told))) {
    destinations_.erase(d.key.id());
  }
}

void scheduler::maybe_idle() {
  if (stopping_ && on_idle_ && connections_ == 0 && pending_updates_ == 0) {
    auto f = std::move(on_idle_);
    on_idle_ = nullptr;
    f();
  }
}

}  // namespace relayd
