// Reload without I/O: which keys a reload applies and which keep their running
// value (and are reported as needing a restart); the [log] level key; the
// re-keying of deferred mail after a retry-settings change.
#include "relayd/config_reload.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>

#include "relayd/delivery_rekey.hpp"

namespace relayd {
namespace {

using namespace std::chrono_literals;

config parse_ok(std::string_view text) {
  auto c = parse_config(text, "relayd.toml");
  EXPECT_TRUE(c.has_value()) << c.error();
  return c.value_or(config{});
}

bool has(const std::vector<std::string>& v, std::string_view s) {
  return std::ranges::find(v, s) != v.end();
}

constexpr std::string_view base = R"(
spool = "/var/spool/a"
[smtp]
listen = ["127.0.0.1:2525"]
max_message_size = "10M"
[queue]
min_backoff = "5m"
max_backoff = "1h"
[control]
socket = "/run/a.sock"
)";

TEST(config_reload, same_file_changes_nothing_and_needs_no_restart) {
  auto plan = plan_reload(parse_ok(base), parse_ok(base));
  ASSERT_TRUE(plan) << plan.error();
  EXPECT_TRUE(plan->restart_needed.empty());
  EXPECT_TRUE(plan->changed.empty());
  EXPECT_FALSE(plan->retry_changed);
}

TEST(config_reload, retry_limits_and_routes_take_effect) {
  const std::string next = std::string(base) + R"(
[[route]]
recipient_domain = "example.org"
relayhost = "[smart.example.net]:587"
)";
  std::string text = next;
  text.replace(text.find("min_backoff = \"5m\""), 18, "min_backoff = \"1m\"");
  text.replace(text.find("\"10M\""), 5, "\"20M\"");
  auto plan = plan_reload(parse_ok(base), parse_ok(text));
  ASSERT_TRUE(plan) << plan.error();
  EXPECT_TRUE(plan->retry_changed);
  EXPECT_EQ(plan->next.queue.min_backoff, 60s);
  EXPECT_EQ(plan->next.smtp.max_message_size, 20u << 20);
  ASSERT_EQ(plan->next.routes.size(), 1u);
  EXPECT_TRUE(has(plan->changed, "queue"));
  EXPECT_TRUE(has(plan->changed, "smtp"));
  EXPECT_TRUE(has(plan->changed, "route"));
  EXPECT_TRUE(plan->restart_needed.empty());
}

TEST(config_reload, listener_spool_and_socket_keep_running_values) {
  std::string text(base);
  text.replace(text.find("127.0.0.1:2525"), 14, "127.0.0.1:2626");
  text.replace(text.find("/var/spool/a"), 12, "/var/spool/b");
  text.replace(text.find("/run/a.sock"), 11, "/run/b.sock");
  const config running = parse_ok(base);
  auto plan = plan_reload(running, parse_ok(text));
  ASSERT_TRUE(plan) << plan.error();
  EXPECT_EQ(plan->restart_needed,
            (std::vector<std::string>{"spool", "smtp.listen", "control.socket"}));
  EXPECT_EQ(plan->next.spool, "/var/spool/a");
  EXPECT_EQ(plan->next.smtp.listen.front().to_string(), "127.0.0.1:2525");
  EXPECT_EQ(plan->next.control.socket, "/run/a.sock");
}

TEST(config_reload, refuses_to_drop_the_certificate_of_an_open_submission_listener) {
  const std::string with = R"(
[smtp]
submission = ["127.0.0.1:5870"]
[tls]
cert = "/etc/c.pem"
key = "/etc/k.pem"
[auth]
users = "/etc/users"
)";
  std::string without = with;
  without.replace(without.find("cert = \"/etc/c.pem\""), 19, "");
  without.replace(without.find("key = \"/etc/k.pem\""), 18, "");
  auto plan = plan_reload(parse_ok(with), parse_ok(without));
  ASSERT_FALSE(plan);
  EXPECT_NE(plan.error().find("tls.cert"), std::string::npos) << plan.error();
}

TEST(config_log, level_names) {
  EXPECT_EQ(parse_ok("").log.level, log_level::info);
  EXPECT_EQ(parse_ok("[log]\nlevel = \"debug\"\n").log.level, log_level::debug);
  EXPECT_EQ(parse_ok("[log]\nlevel = \"notice\"\n").log.level, log_level::notice);
  EXPECT_EQ(parse_ok("[log]\nlevel = \"warning\"\n").log.level, log_level::warning);
  EXPECT_EQ(parse_ok("[log]\nlevel = \"error\"\n").log.level, log_level::error);
  auto bad = parse_config("[log]\nlevel = \"loud\"\n", "relayd.toml");
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().find("log.level"), std::string::npos) << bad.error();
}

// ---- re-keying deferred mail -------------------------------------------------

constexpr std::int64_t s_us = 1'000'000;

queue::envelope_record deferred_once(std::int64_t last_attempt, std::int64_t next_attempt) {
  queue::envelope_record r;
  r.id = "A1";
  r.arrival_us = last_attempt - 10 * s_us;
  queue::recipient rc;
  rc.address = "bob@example.org";
  rc.attempts = 1;
  rc.last_attempt_us = last_attempt;
  rc.next_attempt_us = next_attempt;
  r.recipients.push_back(rc);
  return r;
}

TEST(delivery_rekey, shorter_min_backoff_brings_a_deferred_message_forward) {
  const std::int64_t now = 1'000'000 * s_us;
  // Deferred once 10 s ago under min_backoff 1h: due in 3590 s.
  const auto r = deferred_once(now - 10 * s_us, now + 3590 * s_us);
  const auto due = rekeyed_due(r, {.min_backoff = 30s, .max_backoff = 1h}, now);
  ASSERT_TRUE(due);
  EXPECT_EQ(*due, now + 20 * s_us);  // the last attempt + 30 s
}

TEST(delivery_rekey, a_backoff_already_over_is_due_now) {
  const std::int64_t now = 1'000'000 * s_us;
  const auto r = deferred_once(now - 600 * s_us, now + 3000 * s_us);
  EXPECT_EQ(rekeyed_due(r, {.min_backoff = 60s, .max_backoff = 1h}, now), now);
}

TEST(delivery_rekey, longer_backoff_postpones) {
  const std::int64_t now = 1'000'000 * s_us;
  const auto r = deferred_once(now - 10 * s_us, now + 50 * s_us);  // min_backoff was 1m
  EXPECT_EQ(rekeyed_due(r, {.min_backoff = 10min, .max_backoff = 1h}, now), now + 590 * s_us);
}

TEST(delivery_rekey, unchanged_within_jitter_held_and_never_attempted_stay) {
  const std::int64_t now = 1'000'000 * s_us;
  // Due at last attempt + 5m + 20 s of jitter: within 10 % of 5 min.
  auto r = deferred_once(now - 10 * s_us, now + 310 * s_us);
  EXPECT_FALSE(rekeyed_due(r, {.min_backoff = 5min, .max_backoff = 1h}, now));
  r = deferred_once(now - 10 * s_us, now + 3590 * s_us);
  r.flags |= queue::flag_held;
  EXPECT_FALSE(rekeyed_due(r, {.min_backoff = 30s, .max_backoff = 1h}, now));
  r = deferred_once(now, now + 100 * s_us);
  r.recipients[0].attempts = 0;
  r.recipients[0].last_attempt_us = 0;
  EXPECT_FALSE(rekeyed_due(r, {.min_backoff = 30s, .max_backoff = 1h}, now));
}

TEST(delivery_rekey, never_past_the_expiry) {
  const std::int64_t now = 1'000'000 * s_us;
  auto r = deferred_once(now - 10 * s_us, now + 1000 * s_us);
  r.arrival_us = now - 100 * s_us;
  // max_lifetime 200 s: expires at now + 100 s, before last attempt + 1h.
  EXPECT_EQ(rekeyed_due(r, {.min_backoff = 1h, .max_backoff = 2h, .max_lifetime = 200s}, now),
            now + 100 * s_us);
}

}  // namespace
}  // namespace relayd
