// Message-content buffer growth (see content_buffer.hpp).
#include "smtp/content_buffer.hpp"

#include <algorithm>

namespace smtp::content_buffer {
namespace {

// Presizing beyond this would let an idle client pin memory with a large SIZE=.
constexpr std::size_t max_presize = 4u << 20;
// Below this a growing body doubles its buffer; above, it grows by a quarter.
constexpr std::size_t grow_gently_above = 64u << 10;
// The first allocation holds at least this much: most mail is a few KiB, and
// growing a short body from its first line by doubling costs 5-7 allocations.
constexpr std::size_t first_capacity = 4u << 10;

}  // namespace

void presize(std::string& buf, std::size_t expected, std::size_t max_size) {
  buf.clear();
  const std::size_t n = std::min({expected, max_size, max_presize});
  if (n > buf.capacity()) buf.reserve(n);
}

void append(std::string& buf, std::string_view bytes) {
  const std::size_t needed = buf.size() + bytes.size();
  if (needed > buf.capacity()) {
    // Grown here rather than by std::string (which doubles), so the slack is
    // kept to a quarter past grow_gently_above.
    const std::size_t cap = buf.capacity();
    std::string grown;
    grown.reserve(std::max({needed, first_capacity,
                            needed <= grow_gently_above ? 2 * cap : cap + cap / 4}));
    grown.append(buf);
    buf.swap(grown);
  }
  buf.append(bytes);
}

void release(std::string& buf) {
  std::string().swap(buf);
}

bool holds_memory(const std::string& buf) {
  return buf.capacity() > std::string().capacity();
}

}  // namespace smtp::content_buffer
