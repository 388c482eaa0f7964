// OAuth2 token handling without a network: the token endpoint's JSON answers
// (good, rotated refresh token, bad), the provider's error text, the cache's
// expiry and refresh-ahead on an injected clock, and the relayhost_oauth2 config.
#include "relayd/oauth2_token.hpp"

#include <gtest/gtest.h>

#include "relayd/config.hpp"

namespace relayd {
namespace {

using namespace std::chrono_literals;

TEST(oauth2_token, parses_a_token_answer) {
  auto r = parse_token_reply(
      R"({"access_token":"ya29.a0","expires_in":3599,"scope":"https://mail.google.com/","token_type":"Bearer"})");
  ASSERT_TRUE(r) << r.error();
  EXPECT_EQ(r->access_token, "ya29.a0");
  EXPECT_EQ(r->expires_in, 3599s);
  EXPECT_EQ(r->refresh_token, "");
  auto rotated = parse_token_reply(
      R"({"token_type":"bearer","expires_in":"4000","access_token":"x","refresh_token":"rt-2"})");
  ASSERT_TRUE(rotated) << rotated.error();
  EXPECT_EQ(rotated->expires_in, 4000s);
  EXPECT_EQ(rotated->refresh_token, "rt-2");
  EXPECT_EQ(parse_token_reply(R"({"access_token":"x"})")->expires_in, 3600s);
}

TEST(oauth2_token, refuses_bad_answers) {
  EXPECT_EQ(parse_token_reply("<html>").error(), "the answer is not a JSON object");
  EXPECT_EQ(parse_token_reply("[]").error(), "the answer is not a JSON object");
  EXPECT_EQ(parse_token_reply(R"({"expires_in":10})").error(),
            "the answer has no access_token string");
  EXPECT_EQ(parse_token_reply(R"({"access_token":"x","token_type":"MAC"})").error(),
            "token_type MAC is not Bearer");
  EXPECT_EQ(parse_token_reply(R"({"access_token":"x","expires_in":0})").error(),
            "expires_in is not a positive number of seconds");
  EXPECT_FALSE(parse_token_reply(R"({"access_token":"x","expires_in":"soon"})"));
}

TEST(oauth2_token, describes_the_providers_error) {
  EXPECT_EQ(describe_token_error(
                400, R"({"error":"invalid_grant","error_description":"Token has been expired or revoked."})"),
            "HTTP 400: invalid_grant: Token has been expired or revoked.");
  EXPECT_EQ(describe_token_error(401, R"({"error":"invalid_client"})"), "HTTP 401: invalid_client");
  EXPECT_EQ(describe_token_error(503, "Service\r\nUnavailable"), "HTTP 503: \"Service  Unavailable\"");
  EXPECT_EQ(describe_token_error(500, ""), "HTTP 500");
}

TEST(oauth2_token, cache_refreshes_ahead_then_expires) {
  oauth2_token_cache c;
  const auto t0 = std::chrono::steady_clock::time_point{} + 1000h;
  EXPECT_EQ(c.at(t0), oauth2_token_cache::state::none);
  c.store("a", 3600s, t0);
  EXPECT_EQ(c.at(t0), oauth2_token_cache::state::fresh);
  EXPECT_EQ(c.at(t0 + 3299s), oauth2_token_cache::state::fresh);
  EXPECT_EQ(c.at(t0 + 3300s), oauth2_token_cache::state::refresh_ahead);  // 5 min before
  EXPECT_EQ(c.at(t0 + 3569s), oauth2_token_cache::state::refresh_ahead);
  EXPECT_EQ(c.at(t0 + 3570s), oauth2_token_cache::state::expired);  // 30 s before
  // A short lifetime: a quarter and a tenth of it.
  c.store("b", 4s, t0);
  EXPECT_EQ(c.at(t0 + 2999ms), oauth2_token_cache::state::fresh);
  EXPECT_EQ(c.at(t0 + 3s), oauth2_token_cache::state::refresh_ahead);
  EXPECT_EQ(c.at(t0 + 3600ms), oauth2_token_cache::state::expired);
}

TEST(oauth2_token, a_refused_token_is_forgotten_only_if_current) {
  oauth2_token_cache c;
  const auto t0 = std::chrono::steady_clock::time_point{} + 1h;
  c.store("new", 3600s, t0);
  c.forget("old");  // another connection's older token
  EXPECT_EQ(c.at(t0), oauth2_token_cache::state::fresh);
  c.forget("new");
  EXPECT_EQ(c.at(t0), oauth2_token_cache::state::none);
}

constexpr std::string_view base = R"(
[delivery]
relayhost = "[smtp.office365.com]:587"
relayhost_user = "relay@example.org"
)";

TEST(oauth2_config, parses_the_inline_table) {
  auto c = parse_config(std::string(base) + R"(relayhost_oauth2 = { token_url = "https://login.microsoftonline.com/t/oauth2/v2.0/token", client_id = "cid", client_secret_file = "/etc/relayd/cs", refresh_token_file = "/etc/relayd/rt", scope = "https://outlook.office365.com/.default offline_access", mechanism = "oauthbearer" })");
  ASSERT_TRUE(c) << c.error();
  const auto& o = *c->delivery.relayhost_oauth2;
  EXPECT_EQ(o.client_id, "cid");
  EXPECT_EQ(o.refresh_token_file, "/etc/relayd/rt");
  EXPECT_EQ(o.mechanism, smtp::sasl_mechanism::oauthbearer);
}

TEST(oauth2_config, errors_name_the_key) {
  auto err = [](std::string extra) {
    auto c = parse_config(std::string(base) + extra);
    return c ? std::string("accepted") : c.error();
  };
  EXPECT_EQ(err(R"(relayhost_oauth2 = { token_url = "http://x/t", client_id = "c", refresh_token_file = "/r" })"),
            "config: delivery.relayhost_oauth2.token_url: must be an https:// URL, got \"http://x/t\"");
  EXPECT_EQ(err(R"(relayhost_oauth2 = { token_url = "https://x/t", refresh_token_file = "/r" })"),
            "config: delivery.relayhost_oauth2.client_id: must be set");
  EXPECT_EQ(err(R"(relayhost_oauth2 = { token_url = "https://x/t", client_id = "c", refresh_token_file = "/r", mechanism = "plain" })"),
            "config: delivery.relayhost_oauth2.mechanism: expected \"xoauth2\" or \"oauthbearer\", got \"plain\"");
  EXPECT_EQ(err(R"(relayhost_oauth2 = { token_url = "https://x/t", client_id = "c", refresh_token_file = "/r", scopes = "s" })"),
            "config: delivery.relayhost_oauth2.scopes: unknown key (did you mean scope?)");
  EXPECT_EQ(err("relayhost_password_file = \"/p\"\n" R"(relayhost_oauth2 = { token_url = "https://x/t", client_id = "c", refresh_token_file = "/r" })"),
            "config: delivery.relayhost_oauth2: excludes delivery.relayhost_password_file (set one of them)");
  EXPECT_EQ(err(R"(relayhost_oauth2 = "https://x")"),
            "config: delivery.relayhost_oauth2: expected a table { token_url = \"https://...\", client_id = ..., ... }, got a string");
}

}  // namespace
}  // namespace relayd
