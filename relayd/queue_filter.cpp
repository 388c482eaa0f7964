// Implements queue_filter.hpp: the filter's checks and the matcher. ASCII
// case-folding only (addresses and domains on the wire are ASCII or UTF-8,
// whose bytes above 0x7f are compared as they are).
#include "relayd/queue_filter.hpp"

#include <algorithm>

#include "queue/record.hpp"
#include "queue/spool.hpp"
#include "smtp/text.hpp"

namespace relayd {
namespace {

using smtp::text::iequals;
using smtp::text::lower;

// Case-insensitive substring search.
bool icontains(std::string_view hay, std::string_view needle) {
  if (needle.empty()) return true;
  if (needle.size() > hay.size()) return false;
  for (std::size_t i = 0; i + needle.size() <= hay.size(); ++i) {
    if (lower(hay[i]) == lower(needle[0]) && iequals(hay.substr(i, needle.size()), needle))
      return true;
  }
  return false;
}

// An address criterion against one address (see queue_filter.hpp).
bool address_matches(std::string_view want, std::string_view address) {
  if (want == "<>") return address.empty();
  if (want.front() == '@') want.remove_prefix(1);
  if (want.find('@') != std::string_view::npos) return iequals(want, address);
  const auto at = address.rfind('@');
  return at != std::string_view::npos && iequals(address.substr(at + 1), want);
}

}  // namespace

std::string address_domain(std::string_view address) {
  const auto at = address.rfind('@');
  return at == std::string_view::npos ? std::string() : lower(std::string(address.substr(at + 1)));
}

queue_matcher::queue_matcher(queue_filter f, std::int64_t now_us) : f_(std::move(f)) {
  if (f_.older_seconds) cutoff_us_ = now_us - *f_.older_seconds * 1'000'000;
}

bool queue_matcher::matches(const queue::envelope_record& r, bool dead) const {
  if (f_.older_seconds && (dead ? queue::failed_at(r) : r.arrival_us) >= cutoff_us_) return false;
  if (!f_.from.empty() && !address_matches(f_.from, r.sender)) return false;
  if (f_.to.empty() && f_.domain.empty() && f_.reason.empty()) return true;
  const auto wanted = dead ? queue::rcpt_state::failed : queue::rcpt_state::pending;
  return std::ranges::any_of(r.recipients, [&](const queue::recipient& rc) {
    if (rc.state != wanted) return false;
    if (!f_.to.empty() && !address_matches(f_.to, rc.address)) return false;
    if (!f_.domain.empty()) {
      const auto at = rc.address.rfind('@');
      if (at == std::string::npos || !iequals(std::string_view(rc.address).substr(at + 1), f_.domain))
        return false;
    }
    if (!f_.reason.empty() && !icontains(rc.last_reply, f_.reason) &&
        !(dead && icontains(rc.reason, f_.reason)))
      return false;
    return true;
  });
}

}  // namespace relayd
