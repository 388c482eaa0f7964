// Implements dkim_dns_monitor.hpp. A round reads each key file (small, on the
// I/O thread), starts one TXT lookup per entry and finishes when the last one
// answers; the verdicts sit behind a mutex because the signer reads them from
// its worker threads. The timer loop and every round own the shared state, so
// nothing refers into a frame or an object that may be gone; resolver
// completions never run after the resolver is destroyed (mx_resolver.hpp).
#include "relayd/dkim_dns_monitor.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <map>
#include <mutex>
#include <optional>
#include <utility>

#include "dns/mx_resolver.hpp"
#include "relayd/async_call.hpp"
#include "relayd/metrics.hpp"
#include "relayd/net.hpp"
#include "smtp/text.hpp"

namespace relayd {

struct dkim_dns_monitor::state {
  state(asio::io_context& io_, const config& cfg_, dns::mx_resolver& dns_, metrics* stats_,
        std::chrono::seconds interval_)
      : io(io_), cfg(cfg_), dns(dns_), stats(stats_), interval(interval_), timer(io_) {}
  asio::io_context& io;
  const config& cfg;
  dns::mx_resolver& dns;
  metrics* stats;
  std::chrono::seconds interval;
  asio::steady_timer timer;
  bool stopping = false;

  // The last verdict of one selector other than dns_error.
  struct verdict {
    std::optional<dkim::check_state> state;  // none: never known
    std::string public_key;                  // the key that state is about
    bool match() const { return state == dkim::check_state::ok; }
  };
  mutable std::mutex mu;  // guards verdicts (read by the signer's threads)
  std::map<std::pair<std::string, std::string>, verdict> verdicts;  // (lower domain, selector)

  // Records one round's statuses (I/O thread) and fills in each one's `match`.
  void record(std::vector<dkim_dns_status>& round) {
    std::lock_guard lock(mu);
    for (auto& s : round) {
      auto& v = verdicts[{smtp::text::lower(s.entry.domain), s.entry.selector}];
      if (s.result.state != dkim::check_state::dns_error) {
        v.state = s.result.state;
        v.public_key = s.public_key;
      }
      s.match = v.match();
      if (stats) stats->set_dkim_key_dns_match(s.entry.domain, s.entry.selector, s.match);
    }
  }

  std::string refusal(std::string_view domain, std::string_view selector,
                      std::string_view public_key) const {
    std::lock_guard lock(mu);
    const auto it = verdicts.find({smtp::text::lower(std::string(domain)), std::string(selector)});
    if (it == verdicts.end() || !it->second.state) return "not checked yet";
    if (!it->second.match()) return std::string(dkim::to_string(*it->second.state));
    if (it->second.public_key != public_key) return "checked for another key";
    return {};
  }
};

namespace {

// One round: statuses filled as lookups answer; `done` when none is left.
struct round_state {
  std::vector<dkim_dns_status> statuses;
  std::size_t pending = 0;
  dkim_dns_monitor::done_fn done;
};

// While an entry with require_dns does not match, its key does not sign: look
// again within this time even when the interval is longer.
constexpr std::chrono::seconds unmatched_recheck = std::chrono::minutes(5);

void finish_one(const std::shared_ptr<dkim_dns_monitor::state>& s,
                const std::shared_ptr<round_state>& r) {
  if (--r->pending > 0) return;
  s->record(r->statuses);
  for (const auto& st : r->statuses) {
    if (st.result.state == dkim::check_state::ok)
      spdlog::info("dkim: {}._domainkey.{} publishes {}", st.entry.selector, st.entry.domain,
                   st.entry.key);
    else
      spdlog::warn("dkim: {}._domainkey.{} ({}): {}: {}", st.entry.selector, st.entry.domain,
                   st.entry.key, dkim::to_string(st.result.state), st.result.reason);
  }
  if (r->done) r->done(std::move(r->statuses));
}

void run_round(const std::shared_ptr<dkim_dns_monitor::state>& s, dkim_dns_monitor::done_fn done) {
  auto r = std::make_shared<round_state>();
  r->done = std::move(done);
  for (const auto& e : s->cfg.dkim) r->statuses.push_back({e, {}, false});
  r->pending = r->statuses.size() + 1;  // +1: the loop below ends before the round can
  for (std::size_t i = 0; i < r->statuses.size(); ++i) {
    const auto& e = r->statuses[i].entry;
    auto key = dkim::public_key_from_file(e.key);
    if (!key) {
      r->statuses[i].result = {dkim::check_state::key_unreadable, key.error()};
      finish_one(s, r);
      continue;
    }
    std::string name = dkim::record_name(e.domain, e.selector);
    name.pop_back();  // the trailing dot
    r->statuses[i].public_key = key->p;
    s->dns.resolve_txt(name, [s, r, i, key = std::move(*key)](dns::txt_result t) {
      auto& result = r->statuses[i].result;
      if (t.what == dns::outcome::ok)
        result = dkim::compare(t.records, key);
      else if (t.what == dns::outcome::not_found)
        result = {dkim::check_state::missing, t.detail};
      else if (t.what == dns::outcome::fail)
        result = {dkim::check_state::malformed, t.detail};
      else
        result = {dkim::check_state::dns_error, t.detail};
      finish_one(s, r);
    });
  }
  finish_one(s, r);
}

// A round, then a wait of `interval`, or of at most unmatched_recheck while an
// entry with require_dns does not match.
awaitable<void> monitor_loop(std::shared_ptr<dkim_dns_monitor::state> s) {
  while (!s->stopping) {
    const auto round = co_await from_callback<void(std::vector<dkim_dns_status>)>(
        [&s](auto done) { run_round(s, std::move(done)); });
    if (s->stopping) break;
    const bool waiting_for_dns = std::ranges::any_of(
        round, [](const dkim_dns_status& st) { return st.entry.require_dns && !st.match; });
    s->timer.expires_after(waiting_for_dns ? std::min(s->interval, unmatched_recheck)
                                           : s->interval);
    co_await s->timer.async_wait(use_tuple);
  }
}

}  // namespace

dkim_dns_monitor::dkim_dns_monitor(asio::io_context& io, const config& cfg, dns::mx_resolver& dns,
                                   metrics* stats, std::chrono::seconds interval)
    : state_(std::make_shared<state>(io, cfg, dns, stats, interval)) {}

dkim_dns_monitor::~dkim_dns_monitor() = default;

void dkim_dns_monitor::start() {
  if (state_->cfg.dkim.empty()) return;
  asio::co_spawn(state_->io, monitor_loop(state_), asio::detached);
}

void dkim_dns_monitor::stop() {
  state_->stopping = true;
  state_->timer.cancel();
}

void dkim_dns_monitor::check_now(done_fn done) {
  run_round(state_, std::move(done));
}

bool dkim_dns_monitor::dkim_dns_ok(std::string_view domain, std::string_view selector) const {
  std::lock_guard lock(state_->mu);
  auto it = state_->verdicts.find({smtp::text::lower(std::string(domain)), std::string(selector)});
  return it != state_->verdicts.end() && it->second.match();
}

dkim_dns_gate dkim_dns_monitor::gate() const {
  return [s = state_](std::string_view domain, std::string_view selector,
                      std::string_view public_key) {
    return s->refusal(domain, selector, public_key);
  };
}

}  // namespace relayd
