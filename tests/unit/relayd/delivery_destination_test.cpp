// Tests for relayd/delivery_rate and relayd/delivery_destination: rate syntax,
// the token bucket's limits over measured windows (at /s, /m and /h semantics),
// bookings redeemed once, the domain / suffix / MX-suffix matcher, the
// [[destination]] config keys, and the built-in provider profiles against the
// providers' published throttling replies.
#include <gtest/gtest.h>

#include "relayd/config.hpp"
#include "relayd/delivery_destination.hpp"
#include "relayd/delivery_rate.hpp"

namespace relayd {
namespace {

constexpr std::int64_t sec = 1'000'000;

TEST(rate, parses_each_unit) {
  EXPECT_EQ(parse_rate("60/m")->interval_us(), 1 * sec);
  EXPECT_EQ(parse_rate("10/s")->interval_us(), sec / 10);
  EXPECT_EQ(parse_rate("2000/h")->interval_us(), 1'800'000);
  EXPECT_EQ(parse_rate("20000/d")->interval_us(), 4'320'000);
  EXPECT_EQ(parse_rate("100/m")->to_string(), "100/m");
}

TEST(rate, refuses_bad_text_naming_it) {
  for (const char* bad : {"", "60", "/m", "60/", "60/x", "0/m", "-1/m", "6o/m", "60/mm", "1/ m"}) {
    auto r = parse_rate(bad);
    ASSERT_FALSE(r.has_value()) << bad;
    EXPECT_NE(r.error().find(std::string("\"") + bad + "\""), std::string::npos) << r.error();
  }
}

// How many of `n` reservations made at `now` may go within [now, now + window).
int granted_within(token_bucket& b, std::int64_t now, int n, std::int64_t window) {
  int in = 0;
  for (int i = 0; i < n; ++i)
    if (b.reserve(now) < now + window) ++in;
  return in;
}

TEST(token_bucket, sixty_per_minute_grants_one_a_second_after_one_token) {
  token_bucket b(*parse_rate("60/m"));
  const std::int64_t t0 = 1000 * sec;
  // 500 messages queued at once: over a minute at most 1 (burst) + 59 more.
  EXPECT_EQ(granted_within(b, t0, 500, 60 * sec), 60);
}

TEST(token_bucket, slots_are_distinct_and_spaced) {
  token_bucket b(*parse_rate("60/m"));
  const std::int64_t t0 = 1000 * sec;
  std::int64_t last = -1;
  for (int i = 0; i < 100; ++i) {
    auto s = b.reserve(t0);
    EXPECT_EQ(s, t0 + i * sec);
    EXPECT_GT(s, last);
    last = s;
  }
}

TEST(token_bucket, per_second_rate_has_a_one_second_burst) {
  token_bucket b(*parse_rate("10/s"));
  const std::int64_t t0 = 50 * sec;
  EXPECT_EQ(granted_within(b, t0, 10, 1), 10);  // the burst: all at t0
  EXPECT_EQ(b.reserve(t0), t0 + sec / 10);       // then one per 100 ms
}

TEST(token_bucket, hourly_rate_over_an_hour) {
  token_bucket b(*parse_rate("2000/h"));
  EXPECT_EQ(granted_within(b, 0, 5000, 3600 * sec), 2000);
}

TEST(token_bucket, refills_while_idle_but_not_above_the_burst) {
  token_bucket b(*parse_rate("60/m"));
  EXPECT_EQ(b.reserve(0), 0);
  EXPECT_FALSE(b.ready(0));
  EXPECT_TRUE(b.ready(sec));
  // A long pause does not save up a minute of tokens.
  EXPECT_EQ(granted_within(b, 600 * sec, 10, 1), 1);
}

TEST(token_bucket, a_booking_is_redeemed_once) {
  token_bucket b(*parse_rate("60/m"));
  b.reserve(0);
  const auto slot = b.reserve(0);
  ASSERT_EQ(slot, sec);
  EXPECT_TRUE(b.redeem(slot, slot));
  EXPECT_FALSE(b.redeem(slot, slot));        // the second time it is charged again
  EXPECT_FALSE(b.redeem(slot + 1, slot));    // never booked
  const auto later = b.reserve(0);
  EXPECT_FALSE(b.redeem(later, later + 120 * sec));  // too late: forgotten
}

TEST(token_bucket, slow_spaces_tokens_wider) {
  token_bucket b(*parse_rate("60/m"));
  b.set_slow(2);
  EXPECT_EQ(b.reserve(0), 0);
  EXPECT_EQ(b.reserve(0), 2 * sec);
}

TEST(token_bucket, unlimited_always_grants_now) {
  token_bucket b;
  EXPECT_FALSE(b.limited());
  EXPECT_EQ(b.reserve(7), 7);
  EXPECT_TRUE(b.ready(7));
}

TEST(destination_match, domain_suffix_and_mx) {
  auto d = *parse_destination_match("Example.org");
  EXPECT_TRUE(d.matches("example.org", ""));
  EXPECT_TRUE(d.matches("EXAMPLE.ORG.", ""));
  EXPECT_FALSE(d.matches("sub.example.org", ""));
  auto s = *parse_destination_match("*.example.org");
  EXPECT_TRUE(s.matches("example.org", ""));
  EXPECT_TRUE(s.matches("a.b.example.org", ""));
  EXPECT_FALSE(s.matches("badexample.org", ""));
  auto m = *parse_destination_match("mx:*.google.com");
  EXPECT_FALSE(m.matches("gmail.com", ""));  // MX not known yet
  EXPECT_TRUE(m.matches("customer.example", "aspmx.l.google.com"));
  EXPECT_TRUE(m.matches("gmail.com", "gmail-smtp-in.l.google.com."));
  EXPECT_FALSE(m.matches("google.com", "google.com"));
  EXPECT_FALSE(m.matches("x.example", "mx.notgoogle.com"));
}

TEST(destination_match, refuses_bad_matches) {
  for (const char* bad : {"", "*", "*.", "mx:google.com", "mx:*", "a..b", "*example.org", "x y"})
    EXPECT_FALSE(parse_destination_match(bad).has_value()) << bad;
}

config with(std::string_view toml) {
  auto c = parse_config(toml, "relayd.toml");
  EXPECT_TRUE(c.has_value()) << c.error();
  return c.value_or(config{});
}

TEST(destination_policies, first_match_wins_and_mx_matches_need_the_mx) {
  auto cfg = with(R"(
[[destination]]
match = "special.example"
max_rate = "10/m"
[[destination]]
match = "mx:*.shared.test"
max_connections = 2
max_messages_per_connection = 5
max_rate = "60/m"
connect_rate = "1/s"
[[destination.rule]]
reply = "^421 4\\.7\\.99"
action = "slow"
for = "10m"
)");
  destination_policies p(cfg);
  EXPECT_TRUE(p.any_mx());
  ASSERT_NE(p.find("special.example", "mx.shared.test"), nullptr);
  EXPECT_EQ(p.find("special.example", "mx.shared.test")->name, "special.example");
  EXPECT_EQ(p.find("a.test", ""), nullptr);
  const auto* shared = p.find("a.test", "mx1.shared.test");
  ASSERT_NE(shared, nullptr);
  EXPECT_EQ(p.find("b.test", "mx2.shared.test"), shared);  // two domains, one policy
  EXPECT_EQ(shared->max_connections, 2u);
  EXPECT_EQ(shared->max_messages_per_connection, 5u);
  EXPECT_EQ(shared->max_rate->to_string(), "60/m");
  EXPECT_EQ(shared->connect_rate->to_string(), "1/s");
  auto hit = p.rule_for(*shared, 421, "4.7.99", "slow down");
  ASSERT_TRUE(hit);
  EXPECT_EQ(hit->rule.action, destination_rule::action_kind::slow);
  EXPECT_EQ(hit->rule.duration, std::chrono::minutes(10));
  EXPECT_FALSE(p.rule_for(*shared, 421, "4.7.0", "slow down"));
}

// The published replies, as the providers send them.
TEST(destination_policies, provider_profiles_match_published_throttling_replies) {
  destination_policies p(with(""));
  const auto* gmail = p.find("customer.example", "alt1.aspmx.l.google.com");
  const auto* ms = p.find("contoso.com", "contoso-com.mail.protection.outlook.com");
  const auto* yahoo = p.find("yahoo.com", "mta5.am0.yahoodns.net");
  ASSERT_TRUE(gmail && ms && yahoo);
  EXPECT_TRUE(gmail->builtin);
  using a = destination_rule::action_kind;
  auto action = [&](const destination_policy* d, int code, const char* st, const char* text) {
    auto h = p.rule_for(*d, static_cast<std::uint16_t>(code), st, text);
    return h ? std::optional<a>(h->rule.action) : std::nullopt;
  };
  EXPECT_EQ(action(gmail, 421, "4.7.28",
                   "[192.0.2.1 15] Our system has detected an unusual rate of unsolicited mail "
                   "originating from your IP address. To protect our users from spam, mail sent "
                   "from your IP address has been temporarily rate limited."),
            a::suspend);
  EXPECT_EQ(action(gmail, 421, "4.7.0",
                   "[192.0.2.1] Our system has detected an unusual rate of unsolicited mail"),
            a::suspend);
  EXPECT_FALSE(action(gmail, 421, "4.7.0", "Try again later, closing connection. (EHLO)"));
  EXPECT_FALSE(action(gmail, 450, "4.2.1", "The user you are trying to contact is receiving mail "
                                           "at a rate that prevents additional messages"));
  EXPECT_EQ(action(ms, 451, "4.7.650",
                   "The mail server [192.0.2.1] has been temporarily rate limited due to IP "
                   "reputation."),
            a::suspend);
  EXPECT_EQ(action(ms, 451, "4.7.500", "Server busy. Please try again later from [192.0.2.1]."),
            a::suspend);
  EXPECT_EQ(action(ms, 421, "4.3.2",
                   "The maximum number of concurrent server connections has exceeded a limit, "
                   "closing transmission channel"),
            a::slow);
  EXPECT_EQ(action(yahoo, 421, "4.7.0",
                   "[TSS04] Messages from 192.0.2.1 temporarily deferred due to unexpected "
                   "volume or user complaints - 4.16.55.1; see https://postmaster.yahooinc.com/"
                   "error-codes"),
            a::suspend);
  EXPECT_FALSE(action(yahoo, 451, "4.3.2", "Internal error"));
  // A 421 4.7.28 from a host that is not Google's is no Gmail throttle.
  EXPECT_EQ(p.find("other.example", "mx.other.example"), nullptr);
}

TEST(destination_policies, a_configured_entry_keeps_the_profile_rules_after_its_own) {
  auto cfg = with(R"(
[[destination]]
match = "mx:*.google.com"
max_rate = "100/m"
)");
  destination_policies p(cfg);
  const auto* g = p.find("x.example", "aspmx.l.google.com");
  ASSERT_NE(g, nullptr);
  EXPECT_EQ(g->max_rate->to_string(), "100/m");
  EXPECT_TRUE(p.rule_for(*g, 421, "4.7.28", "unusual rate"));
  EXPECT_EQ(p.all().size(), 3u);  // gmail merged into the configured entry
}

TEST(destination_policies, provider_profiles_can_be_turned_off) {
  destination_policies p(with("[delivery]\nprovider_profiles = false\n"));
  EXPECT_EQ(p.find("x.example", "aspmx.l.google.com"), nullptr);
  EXPECT_FALSE(p.any_mx());
}

std::string config_error(std::string_view text) {
  auto c = parse_config(text, "relayd.toml");
  EXPECT_FALSE(c.has_value()) << text;
  return c ? "" : c.error();
}

TEST(destination_config, errors_name_the_key) {
  EXPECT_NE(config_error("[[destination]]\nmatch = \"mx:google.com\"\n")
                .find("destination[1].match: bad match"),
            std::string::npos);
  EXPECT_NE(config_error("[[destination]]\nmax_rate = \"1/m\"\n").find("destination[1].match: is required"),
            std::string::npos);
  EXPECT_NE(config_error("[[destination]]\nmatch = \"a.test\"\nmax_rate = \"60/min\"\n")
                .find("destination[1].max_rate: bad rate \"60/min\""),
            std::string::npos);
  EXPECT_NE(config_error("[[destination]]\nmatch = \"a.test\"\n[[destination.rule]]\n"
                         "reply = \"^421 (\"\naction = \"suspend\"\nfor = \"1m\"\n")
                .find("destination[1].rule[1].reply: bad regex"),
            std::string::npos);
  EXPECT_NE(config_error("[[destination]]\nmatch = \"a.test\"\n[[destination.rule]]\n"
                         "reply = \"^421\"\naction = \"pause\"\n")
                .find("destination[1].rule[1].action: bad action \"pause\""),
            std::string::npos);
  EXPECT_NE(config_error("[[destination]]\nmatch = \"a.test\"\n[[destination.rule]]\n"
                         "reply = \"^421\"\naction = \"suspend\"\n")
                .find("destination[1].rule[1].for: is required for suspend"),
            std::string::npos);
  EXPECT_NE(config_error("[[destination]]\nmatch = \"a.test\"\n[[destination]]\nmatch = \"A.test\"\n")
                .find("destination[2].match: \"a.test\" is used by another"),
            std::string::npos);
  EXPECT_NE(config_error("[[destination]]\nmatch = \"a.test\"\nmax_conections = 3\n")
                .find("destination[1].max_conections: unknown key"),
            std::string::npos);
}

TEST(destination_config, hold_without_for_lasts_until_resume) {
  auto cfg = with("[[destination]]\nmatch = \"a.test\"\n[[destination.rule]]\n"
                  "reply = \"^554\"\naction = \"hold\"\n");
  ASSERT_EQ(cfg.destinations.size(), 1u);
  ASSERT_EQ(cfg.destinations[0].rules.size(), 1u);
  EXPECT_EQ(cfg.destinations[0].rules[0].action, destination_rule::action_kind::hold);
  EXPECT_EQ(cfg.destinations[0].rules[0].duration.count(), 0);
}

}  // namespace
}  // namespace relayd
