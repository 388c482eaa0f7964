// What smtp.max_data_memory budgets: server_session::buffered() must report the
// memory reserved for message content, not only the octets received: the
// presize from MAIL FROM SIZE= and the slack of a growing buffer count too.
#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "smtp/server_session.hpp"

namespace relayd {
namespace {

std::unique_ptr<smtp::server_session> in_data(std::size_t declared_size) {
  smtp::session_options o;
  o.max_message_size = 10 * 1024 * 1024;
  o.new_id = [] { return std::string("0123ABCD"); };
  o.now = [] { return std::int64_t{1700000000}; };
  smtp::client_info c{.ip = "192.0.2.7", .hostname = "", .relay_allowed = true};
  auto session = std::make_unique<smtp::server_session>(std::move(o), c);
  smtp::server_session& s = *session;
  s.start();
  std::string mail = "MAIL FROM:<a@example.org>";
  if (declared_size != 0) mail += " SIZE=" + std::to_string(declared_size);
  const std::string in = "EHLO client.example\r\n" + mail + "\r\nRCPT TO:<b@example.net>\r\nDATA\r\n";
  std::string_view rest = in;
  while (!rest.empty()) rest.remove_prefix(s.feed(rest).consumed);
  s.clear_output();
  return session;
}

TEST(inbound_data_memory, presize_from_declared_size_is_counted) {
  auto session = in_data(2 * 1024 * 1024);
  smtp::server_session& s = *session;
  std::string_view body = "Subject: x\r\n\r\nhello\r\n";
  EXPECT_EQ(s.feed(body).what, smtp::server_session::event::need_more);
  EXPECT_GE(s.buffered(), 2u * 1024 * 1024)
      << "the 2 MiB reserved for SIZE= is held whatever has arrived";
}

TEST(inbound_data_memory, growth_slack_is_counted) {
  auto session = in_data(0);
  smtp::server_session& s = *session;
  // A buffer grown by appending holds more than it contains most of the time;
  // that slack is memory too and must show in buffered().
  const std::string line = std::string(98, 'x') + "\r\n";
  std::size_t fed = 0;
  bool slack_seen = false;
  for (int i = 0; i < 1000; ++i) {
    EXPECT_EQ(s.feed(line).what, smtp::server_session::event::need_more);
    fed += line.size();
    EXPECT_GE(s.buffered(), fed);
    slack_seen = slack_seen || s.buffered() > fed;
  }
  EXPECT_TRUE(slack_seen) << "buffered() never counted more than the octets received";
}

TEST(inbound_data_memory, finished_message_is_counted_until_taken) {
  auto session = in_data(0);
  smtp::server_session& s = *session;
  EXPECT_EQ(s.feed("Subject: x\r\n\r\nhello\r\n.\r\n").what,
            smtp::server_session::event::message);
  EXPECT_GT(s.buffered(), 0u);
  const std::string m = s.take_message();
  EXPECT_GE(m.capacity(), m.size());
  EXPECT_EQ(s.buffered(), 0u);
}

TEST(inbound_data_memory, large_body_slack_stays_within_a_quarter) {
  // Doubling would reserve up to twice the body (a 250 KB body in a 480 KiB
  // buffer): more than the budget the operator set aside for it.
  auto session = in_data(0);
  smtp::server_session& s = *session;
  const std::string line = std::string(98, 'x') + "\r\n";
  std::size_t fed = 0;
  while (fed < 400 * 1000) {
    ASSERT_EQ(s.feed(line).what, smtp::server_session::event::need_more);
    fed += line.size();
    if (fed > 128 * 1024) ASSERT_LE(s.buffered(), fed + fed / 4) << fed;
  }
}

TEST(inbound_data_memory, refused_body_gives_its_buffer_back) {
  auto session = in_data(0);
  smtp::server_session& s = *session;
  const std::string line = std::string(998, 'x') + "\r\n";
  for (int i = 0; i < 100; ++i) s.feed(line);
  EXPECT_GE(s.buffered(), 100u * 1000);
  s.refuse_message(smtp::reply{452, "4.3.1", "Insufficient system storage"});
  EXPECT_EQ(s.buffered(), 0u) << "the buffer is freed, not only emptied";
  s.feed(line);
  EXPECT_EQ(s.buffered(), 0u) << "what follows is dropped";
}

}  // namespace
}  // namespace relayd
