// relayd/delivery_route: which [[route]] a recipient takes (first match wins,
// subdomains, the default), the order a relayhost pool is tried in, and sender
// rewriting of the From: header (display names, folded fields, Reply-To kept),
// with the routes read by the real config parser.
#include "relayd/delivery_route.hpp"

#include <gtest/gtest.h>

namespace relayd {
namespace {

config parse(std::string_view text) {
  auto c = parse_config(text);
  EXPECT_TRUE(c.has_value()) << (c ? "" : c.error());
  return c ? *c : config{};
}

constexpr std::string_view three_routes = R"(
[[route]]
name = "billing"
sender_domain = "billing.example.org"
relayhost = "smtps://[ses.example.net]:465"
rewrite_sender = "noreply@billing.example.org"
[[route]]
name = "gmail"
recipient_domain = "gmail.com"
relayhost = ""
[[route]]
sender = "Root@Web-3.example.org"
relayhost = ["[a.example.net]:587", "smtps://[b.example.net]"]
rewrite_from = "ops@example.org"
)";

TEST(DeliveryRoute, FirstMatchWinsWithSubdomainsAndTheDefault) {
  const config c = parse(three_routes);
  ASSERT_EQ(c.routes.size(), 3u);
  // sender_domain includes subdomains; the first match wins over a later recipient route.
  EXPECT_EQ(route_for(c.routes, "app@billing.example.org", "x@gmail.com"), 1u);
  EXPECT_EQ(route_for(c.routes, "app@eu.billing.example.org", "x@other.test"), 1u);
  EXPECT_EQ(route_for(c.routes, "app@notbilling.example.org", "x@other.test"), default_route);
  // recipient_domain with subdomains, case-insensitive.
  EXPECT_EQ(route_for(c.routes, "a@x.test", "x@GMail.com"), 2u);
  EXPECT_EQ(route_for(c.routes, "a@x.test", "x@mail.gmail.com"), 2u);
  EXPECT_EQ(route_for(c.routes, "a@x.test", "x@gmail.com.evil"), default_route);
  // An exact sender, case-insensitive; another user of that host is not it.
  EXPECT_EQ(route_for(c.routes, "root@web-3.example.org", "x@y.test"), 3u);
  EXPECT_EQ(route_for(c.routes, "www@web-3.example.org", "x@y.test"), default_route);
  // Mail whose envelope was rewritten at accept stays on its route.
  EXPECT_EQ(route_for(c.routes, "noreply@billing.example.org", "x@y.test"), 1u);
  // Bounces (<>) take no sender route.
  EXPECT_EQ(route_for(c.routes, "", "x@y.test"), default_route);
  EXPECT_EQ(route_name(c, 1), "billing");
  EXPECT_EQ(route_name(c, 3), "route3");
  EXPECT_EQ(route_name(c, default_route), "default");
}

TEST(DeliveryRoute, SettingsOfTheDefaultComeFromDelivery) {
  const config c = parse(
      "[delivery]\nrelayhost = \"smtps://[smart.example.net]\"\nrelayhost_user = \"u\"\n"
      "relayhost_password_file = \"/pw\"\ntls = \"verify\"\n");
  const route r = route_settings(c, default_route);
  ASSERT_EQ(r.relayhost.size(), 1u);
  EXPECT_TRUE(r.relayhost[0].implicit_tls);
  EXPECT_EQ(r.relayhost[0].port, 465);
  EXPECT_EQ(r.user, "u");
  EXPECT_EQ(r.tls, tls_policy::verify);
  const config pool = parse(three_routes);
  const route third = route_settings(pool, 3);
  ASSERT_EQ(third.relayhost.size(), 2u);
  EXPECT_FALSE(third.relayhost[0].implicit_tls);
  EXPECT_EQ(third.relayhost[0].port, 587);
  EXPECT_TRUE(third.relayhost[1].implicit_tls);
  EXPECT_EQ(third.relayhost[1].to_string(), "smtps://b.example.net:465");
}

TEST(DeliveryRoute, PoolIsTriedInOrderAndEqualsAreSpread) {
  // Host 0 has two addresses, host 1 one: host 0's addresses always come first
  // (failover goes down the list), and successive connections alternate them.
  const std::vector<std::uint32_t> pref{0, 0, 1};
  EXPECT_EQ(attempt_order(pref, 0), (std::vector<std::size_t>{0, 1, 2}));
  EXPECT_EQ(attempt_order(pref, 1), (std::vector<std::size_t>{1, 0, 2}));
  EXPECT_EQ(attempt_order(pref, 2), (std::vector<std::size_t>{0, 1, 2}));
  // Unsorted preferences are sorted, stably.
  const std::vector<std::uint32_t> mixed{2, 0, 1};
  EXPECT_EQ(attempt_order(mixed, 5), (std::vector<std::size_t>{1, 2, 0}));
  EXPECT_TRUE(attempt_order({}, 3).empty());
}

TEST(DeliveryRoute, RewritesFromKeepingTheDisplayNameAndAddsReplyTo) {
  const std::string m =
      "Subject: hi\r\nFrom: \"Doe, Jane <boss>\" <jane@web-3.internal>\r\nTo: x@y.test\r\n"
      "\r\nbody From: not a header\r\n";
  auto out = rewrite_from_header(m, "noreply@example.org");
  ASSERT_TRUE(out);
  EXPECT_EQ(*out,
            "Subject: hi\r\nFrom: \"Doe, Jane <boss>\" <noreply@example.org>\r\n"
            "Reply-To: \"Doe, Jane <boss>\" <jane@web-3.internal>\r\nTo: x@y.test\r\n"
            "\r\nbody From: not a header\r\n");
}

TEST(DeliveryRoute, RewritesAFoldedFromAndKeepsAnExistingReplyTo) {
  const std::string folded =
      "from: Jane\r\n Doe\r\n\t<jane@web-3.internal>\r\nSubject: x\r\n\r\nb\r\n";
  auto out = rewrite_from_header(folded, "n@example.org");
  ASSERT_TRUE(out);
  EXPECT_EQ(*out,
            "From: Jane Doe <n@example.org>\r\n"
            "Reply-To: Jane\r\n Doe\r\n\t<jane@web-3.internal>\r\nSubject: x\r\n\r\nb\r\n");
  const std::string with_reply_to =
      "From: jane@web-3.internal\nReply-To: <list@example.org>\nSubject: x\n\nb\n";
  auto kept = rewrite_from_header(with_reply_to, "n@example.org");
  ASSERT_TRUE(kept);
  EXPECT_EQ(*kept, "From: <n@example.org>\nReply-To: <list@example.org>\nSubject: x\n\nb\n");
  // No From: in the header (only in the body): nothing to rewrite.
  EXPECT_FALSE(rewrite_from_header("Subject: x\r\n\r\nFrom: a@b\r\n", "n@example.org"));
}

TEST(DeliveryRoute, RewritingAtAcceptUsesTheSendersRouteOnly) {
  const config c = parse(three_routes);
  std::string sender = "app@billing.example.org";
  std::string msg = "From: App <app@billing.example.org>\r\n\r\nb\r\n";
  EXPECT_EQ(rewrite_sender_identity(c, sender, msg), "billing");
  EXPECT_EQ(sender, "noreply@billing.example.org");
  EXPECT_EQ(msg, "From: App <app@billing.example.org>\r\n\r\nb\r\n");  // no rewrite_from
  std::string root = "root@web-3.example.org";
  std::string rmsg = "From: root@web-3.example.org\r\n\r\nb\r\n";
  EXPECT_EQ(rewrite_sender_identity(c, root, rmsg), "route3");
  EXPECT_EQ(root, "root@web-3.example.org");
  EXPECT_EQ(rmsg, "From: <ops@example.org>\r\nReply-To: root@web-3.example.org\r\n\r\nb\r\n");
  std::string other = "www@web-3.example.org", omsg = rmsg;
  EXPECT_EQ(rewrite_sender_identity(c, other, omsg), "");
  EXPECT_EQ(omsg, rmsg);
}

TEST(DeliveryRoute, OAuth2PerRouteAndForTheDefault) {
  const config c = parse(R"(
[delivery]
relayhost = "[smart.example.net]:587"
relayhost_user = "d"
relayhost_oauth2 = { token_url = "https://login.example/token", client_id = "dc", refresh_token_file = "/drt" }
[[route]]
name = "m365"
sender_domain = "corp.example.org"
relayhost = "[smtp.office365.example]:587"
user = "app@corp.example.org"
oauth2 = { token_url = "https://login.example/t2", client_id = "c2", client_secret_file = "/cs", refresh_token_file = "/rt", scope = "s", mechanism = "oauthbearer" }
[[route]]
name = "ses"
sender_domain = "billing.example.org"
relayhost = "[ses.example.net]:587"
user = "AKIA"
password_file = "/pw"
)");
  ASSERT_EQ(c.routes.size(), 2u);
  const route m365 = route_settings(c, 1);
  ASSERT_TRUE(m365.oauth2);
  EXPECT_EQ(m365.oauth2->token_url, "https://login.example/t2");
  EXPECT_EQ(m365.oauth2->client_id, "c2");
  EXPECT_EQ(m365.oauth2->client_secret_file, "/cs");
  EXPECT_EQ(m365.oauth2->refresh_token_file, "/rt");
  EXPECT_EQ(m365.oauth2->scope, "s");
  EXPECT_EQ(m365.oauth2->mechanism, smtp::sasl_mechanism::oauthbearer);
  EXPECT_TRUE(m365.password_file.empty());
  EXPECT_FALSE(route_settings(c, 2).oauth2);
  EXPECT_EQ(route_settings(c, 2).password_file, "/pw");
  const route d = route_settings(c, default_route);
  ASSERT_TRUE(d.oauth2);
  EXPECT_EQ(d.oauth2->client_id, "dc");
  EXPECT_EQ(d.oauth2->mechanism, smtp::sasl_mechanism::xoauth2);
}

TEST(DeliveryRouteConfig, RefusesWhatCannotWork) {
  struct bad {
    std::string_view text, key, what;
  };
  const bad cases[] = {
      {"[delivery]\nrelayhost = \"[smtp.example.net]:465\"", "delivery.relayhost",
       "port 465 is implicit TLS: write smtps://[smtp.example.net]:465"},
      {"[delivery]\nrelayhost = \"smtpx://[a.example]:25\"", "delivery.relayhost", "unknown scheme"},
      {"[[route]]\nrecipient_domain = \"gmail.com\"\nrewrite_from = \"a@b.example\"",
       "route[1].rewrite_from", "not supported on a recipient_domain route"},
      {"[[route]]\nsender_domain = \"a.example\"\nrecipient_domain = \"b.example\"", "route[1]",
       "exactly one of"},
      {"[[route]]\nsender_domain = \"a.example\"\nrelayhost = [\"[a.example]:465\"]",
       "route[1].relayhost", "port 465 is implicit TLS"},
      {"[[route]]\nsender_domain = \"a.example\"\nuser = \"u\"\npassword_file = \"/pw\"",
       "route[1].user", "relayhost is empty"},
      {"[[route]]\nsender_domain = \"a.example\"\nrelayhost = \"[a.example]\"\nuser = \"u\"",
       "route[1].password_file", "must be set"},
      {"[[route]]\nsender_domain = \"a.example\"\nrelayhost = \"[a.example]\"\nuser = \"u\"\n"
       "password_file = \"/pw\"\noauth2 = { token_url = \"https://t.example/token\", "
       "client_id = \"c\", refresh_token_file = \"/rt\" }",
       "route[1].oauth2", "excludes password_file"},
      {"[[route]]\nsender_domain = \"a.example\"\nrelayhost = \"[a.example]\"\n"
       "oauth2 = { token_url = \"https://t.example/token\", client_id = \"c\", "
       "refresh_token_file = \"/rt\" }",
       "route[1].user", "must be set with oauth2"},
      {"[[route]]\nsender_domain = \"a.example\"\nrelayhost = \"[a.example]\"\nuser = \"u\"\n"
       "oauth2 = { token_url = \"http://t.example/token\", client_id = \"c\", "
       "refresh_token_file = \"/rt\" }",
       "route[1].oauth2.token_url", "must be an https:// URL"},
      {"[[route]]\nsender = \"a.example\"", "route[1].sender", "bad address"},
      {"[[route]]\nsender = \"a@a.example\"\ntls = \"sometimes\"", "route[1].tls", "bad value"},
      {"[[route]]\nsender = \"a@a.example\"\nrelay_host = \"\"", "route[1].relay_host",
       "did you mean relayhost"},
  };
  for (const auto& b : cases) {
    auto c = parse_config(b.text);
    ASSERT_FALSE(c.has_value()) << b.text;
    EXPECT_NE(c.error().find(std::string(b.key) + ":"), std::string::npos) << c.error();
    EXPECT_NE(c.error().find(b.what), std::string::npos) << c.error();
  }
  // An explicit smtp:// on 465 is the operator's choice; smtps:// defaults to 465.
  auto ok = parse_config("[delivery]\nrelayhost = \"smtp://[a.example]:465\"");
  ASSERT_TRUE(ok) << ok.error();
  EXPECT_FALSE(ok->delivery.relayhost->implicit_tls);
}

}  // namespace
}  // namespace relayd
