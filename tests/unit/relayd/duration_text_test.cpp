// Durations as text (relayd/duration_text.hpp): what relayd.toml, DSNs and the
// delivery log show.
#include "relayd/duration_text.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <limits>

namespace relayd {
namespace {

TEST(duration_text, largest_unit_that_divides) {
  EXPECT_EQ(duration_text(std::chrono::seconds(7200)), "2h");
  EXPECT_EQ(duration_text(std::chrono::seconds(1209600)), "2w");
  EXPECT_EQ(duration_text(std::chrono::seconds(90)), "90s");
  EXPECT_EQ(duration_breakdown(std::chrono::seconds(3725)), "1h 2m 5s");
}

TEST(duration_text, seconds_with_two_decimals_as_the_delivery_log_shows_them) {
  EXPECT_EQ(seconds_2dp(0), "0.00");
  EXPECT_EQ(seconds_2dp(0.254), "0.25");
  EXPECT_EQ(seconds_2dp(0.256), "0.26");
  EXPECT_EQ(seconds_2dp(0.004), "0.00");
  EXPECT_EQ(seconds_2dp(2.5), "2.50");
  EXPECT_EQ(seconds_2dp(9.999), "10.00");
  EXPECT_EQ(seconds_2dp(432000.07), "432000.07");  // five days
  EXPECT_EQ(seconds_2dp(-0.5), "-0.50");
  EXPECT_EQ(seconds_2dp(-0.004), "0.00");
  EXPECT_EQ(seconds_2dp(std::numeric_limits<double>::quiet_NaN()), "-");
  EXPECT_EQ(seconds_2dp(std::numeric_limits<double>::infinity()), "-");
}

// What "{:.2f}" printed before, away from exact halves: the log keeps its form.
TEST(duration_text, seconds_2dp_matches_printf_away_from_halves) {
  for (int i = 0; i < 100000; ++i) {
    const double s = i * 0.0137 + 0.0001;
    const double frac = s * 100 - std::floor(s * 100);
    if (std::fabs(frac - 0.5) < 1e-6) continue;
    char want[64];
    std::snprintf(want, sizeof want, "%.2f", s);
    ASSERT_EQ(seconds_2dp(s), want) << s;
  }
}

}  // namespace
}  // namespace relayd
