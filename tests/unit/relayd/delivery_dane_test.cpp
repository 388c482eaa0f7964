// The DANE policy (RFC 7672) from DNS facts: when TLSA records are looked up,
// which answers make TLS mandatory, which defer, which leave the normal policy.
#include "relayd/delivery_dane.hpp"

#include <gtest/gtest.h>

using namespace relayd;

namespace {

dns::tlsa_record rec(std::uint8_t usage, std::uint8_t selector, std::uint8_t mtype,
                     std::size_t len) {
  return dns::tlsa_record{usage, selector, mtype, std::vector<unsigned char>(len, 7)};
}

dns::tlsa_result answer(dns::outcome what, bool secure, std::vector<dns::tlsa_record> records,
                        std::string detail = "") {
  dns::tlsa_result r;
  r.what = what;
  r.secure = secure;
  r.records = std::move(records);
  r.detail = std::move(detail);
  return r;
}

const std::string base = "_25._tcp.mx.example.org";

}  // namespace

TEST(delivery_dane, tlsa_base_name_uses_the_port_and_the_mx_host) {
  EXPECT_EQ(tlsa_name("mx.example.org", 25), base);
  EXPECT_EQ(tlsa_name("mx.example.org", 2525), "_2525._tcp.mx.example.org");
}

TEST(delivery_dane, tlsa_is_looked_up_only_for_a_secure_mx_and_secure_addresses) {
  EXPECT_TRUE(wants_tlsa(true, true));
  EXPECT_FALSE(wants_tlsa(true, false));
  EXPECT_FALSE(wants_tlsa(false, true));
  EXPECT_FALSE(wants_tlsa(false, false));
}

TEST(delivery_dane, secure_usable_records_make_tls_mandatory) {
  auto d = decide_dane(base, answer(dns::outcome::ok, true,
                                    {rec(1, 1, 1, 32), rec(3, 1, 1, 32), rec(2, 0, 2, 64)}));
  EXPECT_EQ(d.mode, dane_mode::enforce);
  ASSERT_EQ(d.records.size(), 2u);  // the PKIX-EE record is dropped
  EXPECT_EQ(d.records[0].usage, 3);
  EXPECT_EQ(d.records[1].usage, 2);
  EXPECT_NE(d.why.find(base), std::string::npos);
}

TEST(delivery_dane, only_unusable_records_leave_the_normal_policy) {
  auto d = decide_dane(base, answer(dns::outcome::ok, true, {rec(0, 0, 1, 32), rec(3, 1, 1, 20)}));
  EXPECT_EQ(d.mode, dane_mode::none);
  EXPECT_TRUE(d.records.empty());
  EXPECT_NE(d.why.find("none usable"), std::string::npos) << d.why;
}

TEST(delivery_dane, insecure_records_are_ignored) {
  auto d = decide_dane(base, answer(dns::outcome::ok, false, {rec(3, 1, 1, 32)}));
  EXPECT_EQ(d.mode, dane_mode::none);
  EXPECT_NE(d.why.find("insecure"), std::string::npos) << d.why;
}

TEST(delivery_dane, no_records_leave_the_normal_policy) {
  EXPECT_EQ(decide_dane(base, answer(dns::outcome::not_found, true, {})).mode, dane_mode::none);
  EXPECT_EQ(decide_dane(base, answer(dns::outcome::not_found, false, {})).mode, dane_mode::none);
}

TEST(delivery_dane, a_failed_lookup_defers_with_the_resolver_reason) {
  for (auto what : {dns::outcome::retry, dns::outcome::fail}) {
    auto d = decide_dane(base, answer(what, false, {}, "SERVFAIL looking up TLSA for " + base));
    EXPECT_EQ(d.mode, dane_mode::defer);
    EXPECT_NE(d.why.find("SERVFAIL looking up TLSA for " + base), std::string::npos) << d.why;
  }
}

TEST(delivery_dane, refusals_are_deferrals_with_typed_facts) {
  auto tls = dane_failed("mx.example.org[192.0.2.1]:25", "no matching TLSA record", false);
  EXPECT_EQ(tls.what, outcome_kind::deferred);
  EXPECT_EQ(tls.status, "4.7.5");
  EXPECT_EQ(tls.cause, queue::outcome_cause::tls);
  EXPECT_NE(tls.description.find("DANE: no matching TLSA record"), std::string::npos)
      << tls.description;
  auto dns = dane_failed("mx.example.org[192.0.2.1]:25", "SERVFAIL", true);
  EXPECT_EQ(dns.what, outcome_kind::deferred);
  EXPECT_EQ(dns.status, "4.4.3");
  EXPECT_EQ(dns.cause, queue::outcome_cause::dns);
}

// RFC 7672 2.2.2: an MX host that is an alias is looked up at the expanded
// name first, then at its own name.
TEST(delivery_dane, an_alias_is_looked_up_at_its_target_first) {
  EXPECT_EQ(tlsa_bases("mx.example.org", ""), std::vector<std::string>{"mx.example.org"});
  EXPECT_EQ(tlsa_bases("mx.example.org", "mx.example.org"),
            std::vector<std::string>{"mx.example.org"});
  EXPECT_EQ(tlsa_bases("mx.example.org", "host.example.net"),
            (std::vector<std::string>{"host.example.net", "mx.example.org"}));
}
