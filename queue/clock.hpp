// The wall clock as the spool and the daemon store it: microseconds since the
// Unix epoch. One definition so that arrival, due and expiry times agree;
// code that must be testable takes a clock function instead of calling this.
#pragma once

#include <chrono>
#include <cstdint>

namespace queue {

inline std::int64_t wall_clock_us() {
  using namespace std::chrono;
  return duration_cast<microseconds>(system_clock::now().time_since_epoch()).count();
}

}  // namespace queue
