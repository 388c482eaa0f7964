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
namespace json = boost::json;

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
  EXPECT_EQ(error_of(R"({"cmd":"delete"})"), "delete: give \"ids\", \"all\" or \"filter\"");
  EXPECT_EQ(error_of(R"({"cmd":"hold","ids":[]})"), "hold: give \"ids\", \"all\" or \"filter\"");
  EXPECT_EQ(error_of(R"({"cmd":"requeue","all":false})"), "requeue: give \"ids\", \"all\" or \"filter\"");
}

TEST(control_protocol, filters_parse_and_stand_for_all_on_actions) {
  auto list = proto::parse_request(
      R"({"cmd":"list","filter":{"from":"<>","to":"a@b.example","domain":"b.example","reason":"451","older":600}})");
  ASSERT_TRUE(list) << list.error();
  EXPECT_EQ(list->filter, (queue_filter{.from = "<>", .to = "a@b.example", .domain = "b.example",
                                        .reason = "451", .older_seconds = 600}));
  // A filter alone names every message it matches; with "ids" it narrows them.
  auto hold = proto::parse_request(R"({"cmd":"hold","filter":{"domain":"b.example"}})");
  ASSERT_TRUE(hold && hold->which);
  EXPECT_TRUE(hold->which->all);
  auto del = proto::parse_request(R"({"cmd":"delete","ids":["A"],"filter":{"older":60}})");
  ASSERT_TRUE(del && del->which);
  EXPECT_FALSE(del->which->all);
  EXPECT_EQ(del->filter.older_seconds, 60);
  // An empty filter names nothing: never "delete everything" by accident.
  EXPECT_EQ(error_of(R"({"cmd":"delete","filter":{}})"), "delete: give \"ids\", \"all\" or \"filter\"");
  // Round trip of what relayctl sends.
  json::object req = proto::make_request(proto::verb::dead_purge);
  proto::add_filter(req, queue_filter{.reason = "rejected", .older_seconds = 86400});
  auto back = proto::parse_request(json::serialize(req));
  ASSERT_TRUE(back && back->which) << back.error();
  EXPECT_EQ(back->filter, (queue_filter{.reason = "rejected", .older_seconds = 86400}));
  auto brief = proto::parse_request(R"({"cmd":"list","brief":true})");
  ASSERT_TRUE(brief);
  EXPECT_TRUE(brief->brief);
  EXPECT_FALSE(list->brief);
  auto shape = proto::parse_request(R"({"cmd":"shape","top":5})");
  ASSERT_TRUE(shape);
  EXPECT_EQ(shape->top, 5u);
}

TEST(control_protocol, bad_filters_are_refused_with_a_reason) {
  EXPECT_EQ(error_of(R"({"cmd":"list","filter":"gmail"})"), "list: \"filter\" must be an object");
  EXPECT_EQ(error_of(R"({"cmd":"list","filter":{"older":"5x"}})"),
            "list: filter: \"older\" must be a number of seconds");
  EXPECT_EQ(error_of(R"({"cmd":"list","filter":{"older":-5}})"),
            "list: filter: \"older\" must be a number of seconds");
  EXPECT_EQ(error_of(R"({"cmd":"list","filter":{"size":5}})"), "list: filter: unknown field \"size\"");
  EXPECT_EQ(error_of(R"({"cmd":"hold","filter":{"to":7}})"), "hold: filter: \"to\" must be a string");
  EXPECT_EQ(error_of(R"({"cmd":"list","filter":{"domain":"a@b"}})"),
            "list: filter: --domain: give a domain (example.org), not an address");
  EXPECT_EQ(error_of(R"({"cmd":"shape","top":0})"), "shape: \"top\" must be a positive number");
}

// Before the shared parser, hold/release/requeue/dead_* read "ids" without a
// string in it as an empty list, which the spool takes to mean every message.
TEST(control_protocol, ids_without_a_string_name_nothing_not_everything) {
  EXPECT_EQ(error_of(R"({"cmd":"hold","ids":[1,null]})"), "hold: give \"ids\", \"all\" or \"filter\"");
  EXPECT_EQ(error_of(R"({"cmd":"dead_purge","ids":[{}]})"), "dead_purge: give \"ids\", \"all\" or \"filter\"");
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
                      control_dkim_commands(), control_reload_commands(),
                      control_destinations_commands(), control_report_commands(),
                      control_tls_rpt_commands()})
    for (const auto& c : family) handled.insert(c.verb);
  for (const auto& v : proto::verbs()) EXPECT_EQ(handled.count(v.name), 1u) << v.name;
  EXPECT_EQ(handled.size(), proto::verbs().size());
}

}  // namespace
}  // namespace relayd
