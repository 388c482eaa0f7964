// Tests for relayctl -j / -s's data (relayd/control_queue.cpp): a record in a
// real spool with a local submitter and the DSN parameters (RET, ENVID, NOTIFY,
// ORCPT) is listed and shown with a `submitter` object, `ret`, `envid` and per
// recipient `notify` (a list of words) and `orcpt`; a network record without
// them has none of these keys.
#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <string>

#include "relayd/config.hpp"
#include "relayd/control_handlers.hpp"
#include "tests/unit/queue/spool_test_util.hpp"

namespace relayd {
namespace {

namespace json = boost::json;
namespace proto = control_protocol;

control_handler handler(std::string_view verb) {
  for (const auto& c : control_queue_commands())
    if (c.verb == verb) return c.run;
  ADD_FAILURE() << "no handler for " << verb;
  return nullptr;
}

// Runs one handler to completion; streamed lines go to `lines`.
std::string run(control_context& ctx, const proto::request& req, std::vector<std::string>& lines) {
  std::string answer;
  line_writer write = [&](std::string_view l) -> awaitable<bool> {
    lines.emplace_back(l);
    co_return true;
  };
  asio::co_spawn(
      ctx.io, [&]() -> awaitable<void> { answer = co_await handler(req.verb)(ctx, req, write); },
      asio::detached);
  ctx.io.run();
  ctx.io.restart();
  return answer;
}

struct control_queue_submission : ::testing::Test {
  queue_test::temp_dir dir;
  std::unique_ptr<queue::spool> spool = queue_test::open_or_fail(queue_test::options_in(dir));
  asio::io_context io;
  config cfg;
  control_context ctx{io, cfg, *spool, nullptr};

  std::string add(bool local_and_dsn) {
    queue::envelope_record r;
    r.id = spool->new_id();
    r.arrival_us = 1'700'000'000'000'000;
    r.sender = "www-data@example.org";
    r.recipients.push_back({.address = "a@dst.test", .next_attempt_us = r.arrival_us});
    r.recipients.push_back({.address = "b@dst.test", .next_attempt_us = r.arrival_us});
    if (local_and_dsn) {
      r.ret = smtp::dsn_ret::headers;
      r.envid = "QQ314159";
      r.recipients[0].notify = smtp::notify_success | smtp::notify_failure | smtp::notify_delay;
      r.recipients[0].orcpt = "rfc822;A@dst.test";
      r.recipients[1].notify = smtp::notify_never;
      r.local = smtp::local_identity{.uid = 33,
                                     .gid = 33,
                                     .pid = 4242,
                                     .user = "www-data",
                                     .executable = "/usr/bin/php8.2",
                                     .unit = "php8.2-fpm.service"};
    } else {
      r.client_ip = "192.0.2.1";
    }
    const std::string body = "Subject: x\r\n\r\nbody\r\n";
    r.size = body.size();
    const std::string id = r.id;
    EXPECT_EQ(queue_test::enqueue_sync(*spool, std::move(r), body).code, queue::status::ok);
    return id;
  }

  json::object show(const std::string& id) {
    std::vector<std::string> lines;
    proto::request req{.verb = proto::verb::show, .id = id};
    const std::string answer = run(ctx, req, lines);
    const auto head = json::parse(answer.substr(0, answer.find('\n'))).as_object();
    return head.at(proto::key::message).as_object();
  }
};

TEST_F(control_queue_submission, local_submission_with_dsn_parameters) {
  const std::string id = add(true);
  const json::object m = show(id);
  const auto& who = m.at("submitter").as_object();
  EXPECT_EQ(who.at("uid").as_int64(), 33);
  EXPECT_EQ(who.at("gid").as_int64(), 33);
  EXPECT_EQ(who.at("pid").as_int64(), 4242);
  EXPECT_EQ(who.at("user").as_string(), "www-data");
  EXPECT_EQ(who.at("executable").as_string(), "/usr/bin/php8.2");
  EXPECT_EQ(who.at("unit").as_string(), "php8.2-fpm.service");
  EXPECT_EQ(m.at("ret").as_string(), "hdrs");
  EXPECT_EQ(m.at("envid").as_string(), "QQ314159");
  const auto& rcpts = m.at("recipients").as_array();
  ASSERT_EQ(rcpts.size(), 2u);
  EXPECT_EQ(json::serialize(rcpts[0].as_object().at("notify")), R"(["success","failure","delay"])");
  EXPECT_EQ(rcpts[0].as_object().at("orcpt").as_string(), "rfc822;A@dst.test");
  EXPECT_EQ(json::serialize(rcpts[1].as_object().at("notify")), R"(["never"])");
  EXPECT_FALSE(rcpts[1].as_object().contains("orcpt"));

  // The listing (relayctl -j) carries the same objects.
  std::vector<std::string> lines;
  run(ctx, proto::request{.verb = proto::verb::list}, lines);
  ASSERT_EQ(lines.size(), 1u);
  const auto listed = json::parse(lines[0]).as_object();
  EXPECT_EQ(listed.at("submitter"), m.at("submitter"));
  EXPECT_EQ(listed.at("ret"), m.at("ret"));
}

TEST_F(control_queue_submission, network_submission_has_no_submitter_or_dsn_keys) {
  const json::object m = show(add(false));
  for (const char* k : {"submitter", "ret", "envid"}) EXPECT_FALSE(m.contains(k)) << k;
  for (const auto& r : m.at("recipients").as_array()) {
    EXPECT_FALSE(r.as_object().contains("notify"));
    EXPECT_FALSE(r.as_object().contains("orcpt"));
  }
  EXPECT_EQ(m.at("client_ip").as_string(), "192.0.2.1");
}

}  // namespace
}  // namespace relayd
