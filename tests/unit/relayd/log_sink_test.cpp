// Log lines for journald: the syslog priority of each spdlog level, the [log]
// level threshold, and whether JOURNAL_STREAM names a given stream.
#include "relayd/log_sink.hpp"

#include <gtest/gtest.h>

namespace relayd {
namespace {

TEST(log_sink, syslog_priorities) {
  EXPECT_EQ(syslog_priority(spdlog::level::critical), 2);
  EXPECT_EQ(syslog_priority(spdlog::level::err), 3);
  EXPECT_EQ(syslog_priority(spdlog::level::warn), 4);
  EXPECT_EQ(syslog_priority(spdlog::level::info), 6);
  EXPECT_EQ(syslog_priority(spdlog::level::debug), 7);
  EXPECT_EQ(syslog_priority(spdlog::level::trace), 7);
}

TEST(log_sink, level_thresholds) {
  EXPECT_EQ(spdlog_level(log_level::debug), spdlog::level::debug);
  EXPECT_EQ(spdlog_level(log_level::info), spdlog::level::info);
  EXPECT_EQ(spdlog_level(log_level::notice), spdlog::level::warn);
  EXPECT_EQ(spdlog_level(log_level::warning), spdlog::level::warn);
  EXPECT_EQ(spdlog_level(log_level::error), spdlog::level::err);
}

TEST(log_sink, journal_stream_names_device_and_inode) {
  EXPECT_TRUE(journal_stream_matches("8:12345", 8, 12345));
  EXPECT_FALSE(journal_stream_matches("8:12345", 8, 12346));
  EXPECT_FALSE(journal_stream_matches("9:12345", 8, 12345));
  for (auto bad : {"", ":", "8:", ":12345", "8", "8:12x", "x8:1", "8:1:2"})
    EXPECT_FALSE(journal_stream_matches(bad, 8, 1)) << bad;
}

}  // namespace
}  // namespace relayd
