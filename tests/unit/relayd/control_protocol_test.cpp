// The control protocol shared by relayd and relayctl (relayd/control_protocol.hpp):
// what parse_request accepts and the error text it answers with, that relayctl's
// requests parse back to what they say, and that every verb has a handler.
#include <gtest/gtest.h>

#include <boost/json/serialize.hpp>
#include <set>

#include "relayd/control_handlers.hpp"
#include "relayd/control_protocol.hpp"

namespace relayd {
namespace {
namespace proto = control_protocol;

std::string error_of(std::string_view line) {
  auto r = proto::parse_request(line);
  return r ? std::string("(parsed)") : r.error();
}

TEST(control_protocol, parses_each_kind_of_request) {
  auto list = proto::parse_request(R"({"cmd":"list"})");
  ASSERT_TRUE(list);
  EXPECT_EQ(list->verb, proto::verb::list);
  EXPECT_FALSE(list->which);

  auto show = proto::parse_request(R"({"cmd":"show","id":"ABC"})");
  ASSERT_TRUE(show);
  EXPECT_EQ(show->id, "ABC");

  auto del = proto::parse_request(R"({"cmd":"delete","ids":["A",7,"B"]})");
  ASSERT_TRUE(del && del->which);
  EXPECT_FALSE(del->which->all);
  EXPECT_EQ(del->which->ids, (std::vector<std::string>{"A", "B"}));

  auto all = proto::parse_request(R"({"cmd":"dead_purge","all":true,"ids":["A"]})");
  ASSERT_TRUE(all && all->which);
  EXPECT_TRUE(all->which->all);
  EXPECT_TRUE(all->which->ids.empty());
}

TEST(control_protocol, answers_bad_requests_with_the_daemon_error_text) {
  EXPECT_EQ(error_of("not json"), "bad request: want {\"cmd\":...}");
  EXPECT_EQ(error_of(R"(["list"])"), "bad request: want {\"cmd\":...}");
  EXPECT_EQ(error_of(R"({"cmd":1})"), "bad request: want {\"cmd\":...}");
  EXPECT_EQ(error_of(R"({"cmd":"frob"})"), "unknown command \"frob\"");
  EXPECT_EQ(error_of(R"({"cmd":"show"})"), "show: missing \"id\"");
  EXPECT_EQ(error_of(R"({"cmd":"dead_show","id":3})"), "dead_show: missing \"id\"");
  EXPECT_EQ(error_of(R"({"cmd":"delete"})"), "delete: give \"ids\" or \"all\"");
  EXPECT_EQ(error_of(R"({"cmd":"hold","ids":[]})"), "hold: give \"ids\" or \"all\"");
  EXPECT_EQ(error_of(R"({"cmd":"requeue","all":false})"), "requeue: give \"ids\" or \"all\"");
}

// Before the shared parser, hold/release/requeue/dead_* read "ids" without a
// string in it as an empty list, which the spool takes to mean every message.
TEST(control_protocol, ids_without_a_string_name_nothing_not_everything) {
  EXPECT_EQ(error_of(R"({"cmd":"hold","ids":[1,null]})"), "hold: give \"ids\" or \"all\"");
  EXPECT_EQ(error_of(R"({"cmd":"dead_purge","ids":[{}]})"), "dead_purge: give \"ids\" or \"all\"");
}

TEST(control_protocol, relayctl_requests_parse_back) {
  auto one = proto::parse_request(boost::json::serialize(
      proto::make_request(proto::verb::release, proto::targets{false, {"X1"}})));
  ASSERT_TRUE(one && one->which);
  EXPECT_EQ(one->verb, proto::verb::release);
  EXPECT_EQ(one->which->ids, std::vector<std::string>{"X1"});
  auto every = proto::parse_request(
      boost::json::serialize(proto::make_request(proto::verb::dead_replay, proto::targets{true, {}})));
  ASSERT_TRUE(every && every->which);
  EXPECT_TRUE(every->which->all);
  auto show = proto::parse_request(
      boost::json::serialize(proto::make_request(proto::verb::dead_show, "D9")));
  ASSERT_TRUE(show);
  EXPECT_EQ(show->id, "D9");
}

TEST(control_protocol, wait_takes_an_id_and_an_optional_positive_timeout) {
  auto w = proto::parse_request(boost::json::serialize(proto::make_wait_request("AB12", 30)));
  ASSERT_TRUE(w) << w.error();
  EXPECT_EQ(w->verb, proto::verb::wait);
  EXPECT_EQ(w->id, "AB12");
  EXPECT_EQ(w->timeout_seconds, 30);
  auto bare = proto::parse_request(R"({"cmd":"wait","id":"AB12"})");
  ASSERT_TRUE(bare);
  EXPECT_EQ(bare->timeout_seconds, 0);
  EXPECT_FALSE(proto::parse_request(R"({"cmd":"wait"})"));
  auto bad = proto::parse_request(R"({"cmd":"wait","id":"AB12","timeout":-5})");
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().find("timeout"), std::string::npos);
}

TEST(control_protocol, every_verb_has_exactly_one_handler) {
  std::multiset<std::string_view> handled;
  for (auto family : {control_queue_commands(), control_dead_commands(), control_stats_commands(),
                      control_wait_commands(), control_aliases_commands(),
                      control_dkim_commands(), control_destinations_commands()})
    for (const auto& c : family) handled.insert(c.verb);
  for (const auto& v : proto::verbs()) EXPECT_EQ(handled.count(v.name), 1u) << v.name;
  EXPECT_EQ(handled.size(), proto::verbs().size());
}

}  // namespace
}  // namespace relayd
