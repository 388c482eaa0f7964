// relayd/delivery_requiretls: tagging at receipt (the MAIL parameter and the
// TLS-Required header field), the per-hop decision for every verification and
// name source, and the outcome of a walk over a destination's hosts.
#include "relayd/delivery_requiretls.hpp"

#include <gtest/gtest.h>

namespace relayd {
namespace {

constexpr std::uint32_t requiretls = queue::flag_requiretls;
constexpr std::uint32_t tls_optional = queue::flag_tls_optional;

TEST(RequireTlsHeader, FindsTlsRequiredNoInTheHeaderBlockOnly) {
  EXPECT_TRUE(tls_required_no("Subject: x\r\nTLS-Required: No\r\n\r\nbody\r\n"));
  EXPECT_TRUE(tls_required_no("tls-required:no\r\n\r\n"));
  EXPECT_TRUE(tls_required_no("TLS-Required:\r\n  No  \r\nSubject: x\r\n\r\n"));  // folded
  EXPECT_TRUE(tls_required_no("Subject: x\r\nTLS-Required: No"));           // no body, no CRLF
  EXPECT_FALSE(tls_required_no("Subject: x\r\n\r\nTLS-Required: No\r\n"));  // in the body
  EXPECT_FALSE(tls_required_no("TLS-Required: Yes\r\n\r\n"));
  EXPECT_FALSE(tls_required_no("TLS-Required: No thanks\r\n\r\n"));
  EXPECT_FALSE(tls_required_no("X-TLS-Required: No\r\n\r\n"));
  EXPECT_FALSE(tls_required_no("Subject: TLS-Required: No\r\n\r\n"));
  EXPECT_FALSE(tls_required_no(""));
}

TEST(RequireTlsHeader, TheParameterWinsOverTheHeader) {
  const std::string relaxed = "TLS-Required: No\r\n\r\nbody\r\n";
  EXPECT_EQ(requiretls_flags(true, relaxed), requiretls);  // RFC 8689 4.1: header ignored
  EXPECT_EQ(requiretls_flags(false, relaxed), tls_optional);
  EXPECT_EQ(requiretls_flags(false, "Subject: x\r\n\r\n"), 0u);
  EXPECT_TRUE(recipient_policy_applies(0));
  EXPECT_TRUE(recipient_policy_applies(requiretls));
  EXPECT_FALSE(recipient_policy_applies(tls_optional));
}

next_hop_facts hop(tls_verification v, next_hop_name n, bool offers) {
  return {.verification = v, .name = n, .offers_requiretls = offers};
}

TEST(RequireTlsHop, APlainMessageGoesAnywhereWithoutTheParameter) {
  for (auto flags : {0u, tls_optional}) {
    const auto c =
        check_next_hop(flags, hop(tls_verification::none, next_hop_name::mx_insecure, false));
    EXPECT_EQ(c.verdict, requiretls_verdict::send);
    EXPECT_TRUE(c.may_send());
    EXPECT_EQ(c.status(), "");
  }
}

TEST(RequireTlsHop, EveryConditionOfRfc8689) {
  using enum tls_verification;
  using enum next_hop_name;
  using enum requiretls_verdict;
  struct row {
    tls_verification v;
    next_hop_name n;
    bool offers;
    requiretls_verdict want;
    const char* status;
  };
  const row rows[] = {
      {none, relayhost, true, no_tls, "5.7.10"},
      {unauthenticated, relayhost, true, not_verified, "5.7.10"},
      {webpki, relayhost, false, no_requiretls, "5.7.30"},
      {webpki, relayhost, true, send_with_requiretls, ""},
      {webpki, domain, true, send_with_requiretls, ""},
      {webpki, mx_secure, true, send_with_requiretls, ""},
      {webpki, mx_insecure, true, name_not_authenticated, "5.7.10"},
      {mta_sts, mx_insecure, true, send_with_requiretls, ""},
      {dane, mx_secure, true, send_with_requiretls, ""},
      {dane, mx_secure, false, no_requiretls, "5.7.30"},
      {unauthenticated, mx_secure, true, not_verified, "5.7.10"},
  };
  for (const auto& r : rows) {
    const auto c = check_next_hop(requiretls, hop(r.v, r.n, r.offers));
    SCOPED_TRACE(std::string(to_string(r.v)) + " " + std::to_string(static_cast<int>(r.n)));
    EXPECT_EQ(c.verdict, r.want);
    EXPECT_EQ(c.status(), r.status);
    EXPECT_EQ(c.may_send(), r.want == send_with_requiretls);
    EXPECT_EQ(c.text().empty(), c.may_send());
  }
  // Requiring TLS wins over "TLS-Required: No" if both flags were ever set.
  EXPECT_EQ(check_next_hop(requiretls | tls_optional, hop(none, relayhost, false)).verdict, no_tls);
}

TEST(RequireTlsWalk, FailsWhenEveryHostWasAskedAndRefused) {
  requiretls_walk w;
  EXPECT_FALSE(w.any_refused());
  w.refused({requiretls_verdict::no_tls}, "mx1[192.0.2.1]:25");
  w.refused({requiretls_verdict::no_requiretls}, "mx2[192.0.2.2]:25");
  ASSERT_TRUE(w.any_refused());
  const auto o = w.outcome();
  EXPECT_EQ(o.what, outcome_kind::failed);
  EXPECT_EQ(o.status, "5.7.30");  // the last refusal names it
  EXPECT_EQ(o.reason, "requiretls");
  EXPECT_EQ(o.remote_host, "mx2[192.0.2.2]:25");
  EXPECT_EQ(o.cause, queue::outcome_cause::tls);
  EXPECT_NE(o.description.find("does not advertise REQUIRETLS"), std::string::npos)
      << o.description;
}

TEST(RequireTlsWalk, WaitsWhenAHostCouldNotBeAsked) {
  requiretls_walk w;
  w.unreachable();
  w.refused({requiretls_verdict::not_verified}, "mx2[192.0.2.2]:25");
  const auto o = w.outcome();
  EXPECT_EQ(o.what, outcome_kind::deferred);
  EXPECT_EQ(o.status, "4.7.10");
  EXPECT_TRUE(o.reason.empty());
  EXPECT_NE(o.text.find("may qualify later"), std::string::npos);
}

}  // namespace
}  // namespace relayd
