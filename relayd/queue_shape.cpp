// Implements queue_shape.hpp.
#include "relayd/queue_shape.hpp"

#include <algorithm>
#include <numeric>

#include "queue/record.hpp"
#include "smtp/text.hpp"

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
  // Each distinct domain once: a recipient counts unless an earlier pending
  // one has the same domain (messages have few recipients).
  auto domain_of = [](const queue::recipient& rc) {
    const std::string_view a = rc.address;
    const auto at = a.rfind('@');
    return at == std::string_view::npos ? std::string_view() : a.substr(at + 1);
  };
  for (std::size_t i = 0; i < r.recipients.size(); ++i) {
    const auto& rc = r.recipients[i];
    if (rc.state != queue::rcpt_state::pending) continue;
    const std::string_view d = domain_of(rc);
    bool counted = false;
    for (std::size_t j = 0; j < i && !counted; ++j)
      counted = r.recipients[j].state == queue::rcpt_state::pending &&
                smtp::text::iequals(domain_of(r.recipients[j]), d);
    if (counted) continue;
    lowered_.assign(d);
    for (char& ch : lowered_) ch = smtp::text::lower(ch);
    auto it = domains_.find(std::string_view(lowered_));
    if (it == domains_.end()) it = domains_.emplace(lowered_, counts{}).first;
    ++it->second[c];
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
