// Implements the shaping half of delivery_scheduler.hpp (Postfix keeps its
// queue manager's per-destination concurrency and rate in qmgr_queue.c):
// [[destination]] groups and their rate buckets, reply rules, suspensions
// (rules, relayctl suspend, the circuit breakers) and their probes, and the
// relayctl destinations report. Same class, same I/O thread, same rules as
// delivery_scheduler.cpp. Nothing here fails: a name that designates nothing is
// an error string for the control socket.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <map>
#include <ctime>

#include "relayd/delivery_destination.hpp"
#include "relayd/delivery_port.hpp"
#include "relayd/delivery_retry.hpp"
#include "relayd/delivery_route.hpp"
#include "relayd/delivery_scheduler.hpp"
#include "relayd/events_log.hpp"
#include "relayd/metrics.hpp"
#include "smtp/text.hpp"

namespace relayd {
namespace {

constexpr std::size_t max_mx_memory = 100'000;  // learned domain -> MX names kept

// "2026-12-02 14:03:12 UTC" for reasons people read.
std::string utc_text(std::int64_t us) {
  if (us >= suspended_until_resume) return "relayctl resume";
  const std::time_t t = static_cast<std::time_t>(us / 1'000'000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S UTC", &tm);
  return buf;
}

// A job over the group's max_rate waits in the spool for its slot.
recipient_outcome rate_deferral(const destination_group& g, std::int64_t slot) {
  recipient_outcome why;
  why.what = outcome_kind::deferred;
  why.counts_as_attempt = false;
  why.shaped = true;
  why.status = "4.4.5";
  why.cause = queue::outcome_cause::local_config;
  why.not_before_us = slot;
  why.text = "rate limit " + (g.policy && g.policy->max_rate ? g.policy->max_rate->to_string() : "") +
             " of destination " + g.name + ": waits until " + utc_text(slot);
  why.description = "delivery deferred: " + why.text;
  return why;
}

}  // namespace

std::string_view to_string(suspend_cause c) {
  switch (c) {
    case suspend_cause::rule: return "rule";
    case suspend_cause::relayctl: return "relayctl";
    case suspend_cause::credentials: return "credentials";
    case suspend_cause::tls_policy: return "tls_policy";
    case suspend_cause::dns: return "dns";
  }
  return "rule";
}

destination_group& scheduler::group_for(const destination_policy& p) {
  auto& g = groups_[p.name];
  if (!g) {
    g = std::make_unique<destination_group>();
    g->name = p.name;
    g->policy = &p;
    if (p.max_rate) g->rate = token_bucket(*p.max_rate);
    if (p.connect_rate) g->connect = token_bucket(*p.connect_rate);
  }
  return *g;
}

std::string scheduler::group_name_of(const destination_key& key) const {
  if (auto it = destinations_.find(key.id()); it != destinations_.end()) return it->second->group->name;
  if (key.route == default_route && !cfg_.delivery.relayhost) {
    auto mx = mx_of_.find(key.name);
    if (const auto* p = policies_->find(key.name, mx == mx_of_.end() ? std::string() : mx->second))
      return p->name;
  } else if (key.route != default_route && key.route <= cfg_.routes.size() &&
             cfg_.routes[key.route - 1].relayhost.empty()) {
    auto mx = mx_of_.find(key.name);
    if (const auto* p = policies_->find(key.name, mx == mx_of_.end() ? std::string() : mx->second))
      return p->name;
  }
  return key.id();
}

std::optional<recipient_outcome> scheduler::rate_wait(destination_group& g, std::int64_t booked,
                                                     std::int64_t now) {
  if (!g.rate.limited()) return std::nullopt;
  // A message that comes back at the slot it was given has its token.
  const std::int64_t slot = g.rate.redeem(booked, now) ? now : g.rate.reserve(now);
  if (slot <= now) return std::nullopt;
  return rate_deferral(g, slot);
}

std::int64_t scheduler::wake_after_suspension(const destination_group& g, std::int64_t now) const {
  if (g.suspended_until_us < suspended_until_resume) return g.suspended_until_us;
  return now + std::chrono::duration_cast<std::chrono::microseconds>(retry_.max_backoff).count();
}

bool scheduler::blocked(destination& d, std::int64_t now, recipient_outcome& why) {
  auto& g = *d.group;
  if (g.suspended_until_us > now) {
    // No connection until the suspension ends; a suspension without end (hold)
    // looks again after max_backoff, so expiry still applies.
    why = recipient_outcome{};
    why.what = outcome_kind::deferred;
    why.counts_as_attempt = false;
    why.status = "4.4.5";
    why.cause = queue::outcome_cause::local_config;
    why.not_before_us = wake_after_suspension(g, now);
    why.text = "destination " + g.name + " suspended until " + utc_text(g.suspended_until_us) +
               ": " + g.suspend_reason;
    why.description = "delivery suspended: " + why.text;
    why.shaped = true;
    return true;
  }
  if (d.backoff_until_us > now) {
    // Postfix's "delivery temporarily suspended": the reason stays the one
    // the destination gave, so relayctl -p shows e.g. its 421.
    why = d.backoff_reason;
    why.what = outcome_kind::deferred;
    why.counts_as_attempt = false;
    why.not_before_us = d.backoff_until_us;
    if (why.status.empty()) why.status = "4.4.1";
    why.description = "delivery temporarily suspended: " + d.backoff_reason.description;
    return true;
  }
  return false;
}

void scheduler::retry_connects(std::int64_t now) {
  if (connect_waiting_.empty() || next_connect_us_ > now) return;
  auto ids = std::move(connect_waiting_);
  connect_waiting_.clear();
  for (const auto& id : ids)
    if (auto it = destinations_.find(id); it != destinations_.end()) start_connections(*it->second);
}

void scheduler::connection_ready(destination& d) {
  auto& g = *d.group;
  if (g.breaker_failures != 0 && !d.proven)
    spdlog::info("destination {}: connection works again; circuit breaker closed", g.name);
  g.breaker_failures = 0;
  d.dns_failures = 0;
  d.proven = true;
  if (g.suspension_told && g.suspended_until_us <= now_us_())
    tell_resumed(g, "a connection to " + d.key.id() + " works again");
  start_connections(d, 1);  // the ready connection takes one waiting job itself
}

void scheduler::learned_mx(destination& d, const std::string& host_name) {
  if (!d.mx_mode || host_name.empty() || !policies_->any_mx()) return;
  if (mx_of_.size() >= max_mx_memory) mx_of_.clear();
  mx_of_[d.key.name] = host_name;
  if (d.group != d.own.get()) return;  // already shaped with a policy
  const auto* p = policies_->find(d.key.name, host_name);
  if (!p) return;
  auto& g = group_for(*p);
  // The connections already open move with the destination.
  g.active += d.active;
  d.own->active -= d.active;
  d.group = &g;
  spdlog::info("destination {}: MX {} matches [[destination]] {}", d.key.id(), host_name, p->name);
  // The jobs that waited for this first connection are shaped as the group's.
  const auto now = now_us_();
  if (recipient_outcome why; blocked(d, now, why)) {
    finish_all_waiting(d, why, "none");
    return;
  }
  if (!g.rate.limited()) return;
  auto waiting = std::move(d.waiting);
  d.waiting.clear();
  std::vector<std::pair<job, std::int64_t>> later;
  for (auto& j : waiting) {
    const auto slot = g.rate.reserve(now);
    if (slot <= now) d.waiting.push_back(std::move(j));
    else later.emplace_back(std::move(j), slot);
  }
  for (auto& [j, slot] : later) defer_job(d, std::move(j), rate_deferral(g, slot));
}

std::size_t scheduler::messages_per_connection(const destination& d) const {
  return d.group->policy ? d.group->policy->max_messages_per_connection : 0;
}

bool scheduler::apply_rules(destination& d, const recipient_outcome& o) {
  auto& g = *d.group;
  if (!g.policy || o.code == 0) return false;
  auto hit = policies_->rule_for(*g.policy, o.code, o.status, o.text);
  if (!hit) return false;
  const auto now = now_us_();
  const auto span = std::chrono::duration_cast<std::chrono::microseconds>(hit->rule.duration).count();
  const std::string origin = "rule \"" + hit->rule.reply + "\" of " + hit->policy +
                             (hit->builtin ? " (built-in profile)" : "");
  switch (hit->rule.action) {
    case destination_rule::action_kind::slow:
      if (g.slow_until_us <= now)
        spdlog::warn("destination {} slowed down for {}s by {}: {}", g.name, span / 1'000'000,
                     origin, reply_text(o));
      g.slow_until_us = now + span;
      g.rate.set_slow(2);
      return false;  // the reply is handled as it would be without the rule
    case destination_rule::action_kind::suspend:
    case destination_rule::action_kind::hold: {
      const auto until = span == 0 ? suspended_until_resume : now + span;
      if (g.suspended_until_us > now) return true;  // one reply suspends once
      suspend_group(g, until, origin + ": " + reply_text(o), suspend_cause::rule);
      return true;
    }
  }
  return false;
}

void scheduler::suspend_group(destination_group& g, std::int64_t until_us, std::string reason,
                              suspend_cause cause) {
  g.suspended_until_us = until_us;
  g.suspend_reason = std::move(reason);
  g.cause = cause;
  spdlog::warn("destination {} suspended until {}: {}", g.name, utc_text(until_us),
               g.suspend_reason);
  // A probe that fails again, or a suspension while suspended, is no new state.
  if (!g.suspension_told) {
    g.suspension_told = true;
    if (events_) events_->destination_event(event_type::suspended, g.name, g.suspend_reason);
  }
  count_suspended();
  // Lingering connections close: next_job() gives them nothing now.
  for (auto& [id, d] : destinations_) {
    if (d->group != &g) continue;
    for (auto* t : d->idle) {
      ++d->waking;
      t->cancel();
    }
    d->idle.clear();
  }
  defer_group(g);
}

void scheduler::defer_group(destination_group& g) {
  const auto now = now_us_();
  std::vector<destination*> members;
  for (auto& [id, d] : destinations_)
    if (d->group == &g && !d->waiting.empty()) members.push_back(d.get());
  for (auto* d : members) {
    recipient_outcome why;
    if (!blocked(*d, now, why)) continue;
    finish_all_waiting(*d, why, "none");
  }
}

void scheduler::tell_resumed(destination_group& g, const std::string& how) {
  if (!g.suspension_told) return;
  g.suspension_told = false;
  spdlog::info("destination {} resumed: {}", g.name, how);
  if (events_) events_->destination_event(event_type::resumed, g.name, how);
  count_suspended();
}

void scheduler::count_suspended() {
  if (!metrics_) return;
  std::array<std::size_t, suspend_cause_count> n{};
  for (const auto& [name, g] : groups_)
    if (g->suspension_told) ++n[static_cast<std::size_t>(g->cause)];
  for (const auto& [id, d] : destinations_)
    if (d->own && d->own->suspension_told) ++n[static_cast<std::size_t>(d->own->cause)];
  std::map<std::string, std::size_t, std::less<>> by_cause;
  for (std::size_t i = 0; i < n.size(); ++i)
    by_cause[std::string(to_string(static_cast<suspend_cause>(i)))] = n[i];
  metrics_->set_suspended_destinations(std::move(by_cause));
}

void scheduler::systemic_failure(destination& d, const recipient_outcome& why, suspend_cause cause) {
  auto& g = *d.group;
  const auto now = now_us_();
  d.last_reply = g.last_reply = reply_text(why);
  d.proven = false;
  if (g.suspended_until_us <= now) {
    ++g.breaker_failures;
    const auto until = now + backoff(g.breaker_failures, retry_).count();
    // The job this connection was opened for had its attempt; the others wait
    // without one.
    if (!d.waiting.empty()) {
      job j = std::move(d.waiting.front());
      d.waiting.pop_front();
      auto o = why;
      o.what = outcome_kind::deferred;
      o.not_before_us = until;
      defer_job(d, std::move(j), o);
    }
    std::string what;
    switch (cause) {
      case suspend_cause::tls_policy:
        what = "every MX host of " + d.key.name + " failed its TLS policy (MTA-STS or DANE)";
        break;
      case suspend_cause::dns:
        what = "the DNS lookup for " + d.key.name + " failed " + std::to_string(dns_breaker_after) +
               " times in a row";
        break;
      default: what = "our configuration is refused"; break;
    }
    suspend_group(g, until,
                  "circuit breaker: " + what +
                      " (probed again at the backoff interval; relayctl resume after fixing "
                      "it): " + reply_text(why),
                  cause);
  } else {
    defer_group(g);
  }
}

destination_group* scheduler::group_named(const std::string& raw, bool create) {
  const std::string name = smtp::text::lower(raw);
  if (auto it = groups_.find(name); it != groups_.end()) return it->second.get();
  if (const auto* p = policies_->by_name(name)) return &group_for(*p);
  for (auto& [id, d] : destinations_)
    if (smtp::text::lower(id) == name || smtp::text::lower(d->key.name) == name) return d->group;
  // The relayhost as relayctl destinations shows it ("127.0.0.1:587") or as
  // written in the file ("[127.0.0.1]:587"); also for resume, whose queued
  // mail is made due even when the scheduler has forgotten the destination.
  if (const auto& h = cfg_.delivery.relayhost;
      h && (smtp::text::lower(h->to_string()) == name ||
            (h->implicit_tls ? "smtps://[" : "[") + smtp::text::lower(h->host) + "]:" +
                    std::to_string(h->port) == name))
    return destination_for({h->to_string(), default_route}).group;
  if (!create) return nullptr;
  // A route name: that smarthost destination.
  for (std::size_t i = 0; i < cfg_.routes.size(); ++i)
    if (smtp::text::lower(cfg_.routes[i].name) == name && !cfg_.routes[i].relayhost.empty())
      return destination_for({cfg_.routes[i].name, i + 1}).group;
  // A domain: where its mail goes (its route, or the relayhost).
  if (!valid_domain(name)) return nullptr;
  return destination_for(destination_of("", "postmaster@" + name)).group;
}

std::string scheduler::suspend(const std::string& name, std::int64_t for_us, std::string& error) {
  auto* g = group_named(name, true);
  if (!g) {
    error = "no destination \"" + name + "\" (give a domain, a [[destination]] match, a "
            "relayhost or a route name)";
    return "";
  }
  const auto until = for_us <= 0 ? suspended_until_resume : now_us_() + for_us;
  suspend_group(*g, until, "suspended by relayctl", suspend_cause::relayctl);
  return g->name;
}

std::string scheduler::resume(const std::string& name, std::string& error) {
  auto* g = group_named(name, false);
  if (!g) {
    error = "no destination \"" + name + "\" is known to relayd";
    return "";
  }
  g->suspended_until_us = 0;
  g->suspend_reason.clear();
  g->breaker_failures = 0;
  g->slow_until_us = 0;
  g->rate.set_slow(1);
  std::vector<destination*> members;
  for (auto& [id, d] : destinations_)
    if (d->group == g) members.push_back(d.get());
  for (auto* d : members) {
    d->backoff_until_us = 0;
    d->failures = 0;
  }
  std::string resumed = g->name;  // a destination's own group goes with it below
  spdlog::info("destination {} resumed by relayctl", resumed);
  tell_resumed(*g, "resumed by relayctl");
  for (auto* d : members) maybe_forget(*d);
  return resumed;
}

std::vector<destination_report> scheduler::report() const {
  const auto now = now_us_();
  std::vector<destination_report> out;
  auto fill_group = [&](destination_report& r, const destination_group& g) {
    if (g.policy) {
      r.policy = g.policy->name;
      if (g.policy->max_rate) r.rate = g.policy->max_rate->to_string();
    }
    if (g.suspended_until_us > now) {
      r.state = g.suspended_until_us >= suspended_until_resume ? "held" : "suspended";
      r.until_us = g.suspended_until_us;
      r.reason = g.suspend_reason;
    } else if (g.slow_until_us > now) {
      r.state = "slow";
      r.until_us = g.slow_until_us;
    }
  };
  std::unordered_set<const destination_group*> shown;
  for (const auto& [id, d] : destinations_) {
    destination_report r{.name = id};
    r.waiting = d->waiting.size();
    r.connections = d->active;
    r.last_reply = d->last_reply.empty() ? d->group->last_reply : d->last_reply;
    r.state = d->active ? "active" : "idle";
    fill_group(r, *d->group);
    if (r.until_us == 0 && d->backoff_until_us > now) {
      r.state = "backoff";
      r.until_us = d->backoff_until_us;
      r.reason = d->backoff_reason.description;
    }
    shown.insert(d->group);
    out.push_back(std::move(r));
  }
  // Policy groups suspended with none of their destinations known yet.
  for (const auto& [name, g] : groups_) {
    if (shown.contains(g.get()) || g->suspended_until_us <= now) continue;
    destination_report r{.name = name, .state = "idle", .last_reply = g->last_reply};
    fill_group(r, *g);
    out.push_back(std::move(r));
  }
  std::ranges::sort(out, {}, &destination_report::name);
  return out;
}

}  // namespace relayd
