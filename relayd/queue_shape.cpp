// Implements queue_shape.hpp.
#include "relayd/queue_shape.hpp"

#include <algorithm>
#include <numeric>

#include "queue/record.hpp"
#include "relayd/queue_filter.hpp"

namespace relayd {

std::uint64_t queue_shape::row::total() const {
  return std::accumulate(by_age.begin(), by_age.end(), std::uint64_t{0});
}

std::size_t queue_shape::column_of(std::int64_t arrival_us) const {
  const std::int64_t age_us = now_us_ - arrival_us;
  std::size_t c = 0;
  while (c < bounds_minutes.size() && age_us >= std::int64_t{bounds_minutes[c]} * 60'000'000) ++c;
  return c;
}

void queue_shape::add(const queue::envelope_record& r) {
  const std::size_t c = column_of(r.arrival_us);
  ++total_[c];
  // Each distinct domain once; messages have few recipients, so a linear check.
  std::vector<std::string> seen;
  for (const auto& rc : r.recipients) {
    if (rc.state != queue::rcpt_state::pending) continue;
    std::string d = address_domain(rc.address);
    if (std::ranges::find(seen, d) != seen.end()) continue;
    ++domains_[d][c];
    seen.push_back(std::move(d));
  }
}

std::vector<queue_shape::row> queue_shape::top(std::size_t n) const {
  std::vector<row> rows;
  rows.reserve(domains_.size());
  for (const auto& [d, c] : domains_) rows.push_back(row{d, c});
  auto before = [](const row& a, const row& b) {
    const auto ta = a.total(), tb = b.total();
    return ta != tb ? ta > tb : a.domain < b.domain;
  };
  if (rows.size() > n) {
    std::partial_sort(rows.begin(), rows.begin() + static_cast<std::ptrdiff_t>(n), rows.end(), before);
    rows.resize(n);
  } else {
    std::ranges::sort(rows, before);
  }
  return rows;
}

}  // namespace relayd
