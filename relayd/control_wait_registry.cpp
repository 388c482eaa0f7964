// Implements control_wait_registry.hpp. A message's recipients are merged from
// the dispatch snapshot and every job's updates by index; when the spool says
// the message left the queue, the merged list moves to the finished cache and
// its waiters are woken. No Asio: the waiters' wake functions are the seam.
#include "relayd/control_wait_registry.hpp"

#include <algorithm>

namespace relayd {

wait_registry::wait_registry(std::size_t max_tracked, std::size_t max_finished)
    : tracked_{.max = std::max<std::size_t>(max_tracked, 1)},
      finished_{.max = std::max<std::size_t>(max_finished, 1)} {}

void wait_registry::bounded_map::put(const std::string& id, std::vector<queue::recipient> value) {
  auto it = map.find(id);
  if (it != map.end()) {
    it->second.recipients = std::move(value);
    return;
  }
  map.emplace(id, entry{std::move(value), next_seq});
  order.emplace_back(id, next_seq++);
  while (order.size() > max) {
    auto old = map.find(order.front().first);
    if (old != map.end() && old->second.seq == order.front().second) map.erase(old);
    order.pop_front();
  }
}

void wait_registry::record(const queue::envelope_record& snapshot,
                           std::span<const queue::spool::recipient_update> updates,
                           queue::spool::completion c) {
  const std::string& id = snapshot.id;
  auto it = tracked_.map.find(id);
  std::vector<queue::recipient> merged =
      it != tracked_.map.end() && it->second.recipients.size() == snapshot.recipients.size()
          ? it->second.recipients
          : snapshot.recipients;
  for (const auto& u : updates)
    if (u.index < merged.size()) merged[u.index] = u.value;

  if (c == queue::spool::completion::pending) {
    tracked_.put(id, std::move(merged));
    return;
  }
  if (c == queue::spool::completion::delivered) {
    // Every recipient was delivered, including any whose result another job
    // stored after this job's snapshot was taken and that was forgotten here.
    for (auto& r : merged) r.state = queue::rcpt_state::delivered;
  }
  if (it != tracked_.map.end()) tracked_.map.erase(it);
  finished_.put(id, std::move(merged));
  // Waking may unwatch (the waiter answers and leaves): collect first.
  std::vector<std::function<void()>> wakes;
  for (const auto& [token, w] : waiters_)
    if (w.id == id) wakes.push_back(w.wake);
  for (auto& w : wakes) w();
}

const std::vector<queue::recipient>* wait_registry::finished(const std::string& id) const {
  auto it = finished_.map.find(id);
  return it == finished_.map.end() ? nullptr : &it->second.recipients;
}

std::uint64_t wait_registry::watch(const std::string& id, std::function<void()> wake) {
  const std::uint64_t token = next_token_++;
  waiters_.emplace(token, waiter{id, std::move(wake)});
  return token;
}

void wait_registry::unwatch(std::uint64_t token) { waiters_.erase(token); }

void wait_registry::stop() {
  stopping_ = true;
  std::vector<std::function<void()>> wakes;
  for (const auto& [token, w] : waiters_) wakes.push_back(w.wake);
  for (auto& w : wakes) w();
}

}  // namespace relayd
