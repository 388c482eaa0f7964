// relayd/tls_rpt: what a policy domain receives (RFC 8460): the day's counts per
// policy, the report's JSON fields and types, the gzip attachment and the mail
// around it, and which _smtp._tls records name a destination.
#include "relayd/tls_rpt.hpp"

#include <openssl/x509_vfy.h>

#include "relayd/delivery_dane.hpp"
#include "relayd/delivery_mta_sts.hpp"
#include "relayd/delivery_tls_rpt.hpp"
#include "relayd/tls_rpt_service.hpp"

#include <gtest/gtest.h>
#include <zlib.h>

#include <boost/json.hpp>

#include "smtp/base64.hpp"

namespace {
using namespace relayd::tls_rpt;
namespace json = boost::json;

policy sts_policy() {
  return policy{policy_type::sts, "example.org",
                {"version: STSv1", "mode: enforce", "mx: *.mx.example.org", "max_age: 86400"},
                {"*.mx.example.org"}};
}

session failed(result_type kind, std::string mx) {
  session s;
  s.applied = sts_policy();
  s.success = false;
  s.failure = kind;
  s.mx_host = std::move(mx);
  s.mx_ip = "192.0.2.7";
  return s;
}

std::string gunzip(std::string_view in) {
  z_stream z{};
  EXPECT_EQ(inflateInit2(&z, 15 + 16), Z_OK);
  std::string out(1 << 20, '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  z.avail_in = static_cast<uInt>(in.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  EXPECT_EQ(inflate(&z, Z_FINISH), Z_STREAM_END);
  out.resize(out.size() - z.avail_out);
  inflateEnd(&z);
  return out;
}

domain_day sample_day() {
  domain_day day;
  session ok;
  ok.applied = sts_policy();
  for (int i = 0; i < 5; ++i) day.add(ok);
  day.add(failed(result_type::certificate_expired, "a.mx.example.org"));
  day.add(failed(result_type::certificate_expired, "a.mx.example.org"));
  day.add(failed(result_type::starttls_not_supported, "b.mx.example.org"));
  session none;
  none.applied = policy{policy_type::no_policy_found, "example.org", {}, {}};
  day.add(none);
  return day;
}

report_info info() {
  return report_info{"relayd at host.example.net", "tlsrpt@host.example.net", "host.example.net",
                     "20261201.example.org.1a2b", 1764547200};
}

TEST(TlsRptDay, CountsPerPolicyAndGroupsFailures) {
  const domain_day day = sample_day();
  ASSERT_EQ(day.policies().size(), 2u);
  const auto& sts = day.policies()[0];
  EXPECT_EQ(sts.successes, 5u);
  EXPECT_EQ(sts.failures, 3u);
  ASSERT_EQ(sts.failure_details.size(), 2u);
  EXPECT_EQ(sts.failure_details.begin()->second + std::next(sts.failure_details.begin())->second, 3u);
  EXPECT_EQ(day.policies()[1].applied.type, policy_type::no_policy_found);
  EXPECT_EQ(day.policies()[1].successes, 1u);
}

TEST(TlsRptDay, StoredFormRoundTrips) {
  const domain_day day = sample_day();
  auto back = domain_day::decode(day.encode());
  ASSERT_TRUE(back) << back.error();
  EXPECT_EQ(*back, day);
}

TEST(TlsRptDay, DamagedStoredFormIsAnErrorNotACrash) {
  EXPECT_FALSE(domain_day::decode("not json"));
  EXPECT_FALSE(domain_day::decode("{}"));
  EXPECT_FALSE(domain_day::decode("[1]"));
  EXPECT_FALSE(domain_day::decode(R"([{"policy":{"policy-type":"nope","policy-domain":"x","policy-string":[]},"successes":1,"failures":0,"failure-details":[]}])"));
  EXPECT_FALSE(domain_day::decode(R"([{"policy":{"policy-type":"tlsa","policy-domain":"x","policy-string":[]},"successes":-1,"failures":0,"failure-details":[]}])"));
  auto e = domain_day::decode(R"([{"policy":{"policy-type":"tlsa","policy-domain":"x","policy-string":[]},"successes":1,"failures":1,"failure-details":[{"result-type":"bogus","failed-session-count":1}]}])");
  ASSERT_FALSE(e);
  EXPECT_NE(e.error().find("bogus"), std::string::npos);
}

TEST(TlsRptRecord, MailtoAndHttpsDestinations) {
  auto d = parse_record({"v=TLSRPTv1; rua=mailto:tls%2Breports@example.org,https://r.example.org/v1"});
  ASSERT_TRUE(d) << d.error();
  ASSERT_EQ(d->mailto.size(), 1u);
  EXPECT_EQ(d->mailto[0], "tls+reports@example.org");
  ASSERT_EQ(d->https.size(), 1u);
  EXPECT_EQ(d->https[0], "https://r.example.org/v1");
}

TEST(TlsRptRecord, OtherRecordsIgnoredButExactlyOneOfOurs) {
  EXPECT_TRUE(parse_record({"v=spf1 -all", "v=TLSRPTv1;rua=mailto:a@example.org"}));
  EXPECT_FALSE(parse_record({"v=spf1 -all"}));
  EXPECT_FALSE(parse_record({"v=TLSRPTv1;rua=mailto:a@example.org", "v=TLSRPTv1;rua=mailto:b@example.org"}));
  EXPECT_FALSE(parse_record({"v=TLSRPTv1;"}));
  EXPECT_FALSE(parse_record({"v=TLSRPTv1; rua=ftp://x"}));
  EXPECT_FALSE(parse_record({"v=TLSRPTv1; rua=mailto:%zz@example.org"}));
  EXPECT_FALSE(parse_record({"v=TLSRPTv1; rua=mailto:nobody"}));
  EXPECT_FALSE(parse_record({"v=TLSRPTv2; rua=mailto:a@example.org"}));
}

// The fields and types of RFC 8460 section 4.4, checked on the parsed JSON.
TEST(TlsRptReport, JsonHasTheRfc8460FieldsAndTypes) {
  const json::value v = json::parse(report_json(info(), "example.org", sample_day()));
  const json::object& r = v.as_object();
  EXPECT_EQ(r.at("organization-name").as_string(), "relayd at host.example.net");
  EXPECT_EQ(r.at("date-range").at("start-datetime").as_string(), "2025-12-01T00:00:00Z");
  EXPECT_EQ(r.at("date-range").at("end-datetime").as_string(), "2025-12-01T23:59:59Z");
  EXPECT_EQ(r.at("contact-info").as_string(), "tlsrpt@host.example.net");
  EXPECT_EQ(r.at("report-id").as_string(), "20261201.example.org.1a2b");
  const json::array& ps = r.at("policies").as_array();
  ASSERT_EQ(ps.size(), 2u);
  const json::object& p = ps[0].as_object();
  EXPECT_EQ(p.at("policy").at("policy-type").as_string(), "sts");
  EXPECT_EQ(p.at("policy").at("policy-domain").as_string(), "example.org");
  EXPECT_EQ(p.at("policy").at("policy-string").as_array().size(), 4u);
  EXPECT_EQ(p.at("policy").at("mx-host").as_array()[0].as_string(), "*.mx.example.org");
  EXPECT_EQ(p.at("summary").at("total-successful-session-count").to_number<std::int64_t>(), 5);
  EXPECT_EQ(p.at("summary").at("total-failure-session-count").to_number<std::int64_t>(), 3);
  const json::array& fd = p.at("failure-details").as_array();
  ASSERT_EQ(fd.size(), 2u);
  std::int64_t expired = 0;
  for (const auto& f : fd) {
    EXPECT_TRUE(f.at("receiving-mx-hostname").is_string());
    EXPECT_EQ(f.at("receiving-ip").as_string(), "192.0.2.7");
    if (f.at("result-type").as_string() == "certificate-expired")
      expired = f.at("failed-session-count").to_number<std::int64_t>();
  }
  EXPECT_EQ(expired, 2);
  const json::object& none = ps[1].as_object();
  EXPECT_EQ(none.at("policy").at("policy-type").as_string(), "no-policy-found");
  EXPECT_FALSE(none.at("policy").as_object().contains("mx-host"));
  EXPECT_FALSE(none.contains("failure-details"));
}

TEST(TlsRptReport, FilenameNamesSubmitterDomainAndDay) {
  EXPECT_EQ(report_filename(info(), "example.org"),
            "host.example.net!example.org!1764547200!1764633599!20261201.example.org.1a2b.json.gz");
}

TEST(TlsRptReport, MailCarriesTheGzippedJsonAndTheRfc8460Headers) {
  auto m = report_message(info(), "example.org", sample_day(), "tls@example.org",
                          "<r1@host.example.net>", 1764633600 + 60);
  ASSERT_TRUE(m) << m.error();
  EXPECT_NE(m->find("Subject: Report Domain: example.org Submitter: host.example.net "
                    "Report-ID: <20261201.example.org.1a2b>\r\n"),
            std::string::npos);
  EXPECT_NE(m->find("TLS-Report-Domain: example.org\r\n"), std::string::npos);
  EXPECT_NE(m->find("TLS-Report-Submitter: host.example.net\r\n"), std::string::npos);
  EXPECT_NE(m->find("multipart/report; report-type=\"tlsrpt\""), std::string::npos);
  EXPECT_NE(m->find("Content-Type: application/tlsrpt+gzip"), std::string::npos);
  // The attachment: the base64 lines between its header block and the boundary.
  const auto head = m->find("Content-Disposition: attachment");
  const auto start = m->find("\r\n\r\n", head) + 4;
  const auto end = m->find("\r\n--tlsrpt-", start);
  std::string b64;
  for (char c : m->substr(start, end - start))
    if (c != '\r' && c != '\n') b64 += c;
  auto packed = smtp::base64::decode(b64);
  ASSERT_TRUE(packed);
  EXPECT_EQ(gunzip(*packed), report_json(info(), "example.org", sample_day()));
  for (std::size_t at = 0, nl; (nl = m->find("\r\n", at)) != std::string::npos; at = nl + 2)
    EXPECT_LE(nl - at, 998u);
}

}  // namespace

namespace {
TEST(TlsRptDays, NamesAndBack) {
  EXPECT_EQ(relayd::day_name(1764547200), "2025-12-01");
  EXPECT_EQ(relayd::parse_day_name("2025-12-01"), 1764547200);
  EXPECT_FALSE(relayd::parse_day_name("2026-02-30"));
  EXPECT_FALSE(relayd::parse_day_name("2026-1-01"));
  EXPECT_FALSE(relayd::parse_day_name("../../etc"));
}
}  // namespace

// The delivery path's side (relayd/delivery_tls_rpt.hpp): which policy a host
// attempt reports under, and the result type of a certificate failure.
namespace {
using relayd::tls_rpt::policy_type;
using relayd::tls_rpt::result_type;

TEST(TlsRptDelivery, CertificateResultTypes) {
  EXPECT_EQ(relayd::certificate_result(X509_V_ERR_CERT_HAS_EXPIRED), result_type::certificate_expired);
  EXPECT_EQ(relayd::certificate_result(X509_V_ERR_HOSTNAME_MISMATCH),
            result_type::certificate_host_mismatch);
  EXPECT_EQ(relayd::certificate_result(X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT),
            result_type::certificate_not_trusted);
  EXPECT_EQ(relayd::certificate_result(X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY),
            result_type::certificate_not_trusted);
  EXPECT_EQ(relayd::certificate_result(X509_V_ERR_DANE_NO_MATCH), result_type::tlsa_invalid);
  EXPECT_EQ(relayd::certificate_result(X509_V_OK), result_type::validation_failure);
}

TEST(TlsRptDelivery, PolicyOfAHost) {
  relayd::mta_sts_verdict sts{"example.org"};
  relayd::dane_decision dane;
  EXPECT_EQ(relayd::tls_rpt_hop::policy_of("example.org", sts, dane).type,
            policy_type::no_policy_found);

  sts.what = relayd::mta_sts::mode::testing;
  sts.mx = {"*.example.org"};
  sts.text = "version: STSv1\r\nmode: testing\r\nmx: *.example.org\r\nmax_age: 86400\r\n";
  auto p = relayd::tls_rpt_hop::policy_of("example.org", sts, dane);
  EXPECT_EQ(p.type, policy_type::sts);
  EXPECT_EQ(p.strings, (std::vector<std::string>{"version: STSv1", "mode: testing",
                                                 "mx: *.example.org", "max_age: 86400"}));
  EXPECT_EQ(p.mx_patterns, std::vector<std::string>{"*.example.org"});

  // A policy that could not be had is still an "sts" one, without strings.
  relayd::mta_sts_verdict failed{"example.org"};
  failed.problem = relayd::mta_sts_verdict::fetch_problem::invalid;
  p = relayd::tls_rpt_hop::policy_of("example.org", failed, dane);
  EXPECT_EQ(p.type, policy_type::sts);
  EXPECT_TRUE(p.strings.empty());

  // DANE takes precedence; the records as presentation text.
  dane.mode = relayd::dane_mode::enforce;
  dane.records = {{3, 1, 1, {0xab, 0x01}}};
  p = relayd::tls_rpt_hop::policy_of("example.org", sts, dane);
  EXPECT_EQ(p.type, policy_type::tlsa);
  EXPECT_EQ(p.strings, std::vector<std::string>{"3 1 1 ab01"});
}

TEST(TlsRptDays, StartOfTheDay) {
  EXPECT_EQ(relayd::day_start_of(1764547200 + 86399), 1764547200);
  EXPECT_EQ(relayd::day_start_of(1764547200), 1764547200);
}
}  // namespace
