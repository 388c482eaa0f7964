// relayctl -p --shape: the queue as a table of recipient domain x age, like
// Postfix's qshape. The daemon adds each matching message (one short read of its
// record, no per-message JSON) and answers with the totals and the top domains.
// Pure and I/O-free; it cannot fail.
//
// Age columns, in minutes since arrival: under 5, 5-10, 10-20, ... 640-1280, and
// 1280 or more. A message counts once in TOTAL and once in each distinct domain
// of its pending recipients, so the domain rows may add up to more than TOTAL.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace queue {
struct envelope_record;
}

namespace relayd {

class queue_shape {
 public:
  // Upper bounds (minutes) of every column but the last ("1280+").
  static constexpr std::array<int, 9> bounds_minutes{5, 10, 20, 40, 80, 160, 320, 640, 1280};
  static constexpr std::size_t columns = bounds_minutes.size() + 1;
  using counts = std::array<std::uint64_t, columns>;
  struct row {
    std::string domain;
    counts by_age{};
    std::uint64_t total() const;
  };

  explicit queue_shape(std::int64_t now_us) : now_us_(now_us) {}
  // The column of a message that arrived at `arrival_us` (future arrivals: the first).
  std::size_t column_of(std::int64_t arrival_us) const;
  void add(const queue::envelope_record& r);

  const counts& total() const { return total_; }
  std::size_t domain_count() const { return domains_.size(); }
  // The `top` domains with the most messages (ties: by name), most first.
  std::vector<row> top(std::size_t top) const;

 private:
  // Looked up by string_view: a domain seen before costs no allocation.
  struct name_hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  std::int64_t now_us_;
  counts total_{};
  std::unordered_map<std::string, counts, name_hash, std::equal_to<>> domains_;
  std::string lowered_;  // scratch for add()
};

}  // namespace relayd
