// Events' JSON text, the Message-ID taken from a message's header, the
// submitter text and which event a recipient's new state is; and the
// per-destination metrics' cardinality cap.
#include <gtest/gtest.h>

#include <boost/json.hpp>

#include "relayd/events_format.hpp"
#include "relayd/metrics.hpp"

namespace {

using namespace relayd;
namespace json = boost::json;

TEST(events_format, json_has_every_field_escaped) {
  event e;
  e.type = event_type::deferred;
  e.event_id = "0005F1A2B3C4D5E6";
  e.time_us = 1'764'684'000'123'456;  // 2025-12-02T14:00:00.123456Z
  e.queue_id = "0005F1A2B3C4D5E5";
  e.message_id = "<a\"b@c>";
  e.sender = "alice@src.test";
  e.recipient = "bob@dst.test";
  e.destination = "dst.test";
  e.reply = "host mx[1.2.3.4] said: 451 4.3.0 try\nlater \xff";
  e.status = "4.3.0";
  e.attempt = 2;
  e.submitter = "smtp 127.0.0.1";
  const std::string text = to_json(e);
  EXPECT_EQ(text.find('\n'), std::string::npos) << text;
  const json::object o = json::parse(text).as_object();
  EXPECT_EQ(o.at("type"), "deferred");
  EXPECT_EQ(o.at("event_id"), "0005F1A2B3C4D5E6");
  EXPECT_EQ(o.at("time"), "2025-12-02T14:00:00.123456Z");
  EXPECT_EQ(o.at("queue_id"), "0005F1A2B3C4D5E5");
  EXPECT_EQ(o.at("message_id"), "<a\"b@c>");
  EXPECT_EQ(o.at("sender"), "alice@src.test");
  EXPECT_EQ(o.at("recipient"), "bob@dst.test");
  EXPECT_EQ(o.at("destination"), "dst.test");
  EXPECT_EQ(o.at("reply"), "host mx[1.2.3.4] said: 451 4.3.0 try\nlater \xEF\xBF\xBD");
  EXPECT_EQ(o.at("status"), "4.3.0");
  EXPECT_EQ(o.at("attempt"), 2);
  EXPECT_EQ(o.at("submitter"), "smtp 127.0.0.1");
}

TEST(events_format, message_id_from_the_header_only) {
  EXPECT_EQ(message_id_of("Subject: x\r\nMessage-ID: <1@a.test>\r\n\r\nbody"), "<1@a.test>");
  EXPECT_EQ(message_id_of("message-id:\r\n  <2@a.test>\r\nTo: b\r\n\r\n"), "<2@a.test>");
  EXPECT_EQ(message_id_of("Subject: x\r\n\r\nMessage-ID: <in-body@a>\r\n"), "");
  EXPECT_EQ(message_id_of("Subject: x\nMessage-Id: <3@a>\n"), "<3@a>");
  EXPECT_EQ(message_id_of("X-Message-ID: <no@a>\r\n\r\n"), "");
  EXPECT_EQ(message_id_of(""), "");
}

TEST(events_format, submitter_and_event_types) {
  queue::envelope_record r;
  r.client_ip = "192.0.2.1";
  EXPECT_EQ(submitter_of(r), "smtp 192.0.2.1");
  EXPECT_EQ(submitter_of(r, "alice"), "smtp 192.0.2.1 sasl=alice");
  r.local = smtp::local_identity{.uid = 1000, .user = "bob", .unit = "cron.service"};
  EXPECT_EQ(submitter_of(r), "local uid=1000 user=bob unit=cron.service");

  queue::recipient rc;
  EXPECT_EQ(event_type_of(rc, false), event_type::deferred);
  rc.state = queue::rcpt_state::delivered;
  EXPECT_EQ(event_type_of(rc, false), event_type::delivered);
  rc.state = queue::rcpt_state::failed;
  rc.reason = "rejected";
  EXPECT_EQ(event_type_of(rc, true), event_type::bounced);
  EXPECT_EQ(event_type_of(rc, false), event_type::dead);
  rc.reason = "expired";
  EXPECT_EQ(event_type_of(rc, true), event_type::expired);
}

TEST(metrics_destinations, top_n_and_the_rest_as_other) {
  metrics m;
  std::map<std::string, destination_count, std::less<>> all{
      {"a.test", {5, 1}}, {"b.test", {50, 40}}, {"c.test", {1, 0}}, {"d.test", {7, 7}}};
  m.set_destination_gauges(all, 2);
  m.destination_result("b.test", attempt_result::sent);
  m.destination_result("c.test", attempt_result::deferred);
  m.destination_result("a.test", attempt_result::failed);
  const std::string text = m.render();
  EXPECT_NE(text.find("relayd_destination_queued_recipients{destination=\"b.test\"} 50\n"),
            std::string::npos) << text;
  EXPECT_NE(text.find("relayd_destination_queued_recipients{destination=\"d.test\"} 7\n"),
            std::string::npos);
  EXPECT_NE(text.find("relayd_destination_queued_recipients{destination=\"other\"} 6\n"),
            std::string::npos);
  EXPECT_NE(text.find("relayd_destination_deferred_recipients{destination=\"other\"} 1\n"),
            std::string::npos);
  EXPECT_EQ(text.find("destination=\"a.test\""), std::string::npos);
  EXPECT_EQ(text.find("destination=\"c.test\""), std::string::npos);
  EXPECT_NE(text.find("relayd_destination_attempts_total{destination=\"b.test\",result=\"sent\"} 1\n"),
            std::string::npos);
  EXPECT_NE(text.find("relayd_destination_attempts_total{destination=\"other\",result=\"deferred\"} 1\n"),
            std::string::npos);
  EXPECT_NE(text.find("relayd_destination_attempts_total{destination=\"other\",result=\"failed\"} 1\n"),
            std::string::npos);
  EXPECT_NE(text.find("relayd_build_info{version=\""), std::string::npos);
}

TEST(metrics_destinations, counter_names_are_capped) {
  metrics m;
  // Each scan a different single top destination: at most 2 x 1 + 1 names.
  for (int i = 0; i < 10; ++i) {
    const std::string name = "d" + std::to_string(i) + ".test";
    m.set_destination_gauges({{name, {1, 0}}}, 1);
    m.destination_result(name, attempt_result::sent);
  }
  const std::string text = m.render();
  std::size_t series = 0;
  for (auto p = text.find("relayd_destination_attempts_total{"); p != std::string::npos;
       p = text.find("relayd_destination_attempts_total{", p + 1))
    ++series;
  EXPECT_EQ(series, 3u * 3u) << text;  // 3 names x 3 results
}

}  // namespace
