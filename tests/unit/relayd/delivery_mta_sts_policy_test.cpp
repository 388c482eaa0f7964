// MTA-STS without I/O (relayd/delivery_mta_sts_policy): the policy file parser
// (RFC 8461 3.2, CRLF and LF, limits, unknown keys, every malformation named),
// split at every byte; MX patterns; the _mta-sts TXT record; the spool record;
// and when a cached policy is used, kept or fetched again.
#include "relayd/delivery_mta_sts_policy.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace {

using namespace relayd::mta_sts;

const std::string good =
    "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\n"
    "mx: backupmx.example.com\r\nmax_age: 604800\r\n";

TEST(mta_sts_policy, the_rfc_example_parses) {
  auto p = parse_policy(good);
  ASSERT_TRUE(p) << p.error();
  EXPECT_EQ(p->what, mode::enforce);
  EXPECT_EQ(p->max_age, 604800);
  EXPECT_EQ(p->mx, (std::vector<std::string>{"mail.example.com", "*.example.net",
                                              "backupmx.example.com"}));
}

TEST(mta_sts_policy, lf_only_spaces_unknown_keys_and_case_of_mx) {
  auto p = parse_policy(
      "version: STSv1\nmode:testing\nmx:   MX.Example.ORG  \nextension: whatever : x\n"
      "max_age: 86400");  // no final line end
  ASSERT_TRUE(p) << p.error();
  EXPECT_EQ(p->what, mode::testing);
  EXPECT_EQ(p->mx, std::vector<std::string>{"mx.example.org"});
  EXPECT_EQ(p->max_age, 86400);
}

TEST(mta_sts_policy, mode_none_needs_no_mx) {
  auto p = parse_policy("version: STSv1\nmode: none\nmax_age: 0\n");
  ASSERT_TRUE(p) << p.error();
  EXPECT_EQ(p->what, mode::none);
  EXPECT_EQ(p->max_age, 0);
}

TEST(mta_sts_policy, every_malformation_is_named) {
  struct bad_case {
    std::string text, phrase;
  };
  const std::vector<bad_case> cases = {
      {"mode: enforce\nmx: a.example\nmax_age: 1\n", "no version"},
      {"version: STSv2\nmode: enforce\nmx: a.example\nmax_age: 1\n", "is not STSv1"},
      {"version: stsv1\nmode: enforce\nmx: a.example\nmax_age: 1\n", "is not STSv1"},
      {"version: STSv1\nmx: a.example\nmax_age: 1\n", "no mode"},
      {"version: STSv1\nmode: Enforce\nmx: a.example\nmax_age: 1\n", "not enforce, testing or none"},
      {"version: STSv1\nmode: enforce\nmx: a.example\n", "no max_age"},
      {"version: STSv1\nmode: enforce\nmax_age: 1\n", "no mx"},
      {"version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 31557601\n", "more than 31557600"},
      {"version: STSv1\nmode: enforce\nmx: a.example\nmax_age: -1\n", "not 1-10 digits"},
      {"version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 12345678901\n", "not 1-10 digits"},
      {"version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 1d\n", "not 1-10 digits"},
      {"version: STSv1\nmode: enforce\nmx: a.example\nmax_age:\n", "has no value"},
      {"version: STSv1\nmode: enforce\nmode: testing\nmx: a.example\nmax_age: 1\n", "mode given twice"},
      {"version: STSv1\nmode: enforce\nmx: a..example\nmax_age: 1\n", "not a host name"},
      {"version: STSv1\nmode: enforce\nmx: *.*.example\nmax_age: 1\n", "not a host name"},
      {"version: STSv1\nmode: enforce\nmx: a*.example\nmax_age: 1\n", "not a host name"},
      {"version: STSv1\nmode: enforce\nmx: a.example\njunk line\nmax_age: 1\n", "line 4: no \"key: value\""},
      {"version: STSv1\rmode: enforce\nmx: a.example\nmax_age: 1\n", "bare CR"},
      {"<html>moved</html>", "no \"key: value\""},
  };
  for (const auto& c : cases) {
    auto p = parse_policy(c.text);
    ASSERT_FALSE(p) << c.text;
    EXPECT_NE(p.error().find(c.phrase), std::string::npos) << c.text << " -> " << p.error();
  }
}

TEST(mta_sts_policy, the_size_limit_holds) {
  std::string big = good;
  while (big.size() <= max_policy_size) big += "x-padding: " + std::string(100, 'p') + "\r\n";
  auto p = parse_policy(big);
  ASSERT_FALSE(p);
  EXPECT_NE(p.error().find("larger than 65536"), std::string::npos) << p.error();
}

// Cut anywhere, a good policy never parses as something else: either the same
// policy (a cut inside trailing text) or an error. Never a crash.
TEST(mta_sts_policy, every_prefix_is_handled) {
  for (std::size_t n = 0; n <= good.size(); ++n) {
    auto p = parse_policy(good.substr(0, n));
    if (p) {
      EXPECT_EQ(p->what, mode::enforce);
      EXPECT_FALSE(p->mx.empty());
    }
  }
}

TEST(mta_sts_mx, patterns_match_one_label_and_ignore_case) {
  EXPECT_TRUE(mx_pattern_matches("mail.example.com", "mail.example.com"));
  EXPECT_TRUE(mx_pattern_matches("mail.example.com", "MAIL.Example.COM."));
  EXPECT_FALSE(mx_pattern_matches("mail.example.com", "mail2.example.com"));
  EXPECT_TRUE(mx_pattern_matches("*.example.net", "mx1.example.net"));
  EXPECT_TRUE(mx_pattern_matches("*.example.net", "MX1.EXAMPLE.NET"));
  EXPECT_FALSE(mx_pattern_matches("*.example.net", "example.net"));
  EXPECT_FALSE(mx_pattern_matches("*.example.net", "a.b.example.net"));  // one label only
  EXPECT_FALSE(mx_pattern_matches("*.example.net", "mx1.badexample.net"));
  EXPECT_FALSE(mx_pattern_matches("*.example.net", ".example.net"));
  policy p;
  p.mx = {"mail.example.com", "*.example.net"};
  EXPECT_TRUE(mx_allowed(p, "x.example.net"));
  EXPECT_FALSE(mx_allowed(p, "evil.example.org"));
}

TEST(mta_sts_txt, the_id_of_the_one_sts_record) {
  EXPECT_EQ(policy_id({"v=STSv1; id=20160831085700Z;"}).value(), "20160831085700Z");
  EXPECT_EQ(policy_id({"v=STSv1;id=abc"}).value(), "abc");
  EXPECT_EQ(policy_id({"v=spf1 -all", "v=STSv1; ext=1 ; id=X1 ;"}).value(), "X1");
  struct bad_case {
    std::vector<std::string> records;
    std::string phrase;
  };
  const std::vector<bad_case> cases = {
      {{}, "no v=STSv1 record"},
      {{"v=spf1 -all"}, "no v=STSv1 record"},
      {{"v=STSv1; id=a", "v=STSv1; id=b"}, "2 v=STSv1 records"},
      {{"v=STSv1;"}, "no id field"},
      {{"v=STSv1; id=has-dash"}, "not 1-32 letters or digits"},
      {{"v=STSv1; id=" + std::string(33, 'a')}, "not 1-32 letters or digits"},
      {{"v=STSv1; id="}, "malformed field"},
      {{"v=STSv1 id=a"}, "separated by"},
      {{"v=STSv1; id=a; id=b"}, "id given twice"},
  };
  for (const auto& c : cases) {
    auto id = policy_id(c.records);
    ASSERT_FALSE(id) << (c.records.empty() ? "" : c.records[0]);
    EXPECT_NE(id.error().find(c.phrase), std::string::npos) << id.error();
  }
}

TEST(mta_sts_cache, a_record_round_trips_and_a_bad_one_is_dropped) {
  cached_policy c{"id1", 1700000000, good, *parse_policy(good)};
  auto back = decode(encode(c));
  ASSERT_TRUE(back);
  EXPECT_EQ(back->id, "id1");
  EXPECT_EQ(back->fetched_at, 1700000000);
  EXPECT_EQ(back->text, good);
  EXPECT_EQ(back->parsed.mx, c.parsed.mx);
  EXPECT_EQ(back->expires_at(), 1700000000 + 604800);
  const std::string e = encode(c);
  for (std::size_t n = 0; n + 1 < e.size(); ++n) {
    if (n >= e.size() - 20) continue;  // a cut in the trailing newline/max_age line may still parse
    EXPECT_FALSE(decode(e.substr(0, n))) << n;
  }
  EXPECT_FALSE(decode("2\nid1\n1\n" + good));  // an unknown version
  EXPECT_FALSE(decode("1\nid1\nnot-a-time\n" + good));
}

TEST(mta_sts_cache, when_to_fetch) {
  cached_policy c{"id1", 1000, good, *parse_policy(good)};  // expires at 1000 + 604800
  const std::int64_t fresh = 2000, expired = 1000 + 604800;
  EXPECT_EQ(next_step(c, std::string("id1"), fresh), step::use_cached);
  EXPECT_EQ(next_step(c, std::string("id2"), fresh), step::fetch);     // the id changed
  EXPECT_EQ(next_step(c, std::string("id1"), expired), step::fetch);   // max_age passed
  EXPECT_EQ(next_step(c, std::nullopt, fresh), step::keep_cached);     // no record / DNS down
  EXPECT_EQ(next_step(c, std::nullopt, expired), step::none);
  EXPECT_EQ(next_step(std::nullopt, std::string("id1"), fresh), step::fetch);
  EXPECT_EQ(next_step(std::nullopt, std::nullopt, fresh), step::none);
}

}  // namespace
