// relayctl report's record and summary (relayd/events_report.hpp): the record
// line of an event and back, damaged lines, reply normalisation, the counts in
// a window; and the day files the writer keeps (relayd/events_report_log.hpp).
#include <gtest/gtest.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <sstream>

#include "relayd/events_report.hpp"
#include "relayd/events_report_log.hpp"

namespace {

using namespace relayd;
namespace json = boost::json;
namespace fs = std::filesystem;

report_record rec(std::int64_t t, event_type type, std::string domain, std::string reply = "",
                  std::string submitter = "smtp 127.0.0.1") {
  return report_record{.time = t,
                       .type = type,
                       .domain = domain,
                       .destination = domain,
                       .status = "",
                       .submitter = std::move(submitter),
                       .reply = std::move(reply)};
}

TEST(events_report, record_of_an_event) {
  event e;
  e.type = event_type::deferred;
  e.time_us = 1'764'684'000'123'456;  // 2025-12-02T14:00:00.123456Z
  e.recipient = "Bob@Dst.TEST";
  e.destination = "dst.test";
  e.reply = "host mx[1.2.3.4] said: 451 4.3.0\ttry later";
  e.status = "4.3.0";
  e.submitter = "local uid=1000 user=alice unit=cron.service";
  const report_record r = record_of(e);
  EXPECT_EQ(r.time, 1'764'684'000);
  EXPECT_EQ(r.type, event_type::deferred);
  EXPECT_EQ(r.domain, "dst.test");
  EXPECT_EQ(r.status, "4.3.0");
  const std::string line = to_line(r);
  EXPECT_EQ(line, "1764684000\tdeferred\tdst.test\tdst.test\t4.3.0\tlocal uid=1000 user=alice "
                  "unit=cron.service\thost mx[1.2.3.4] said: 451 4.3.0 try later\n");
  auto back = parse_record_line(std::string_view(line).substr(0, line.size() - 1));
  ASSERT_TRUE(back);
  EXPECT_EQ(back->reply, "host mx[1.2.3.4] said: 451 4.3.0 try later");
  EXPECT_EQ(back->submitter, e.submitter);

  event s;
  s.type = event_type::suspended;
  s.time_us = 1'764'684'000'000'000;
  s.destination = "Gmail.com";
  EXPECT_EQ(record_of(s).domain, "gmail.com");
}

// The reader refuses a line that is not UTF-8 as damaged: a reply or a
// recipient with stray octets must still give a line that reads back.
TEST(events_report, record_of_an_event_with_invalid_utf8_reads_back) {
  event e;
  e.type = event_type::bounced;
  e.time_us = 1'764'684'000'000'000;
  e.recipient = "bob@b\xFF" "d.test";
  e.destination = "b\xFF" "d.test";
  e.reply = "550 5.1.1 caf\xE9 \xC3";
  e.submitter = "local uid=1000 user=\x80";
  const std::string line = to_line(record_of(e));
  auto back = parse_record_line(std::string_view(line).substr(0, line.size() - 1));
  ASSERT_TRUE(back) << line;
  EXPECT_EQ(back->domain, "b\xEF\xBF\xBD" "d.test");
  EXPECT_EQ(back->reply, "550 5.1.1 caf\xEF\xBF\xBD \xEF\xBF\xBD");
  EXPECT_EQ(back->submitter, "local uid=1000 user=\xEF\xBF\xBD");
}

TEST(events_report, record_time_is_rounded_down_to_the_second) {
  event e;
  e.type = event_type::delivered;
  e.time_us = 1'764'684'000'999'999;
  EXPECT_EQ(record_of(e).time, 1'764'684'000);
  e.time_us = -1;  // before 1970: still the second it falls in
  EXPECT_EQ(record_of(e).time, -1);
}

TEST(events_report, long_replies_are_cut_on_a_character_boundary) {
  auto r = rec(1, event_type::bounced, "x.test", std::string(299, 'a') + "\xC3\xA9" + "zzz");
  const std::string line = to_line(r);
  auto back = parse_record_line(std::string_view(line).substr(0, line.size() - 1));
  ASSERT_TRUE(back);
  EXPECT_EQ(back->reply, std::string(299, 'a'));
}

TEST(events_report, damaged_lines_are_refused) {
  const std::string good = "1764684000\tdelivered\ta.test\ta.test\t2.0.0\trelayd\tok";
  EXPECT_TRUE(parse_record_line(good));
  EXPECT_FALSE(parse_record_line(good.substr(0, 20)));  // cut short
  EXPECT_FALSE(parse_record_line(""));
  EXPECT_FALSE(parse_record_line("17646x4000\tdelivered\ta.test\ta.test\t2.0.0\trelayd\tok"));
  EXPECT_FALSE(parse_record_line("1764684000\tarrived\ta.test\ta.test\t2.0.0\trelayd\tok"));
  EXPECT_FALSE(parse_record_line(good + "\textra"));
  EXPECT_FALSE(parse_record_line("1764684000\tdelivered\ta.test\ta.test\t2.0.0\trelayd\tok\xff"));
  EXPECT_FALSE(parse_record_line(std::string("\0\0\0\0", 4)));
}

TEST(events_report, replies_that_differ_only_in_ids_group_together) {
  const auto a = normalise_reply(
      "host gmail-smtp-in.l.google.com[142.250.1.27] said: 421 4.7.28 Our system has detected "
      "an unusual rate of mail, id 123abc d75a77b69052e-4 - gsmtp (in reply to end of DATA)");
  const auto b = normalise_reply(
      "host alt1.gmail-smtp-in.l.google.com[64.233.184.26] said: 421 4.7.28 Our system  has "
      "detected an unusual rate of mail, id 98f d9e1a4c3-17 - gsmtp (in reply to end of DATA)");
  EXPECT_EQ(a, "host gmail-smtp-in.l.google.com[#.#.#.#] said: 421 4.7.28 Our system has detected "
               "an unusual rate of mail, id # #-# - gsmtp (in reply to end of DATA)");
  EXPECT_NE(b, a);  // another host name is another group
  EXPECT_EQ(normalise_reply("421 4.7.28 rate limited, id 123"), normalise_reply("421 4.7.28 rate limited, id 98765"));
  EXPECT_EQ(normalise_reply("421 4.7.28 rate limited, id 123"), "421 4.7.28 rate limited, id #");
  EXPECT_NE(normalise_reply("421 4.7.28 rate limited"), normalise_reply("421 4.7.0 rate limited"));
  EXPECT_EQ(normalise_reply("550 5.1.1 <bob@x.test>: Recipient address rejected"),
            "550 5.1.1 <address>: Recipient address rejected");
  EXPECT_EQ(normalise_reply("mx.c.test[127.0.0.1]:2525: Connection refused"),
            "mx.c.test[#.#.#.#]:#: Connection refused");
  EXPECT_LE(normalise_reply(std::string(500, 'x') + " y").size(), 160u);
}

TEST(events_report, submitters_are_keyed_by_who_not_how) {
  EXPECT_EQ(submitter_key("local uid=1000 user=alice unit=cron.service"), "local user=alice");
  EXPECT_EQ(submitter_key("local uid=1000 user=- unit=-"), "local uid=1000");
  EXPECT_EQ(submitter_key("smtp 192.0.2.1 sasl=bob"), "sasl=bob");
  EXPECT_EQ(submitter_key("smtp 192.0.2.1"), "smtp 192.0.2.1");
  EXPECT_EQ(submitter_key("relayd"), "relayd");
}

TEST(events_report, summary_counts_exactly_the_window) {
  report_summary s(1000, 2000);
  s.add(rec(999, event_type::received, ""));     // before
  s.add(rec(2000, event_type::delivered, "a.test"));  // at the end: outside
  s.add(rec(1000, event_type::received, "", "", "smtp 192.0.2.1 sasl=bob"));
  s.add(rec(1001, event_type::received, "", "", "local uid=5 user=alice unit=x"));
  s.add(rec(1002, event_type::received, "", "", "local uid=5 user=alice unit=y"));
  s.add(rec(1100, event_type::delivered, "a.test"));
  s.add(rec(1101, event_type::delivered, "a.test"));
  s.add(rec(1102, event_type::deferred, "b.test", "host mx.b.test[127.0.0.1] said: 421 4.7.0 slow down id 1"));
  s.add(rec(1103, event_type::deferred, "b.test", "host mx.b.test[127.0.0.1] said: 421 4.7.0 slow down id 2"));
  s.add(rec(1104, event_type::deferred, "c.test", "mx.c.test[127.0.0.1]:25: Connection refused"));
  s.add(rec(1105, event_type::bounced, "c.test", "host mx.c.test[127.0.0.1] said: 550 5.1.1 <x@c.test>: no"));
  s.add(rec(1106, event_type::dead, "c.test", "host mx.c.test[127.0.0.1] said: 550 5.1.1 <y@c.test>: no"));
  s.add(rec(1107, event_type::expired, "b.test", "expired"));
  s.add(rec(1108, event_type::suspended, "b.test"));
  EXPECT_TRUE(s.add_line("1109\tdelivered\tb.test\tb.test\t2.0.0\trelayd\tok"));
  EXPECT_FALSE(s.add_line("1109\tdeliv"));
  const json::object j = s.to_json(2);
  EXPECT_EQ(j.at("received"), 3);
  EXPECT_EQ(j.at("delivered"), 3);
  EXPECT_EQ(j.at("deferred"), 3);
  EXPECT_EQ(j.at("bounced"), 1);
  EXPECT_EQ(j.at("dead"), 1);
  EXPECT_EQ(j.at("expired"), 1);
  EXPECT_EQ(j.at("suspended"), 1);
  EXPECT_EQ(j.at("damaged_lines"), 1);
  EXPECT_EQ(j.at("domain_count"), 3);
  const auto& d = j.at("domains").as_array();
  ASSERT_EQ(d.size(), 2u);  // top 2: b.test (4 events) and c.test (3); a.test (2) left out
  EXPECT_EQ(d[0].at("domain"), "b.test");
  EXPECT_EQ(d[0].at("deferred"), 2);
  EXPECT_EQ(d[0].at("expired"), 1);
  EXPECT_EQ(d[0].at("delivered"), 1);
  EXPECT_EQ(d[1].at("domain"), "c.test");
  EXPECT_EQ(d[1].at("bounced"), 1);
  EXPECT_EQ(d[1].at("dead"), 1);
  const auto& why = j.at("deferral_reasons").as_array();
  ASSERT_EQ(why.size(), 2u);
  EXPECT_EQ(why[0].at("reason"), "host mx.b.test[#.#.#.#] said: 421 4.7.0 slow down id #");
  EXPECT_EQ(why[0].at("count"), 2);
  EXPECT_EQ(why[1].at("count"), 1);
  const auto& bounces = j.at("bounce_reasons").as_array();
  ASSERT_EQ(bounces.size(), 1u);
  EXPECT_EQ(bounces[0].at("reason"), "host mx.c.test[#.#.#.#] said: 550 5.1.1 <address>: no");
  EXPECT_EQ(bounces[0].at("count"), 2);
  const auto& who = j.at("submitters").as_array();
  ASSERT_EQ(who.size(), 2u);
  EXPECT_EQ(who[0].at("submitter"), "local user=alice");
  EXPECT_EQ(who[0].at("count"), 2);
  EXPECT_EQ(who[1].at("submitter"), "sasl=bob");
}

class report_log_files : public ::testing::Test {
 protected:
  void SetUp() override {
    dir = fs::temp_directory_path() / ("relayd_report_test." + std::to_string(::getpid()));
    fs::remove_all(dir);
    fs::create_directories(dir);
  }
  void TearDown() override { fs::remove_all(dir); }
  static std::string read(const fs::path& p) {
    std::ifstream in(p);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  static std::int64_t now() {
    return std::chrono::duration_cast<std::chrono::seconds>(
               std::chrono::system_clock::now().time_since_epoch()).count();
  }
  static event event_at(std::int64_t t, event_type type, std::string rcpt) {
    event e;
    e.type = type;
    e.time_us = t * 1'000'000;
    e.recipient = std::move(rcpt);
    e.reply = "ok";
    return e;
  }
  fs::path dir;
};

TEST_F(report_log_files, records_go_to_the_file_of_their_day_and_old_files_go) {
  const fs::path events = dir / "events";
  fs::create_directories(events);
  std::ofstream(events / "20000101.log") << "946684800\tdelivered\ta\ta\t\t\tok\n";  // long expired
  std::ofstream(events / "notes.txt") << "kept";
  const std::int64_t t = now();
  const std::int64_t yesterday = t - 86400;
  {
    report_log log(report_dir(dir.string()), 7);
    std::string error;
    ASSERT_TRUE(log.start(error)) << error;
    log.add({event_at(t, event_type::delivered, "a@A.test"), event_at(yesterday, event_type::bounced, "b@b.test")});
  }  // written and joined
  EXPECT_FALSE(fs::exists(events / "20000101.log"));
  EXPECT_TRUE(fs::exists(events / "notes.txt"));
  const auto files = report_files(events.string(), yesterday, t + 1);
  ASSERT_EQ(files.size(), 2u);
  EXPECT_EQ(read(files[0]), std::to_string(yesterday) + "\tbounced\tb.test\t\t\t\tok\n");
  EXPECT_EQ(read(files[1]), std::to_string(t) + "\tdelivered\ta.test\t\t\t\tok\n");
  EXPECT_EQ(report_files(events.string(), t, t + 1).size(), 1u);
}

TEST_F(report_log_files, a_line_cut_short_is_ended_before_the_next) {
  const std::int64_t t = now();
  {
    report_log log(report_dir(dir.string()), 7);
    std::string error;
    ASSERT_TRUE(log.start(error)) << error;
    log.add({event_at(t, event_type::delivered, "a@a.test")});
  }
  const auto files = report_files(report_dir(dir.string()), t, t + 1);
  ASSERT_EQ(files.size(), 1u);
  std::ofstream(files[0], std::ios::app) << std::to_string(t) + "\tdeliv";  // a crash mid-line
  {
    report_log log(report_dir(dir.string()), 7);
    std::string error;
    ASSERT_TRUE(log.start(error)) << error;
    log.add({event_at(t, event_type::deferred, "c@c.test")});
  }
  report_summary s(t, t + 1);
  std::istringstream in(read(files[0]));
  for (std::string line; std::getline(in, line);) s.add_line(line);
  const auto j = s.to_json(10);
  EXPECT_EQ(j.at("delivered"), 1);
  EXPECT_EQ(j.at("deferred"), 1);
  EXPECT_EQ(j.at("damaged_lines"), 1);
}

// The writer wakes once a second, not per event; a reader (relayctl report)
// asks for what was added before it, and gets it at once.
TEST_F(report_log_files, flush_writes_what_was_added_before_it) {
  const std::int64_t t = now();
  report_log log(report_dir(dir.string()), 7);
  std::string error;
  ASSERT_TRUE(log.start(error)) << error;
  log.add({event_at(t, event_type::delivered, "a@a.test")});
  log.add({event_at(t, event_type::deferred, "b@b.test")});
  std::promise<void> written;
  const auto start = std::chrono::steady_clock::now();
  log.flush([&] { written.set_value(); });
  ASSERT_EQ(written.get_future().wait_for(std::chrono::seconds(10)), std::future_status::ready);
  // Sooner than the writer's once-a-second wake-up would have written it.
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(900));
  const auto files = report_files(report_dir(dir.string()), t, t + 1);
  ASSERT_EQ(files.size(), 1u);
  EXPECT_EQ(read(files[0]), std::to_string(t) + "\tdelivered\ta.test\t\t\t\tok\n" +
                                std::to_string(t) + "\tdeferred\tb.test\t\t\t\tok\n");
}

TEST_F(report_log_files, flush_without_a_writer_answers_at_once) {
  report_log log((dir / "no" / "such" / "events").string(), 7);
  std::string error;
  EXPECT_FALSE(log.start(error));
  bool told = false;
  log.flush([&] { told = true; });
  EXPECT_TRUE(told);
}

TEST_F(report_log_files, a_directory_it_cannot_create_is_an_error_not_a_crash) {
  report_log log((dir / "no" / "such" / "events").string(), 7);
  std::string error;
  EXPECT_FALSE(log.start(error));
  EXPECT_NE(error.find("no/such/events"), std::string::npos) << error;
  log.add({event_at(now(), event_type::delivered, "a@a.test")});  // dropped, no writer
}

}  // namespace
