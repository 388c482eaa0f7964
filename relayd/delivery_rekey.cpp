// Implements delivery_rekey.hpp, and the scheduler's re-keying pass: the spool
// is walked in batches of `batch` records on the I/O thread (read transactions,
// short), and the messages whose due time moves are rescheduled in one spool
// operation per distinct due time (rounded down to the second, so messages
// deferred in the same second share it).
#include "relayd/delivery_rekey.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdlib>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "relayd/async_call.hpp"
#include "relayd/delivery_scheduler.hpp"

namespace relayd {
namespace {

constexpr std::size_t batch = 512;
constexpr std::int64_t second_us = 1'000'000;

}  // namespace

std::optional<std::int64_t> rekeyed_due(const queue::envelope_record& r, const retry_settings& s,
                                        std::int64_t now_us) {
  if (r.flags & queue::flag_held) return std::nullopt;
  constexpr auto none = std::numeric_limits<std::int64_t>::max();
  std::int64_t current = none, next = none, tolerance = 0;
  bool deferred = false;
  for (const auto& rc : r.recipients) {
    if (rc.state != queue::rcpt_state::pending) continue;
    current = std::min(current, rc.next_attempt_us);
    if (rc.attempts == 0 || rc.last_attempt_us == 0) {
      next = std::min(next, rc.next_attempt_us);  // never attempted: not ours to move
      continue;
    }
    deferred = true;
    const auto wait = backoff(rc.attempts, s).count();
    tolerance = std::max(tolerance, wait / 10);
    next = std::min(next, std::max(now_us, rc.last_attempt_us + wait));
  }
  if (!deferred) return std::nullopt;
  const std::int64_t expires =
      r.arrival_us + std::chrono::duration_cast<std::chrono::microseconds>(s.max_lifetime).count();
  next = std::max(now_us, std::min(next, expires));
  if (std::llabs(next - current) <= tolerance + second_us) return std::nullopt;
  return next / second_us * second_us;
}

awaitable<void> scheduler::rekey_deferred(retry_settings s) {
  std::string after;
  std::size_t moved = 0;
  while (!stopping_) {
    const std::int64_t now = now_us_();
    std::map<std::int64_t, std::vector<std::string>> moves;
    after = spool_.scan(after, batch, [&](const queue::envelope_record& r) {
      if (in_flight_.contains(r.id)) return;
      if (auto due = rekeyed_due(r, s, now)) moves[*due].push_back(r.id);
    });
    for (auto& [due, ids] : moves) {
      auto [res, n] = co_await from_callback<void(queue::result, std::size_t)>(
          [&, due = due](auto done) { spool_.reschedule(std::move(ids), due, std::move(done)); });
      if (res.code == queue::status::ok) moved += n;
      else if (res.code != queue::status::not_found)
        spdlog::error("reload: re-keying deferred mail: {}", res.detail);
    }
    if (after.empty()) break;
  }
  spdlog::info("reload: {} deferred message(s) rescheduled for min_backoff {}s, max_backoff {}s",
               moved, s.min_backoff.count(), s.max_backoff.count());
  if (moved > 0) rescan(false);
}

void scheduler::apply_config() {
  const retry_settings next{cfg_.queue.min_backoff, cfg_.queue.max_backoff,
                            cfg_.queue.max_lifetime};
  const bool changed =
      next.min_backoff != retry_.min_backoff || next.max_backoff != retry_.max_backoff;
  retry_ = next;
  if (changed) {
    // A destination backing off ends no later than the new settings say for its
    // number of failures (a longer backoff applies from its next failure on).
    const std::int64_t now = now_us_();
    for (auto& [name, d] : destinations_)
      if (d->backoff_until_us > now)
        d->backoff_until_us = std::min(
            d->backoff_until_us, now + backoff(std::max<std::uint32_t>(d->failures, 1), retry_).count());
  }
  if (changed && !stopping_) asio::co_spawn(io_, rekey_deferred(next), asio::detached);
  rescan(false);
}

}  // namespace relayd
