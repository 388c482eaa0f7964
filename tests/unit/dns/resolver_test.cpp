// dns::mx_resolver against a real dnsmasq on loopback (and fake SERVFAIL, silent
// and closed-port servers): preference order and random tie-break, implicit MX,
// null MX, NXDOMAIN, temporary failures, literals, the TTL cache with an injected
// clock, concurrency, cancel() and destruction.
#include <gtest/gtest.h>

#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <memory>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "dns/mx_resolver.hpp"
#include "tests/unit/dns/dnsmasq_fixture.hpp"

using namespace std::chrono_literals;
using dns::mx_result;
using dns::outcome;
using relayd_test::dnsmasq;
using relayd_test::fake_dns_server;

namespace {

std::vector<std::string> test_records() {
  std::vector<std::string> r = {
      "--mx-host=example.test,mx1.example.test,10",
      "--mx-host=example.test,mx3.example.test,30",
      "--mx-host=example.test,mx2.example.test,20",
      "--host-record=mx1.example.test,127.0.0.2,::2",
      "--host-record=mx2.example.test,127.0.0.3",
      "--host-record=mx3.example.test,127.0.0.4",
      "--mx-host=tie.test,a.tie.test,10",
      "--mx-host=tie.test,b.tie.test,10",
      "--mx-host=tie.test,c.tie.test,20",
      "--host-record=a.tie.test,127.0.1.1",
      "--host-record=b.tie.test,127.0.1.2",
      "--host-record=c.tie.test,127.0.1.3",
      "--host-record=implicit.test,127.0.0.9",
      "--txt-record=empty.test,nothing here",
      "--txt-record=s1._domainkey.key.test,v=DKIM1; k=rsa; ,p=QUJD",
      "--mx-host=nullmx.test,.,0",
      "--mx-host=mixed.test,.,0",
      "--mx-host=mixed.test,mx2.example.test,10",
      "--mx-host=noaddr.test,missing.test,10",
      "--mx-host=partial.test,mx1.example.test,10",
      "--mx-host=partial.test,mx.refused.org,20",
      "--mx-host=refusedhost.test,mx.refused.org,10",
      "--mx-host=literal.test,192.0.2.1,10",
      "--mx-host=literalmix.test,192.0.2.1,10",
      "--mx-host=literalmix.test,mx2.example.test,20",
      // TLSA 3 1 1 <32 bytes 0xAB> and a too-short record (DANE)
      "--dns-rr=_25._tcp.mx1.example.test,52,030101" + std::string(64, 'A'),
      "--dns-rr=_25._tcp.mx2.example.test,52,0200",
  };
  for (int i = 0; i < 100; ++i)
    r.push_back("--mx-host=d" + std::to_string(i) + ".test,mx1.example.test,10");
  // More MX records than fit in a 512-byte UDP reply: c-ares retries over TCP.
  for (int i = 0; i < 25; ++i) {
    std::string host = "a-rather-long-mail-exchanger-name-" + std::to_string(i) + ".big.test";
    r.push_back("--mx-host=big.test," + host + "," + std::to_string(i));
    r.push_back("--host-record=" + host + ",127.0.2." + std::to_string(i + 1));
  }
  return r;
}

// One resolver on its own io_context, with a clock the test moves. The default
// timeout is generous: tests that expect an answer from dnsmasq must not turn
// into timeouts on a loaded machine (CI shares two cores with the build).
struct harness {
  explicit harness(std::vector<std::string> servers, std::chrono::milliseconds timeout = 5000ms,
                   int tries = 2, std::size_t cache_entries = 1000) {
    dns::resolver_options o;
    o.servers = std::move(servers);
    o.timeout = timeout;
    o.tries = tries;
    o.cache_entries = cache_entries;
    o.now = [this] { return clock; };
    resolver = std::make_unique<dns::mx_resolver>(io, std::move(o));
  }

  mx_result mx(const std::string& domain) {
    std::optional<mx_result> got;
    resolver->resolve_mx(domain, [&](mx_result r) { got = std::move(r); });
    run();
    if (!got) throw std::runtime_error("no completion for " + domain);
    return *got;
  }
  mx_result host(const std::string& name) {
    std::optional<mx_result> got;
    resolver->resolve_host(name, [&](mx_result r) { got = std::move(r); });
    run();
    if (!got) throw std::runtime_error("no completion for " + name);
    return *got;
  }
  void run() {
    io.restart();
    io.run_for(60s);
  }

  std::chrono::steady_clock::time_point clock = std::chrono::steady_clock::now();
  boost::asio::io_context io;
  std::unique_ptr<dns::mx_resolver> resolver;
};

std::vector<std::string> names(const mx_result& r) {
  std::vector<std::string> out;
  for (const auto& h : r.hosts) out.push_back(h.name);
  return out;
}

class resolver_suite : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { server_ = new dnsmasq(test_records()); }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }
  static dnsmasq* server_;
};
dnsmasq* resolver_suite::server_ = nullptr;

}  // namespace

TEST_F(resolver_suite, hosts_in_preference_order_with_addresses) {
  harness h({server_->server()});
  auto r = h.mx("example.test");
  ASSERT_EQ(r.what, outcome::ok) << r.detail;
  EXPECT_FALSE(r.implicit);
  EXPECT_EQ(names(r),
            (std::vector<std::string>{"mx1.example.test", "mx2.example.test", "mx3.example.test"}));
  EXPECT_EQ(r.hosts[0].preference, 10);
  EXPECT_EQ(r.hosts[2].preference, 30);
  EXPECT_EQ(r.hosts[0].addresses, (std::vector<std::string>{"::2", "127.0.0.2"}));  // IPv6 first
  EXPECT_EQ(r.hosts[1].addresses, (std::vector<std::string>{"127.0.0.3"}));
}

TEST_F(resolver_suite, names_are_case_insensitive_with_optional_trailing_dot) {
  harness h({server_->server()});
  auto r = h.mx("EXAMPLE.Test.");
  ASSERT_EQ(r.what, outcome::ok) << r.detail;
  EXPECT_EQ(r.hosts.front().name, "mx1.example.test");
}

TEST_F(resolver_suite, equal_preferences_come_in_random_order) {
  for (std::size_t cache : {std::size_t{0}, std::size_t{100}}) {
    harness h({server_->server()}, 5000ms, 2, cache);
    std::set<std::string> firsts;
    for (int i = 0; i < 40; ++i) {
      auto r = h.mx("tie.test");
      ASSERT_EQ(r.what, outcome::ok) << r.detail;
      ASSERT_EQ(r.hosts.size(), 3u);
      EXPECT_EQ(r.hosts[2].name, "c.tie.test");
      firsts.insert(r.hosts[0].name);
    }
    EXPECT_EQ(firsts, (std::set<std::string>{"a.tie.test", "b.tie.test"})) << "cache " << cache;
  }
}

TEST_F(resolver_suite, no_mx_falls_back_to_the_domains_addresses) {
  harness h({server_->server()});
  auto r = h.mx("implicit.test");
  ASSERT_EQ(r.what, outcome::ok) << r.detail;
  EXPECT_TRUE(r.implicit);
  ASSERT_EQ(r.hosts.size(), 1u);
  EXPECT_EQ(r.hosts[0].name, "implicit.test");
  EXPECT_EQ(r.hosts[0].preference, 0);
  EXPECT_EQ(r.hosts[0].addresses, std::vector<std::string>{"127.0.0.9"});
}

TEST_F(resolver_suite, no_mx_and_no_address_is_not_found) {
  harness h({server_->server()});
  auto r = h.mx("empty.test");
  EXPECT_EQ(r.what, outcome::not_found) << r.detail;
  EXPECT_EQ(r.detail, "empty.test: no MX and no A/AAAA records");
}

TEST_F(resolver_suite, null_mx_is_permanent) {
  harness h({server_->server()});
  auto r = h.mx("nullmx.test");
  EXPECT_EQ(r.what, outcome::null_mx);
  EXPECT_TRUE(dns::permanent(r.what));
  EXPECT_EQ(r.detail, "nullmx.test: null MX (RFC 7505): the domain accepts no mail");
  EXPECT_TRUE(r.hosts.empty());
}

TEST_F(resolver_suite, null_mx_among_other_mx_records_is_ignored) {
  harness h({server_->server()});
  auto r = h.mx("mixed.test");
  ASSERT_EQ(r.what, outcome::ok) << r.detail;
  EXPECT_EQ(names(r), std::vector<std::string>{"mx2.example.test"});
}

TEST_F(resolver_suite, nxdomain_is_not_found) {
  harness h({server_->server()});
  auto r = h.mx("nosuchdomain.test");
  EXPECT_EQ(r.what, outcome::not_found);
  EXPECT_EQ(r.detail, "nosuchdomain.test: no such domain (NXDOMAIN)");
}

TEST_F(resolver_suite, mx_hosts_without_addresses_are_not_found) {
  harness h({server_->server()});
  auto r = h.mx("noaddr.test");
  EXPECT_EQ(r.what, outcome::not_found) << r.detail;
}

TEST_F(resolver_suite, host_with_temporary_failure_is_kept_without_addresses) {
  harness h({server_->server()});
  auto r = h.mx("partial.test");
  ASSERT_EQ(r.what, outcome::ok) << r.detail;
  ASSERT_EQ(names(r), (std::vector<std::string>{"mx1.example.test", "mx.refused.org"}));
  EXPECT_TRUE(r.hosts[1].addresses.empty());
  EXPECT_NE(r.detail.find("REFUSED"), std::string::npos) << r.detail;
}

TEST_F(resolver_suite, only_temporarily_failing_hosts_is_retry) {
  harness h({server_->server()});
  auto r = h.mx("refusedhost.test");
  EXPECT_EQ(r.what, outcome::retry) << r.detail;
}

TEST_F(resolver_suite, mx_pointing_at_ip_address_is_ignored) {
  harness h({server_->server()});
  auto only = h.mx("literal.test");
  EXPECT_EQ(only.what, outcome::not_found) << only.detail;
  EXPECT_NE(only.detail.find("192.0.2.1 is an IP address"), std::string::npos) << only.detail;
  auto mix = h.mx("literalmix.test");
  ASSERT_EQ(mix.what, outcome::ok) << mix.detail;
  EXPECT_EQ(names(mix), std::vector<std::string>{"mx2.example.test"});
}

TEST_F(resolver_suite, large_answer_over_tcp_is_capped_at_twenty_hosts) {
  harness h({server_->server()});
  auto r = h.mx("big.test");
  ASSERT_EQ(r.what, outcome::ok) << r.detail;
  ASSERT_EQ(r.hosts.size(), 20u);
  for (std::size_t i = 0; i < r.hosts.size(); ++i) {
    EXPECT_EQ(r.hosts[i].preference, i);
    EXPECT_EQ(r.hosts[i].addresses, std::vector<std::string>{"127.0.2." + std::to_string(i + 1)});
  }
}

TEST_F(resolver_suite, refused_is_retry) {
  harness h({server_->server()});
  auto r = h.mx("example.org");  // outside dnsmasq's local zone, no upstream
  EXPECT_EQ(r.what, outcome::retry);
  EXPECT_FALSE(dns::permanent(r.what));
  EXPECT_EQ(r.detail, "MX lookup for example.org: REFUSED");
}

TEST(resolver_failures, servfail_is_retry) {
  fake_dns_server servfail(fake_dns_server::servfail);
  harness h({servfail.server()});
  auto r = h.mx("example.org");
  EXPECT_EQ(r.what, outcome::retry);
  EXPECT_EQ(r.detail, "MX lookup for example.org: SERVFAIL");
  auto host = h.host("mail.example.org");
  EXPECT_EQ(host.what, outcome::retry);
  EXPECT_NE(host.detail.find("SERVFAIL"), std::string::npos) << host.detail;
}

TEST(resolver_failures, every_server_failing_is_retry) {
  fake_dns_server servfail(fake_dns_server::servfail);
  fake_dns_server refused(fake_dns_server::refused);
  harness h({servfail.server(), refused.server()}, 500ms, 2);
  auto r = h.mx("example.org");
  EXPECT_EQ(r.what, outcome::retry) << r.detail;
  EXPECT_GT(servfail.queries(), 0);
  EXPECT_GT(refused.queries(), 0);
}

TEST_F(resolver_suite, next_server_is_asked_when_one_fails) {
  fake_dns_server servfail(fake_dns_server::servfail);
  harness h({servfail.server(), server_->server()}, 500ms, 2);
  auto r = h.mx("example.test");
  ASSERT_EQ(r.what, outcome::ok) << r.detail;
  EXPECT_EQ(r.hosts.size(), 3u);
}

TEST(resolver_failures, timeout_is_retry) {
  fake_dns_server silent(fake_dns_server::silent);
  harness h({silent.server()}, 100ms, 1);
  auto start = std::chrono::steady_clock::now();
  auto r = h.mx("example.org");
  EXPECT_EQ(r.what, outcome::retry);
  EXPECT_EQ(r.detail, "MX lookup for example.org: timeout");
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);
}

TEST(resolver_failures, connection_refused_is_retry) {
  harness h({"127.0.0.1:" + std::to_string(relayd_test::closed_udp_port())}, 3000ms, 1);
  auto start = std::chrono::steady_clock::now();
  auto r = h.mx("example.org");
  EXPECT_EQ(r.what, outcome::retry) << r.detail;
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2s) << r.detail;
}

TEST(resolver_literals, domain_literals_need_no_dns) {
  fake_dns_server silent(fake_dns_server::silent);  // any query would time out
  harness h({silent.server()}, 5000ms, 1);
  auto start = std::chrono::steady_clock::now();
  auto v4 = h.mx("[192.0.2.1]");
  ASSERT_EQ(v4.what, outcome::ok) << v4.detail;
  ASSERT_EQ(v4.hosts.size(), 1u);
  EXPECT_EQ(v4.hosts[0].addresses, std::vector<std::string>{"192.0.2.1"});
  auto v6 = h.mx("[IPv6:2001:DB8::1]");
  ASSERT_EQ(v6.what, outcome::ok) << v6.detail;
  EXPECT_EQ(v6.hosts[0].addresses, std::vector<std::string>{"2001:db8::1"});
  EXPECT_EQ(h.mx("[300.0.0.1]").what, outcome::fail);
  EXPECT_EQ(h.mx("[2001:db8::1]").what, outcome::fail);  // needs the IPv6: tag
  EXPECT_EQ(h.mx("exa mple.org").what, outcome::fail);
  EXPECT_EQ(h.mx("192.0.2.1").what, outcome::fail);  // an address is not a mail domain
  EXPECT_EQ(h.mx("").what, outcome::fail);
  for (const char* ip : {"127.0.0.5", "[127.0.0.5]", "::1", "[::1]", "[IPv6:::1]"}) {
    auto r = h.host(ip);
    ASSERT_EQ(r.what, outcome::ok) << ip;
    ASSERT_EQ(r.hosts.size(), 1u);
    EXPECT_EQ(r.hosts[0].addresses.size(), 1u);
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);
}

TEST_F(resolver_suite, resolve_host) {
  harness h({server_->server()});
  auto r = h.host("MX1.example.test.");
  ASSERT_EQ(r.what, outcome::ok) << r.detail;
  ASSERT_EQ(r.hosts.size(), 1u);
  EXPECT_EQ(r.hosts[0].name, "mx1.example.test");
  EXPECT_EQ(r.hosts[0].preference, 0);
  EXPECT_EQ(r.hosts[0].addresses, (std::vector<std::string>{"::2", "127.0.0.2"}));
  auto bracketed = h.host("[mx2.example.test]");
  ASSERT_EQ(bracketed.what, outcome::ok) << bracketed.detail;
  EXPECT_EQ(bracketed.hosts[0].addresses, std::vector<std::string>{"127.0.0.3"});
  auto nx = h.host("nohost.test");
  EXPECT_EQ(nx.what, outcome::not_found);
  EXPECT_EQ(nx.detail, "nohost.test: no such host (NXDOMAIN)");
  EXPECT_EQ(h.host("example.test").what, outcome::not_found);  // MX only, no A/AAAA
  EXPECT_EQ(h.host("other.org").what, outcome::retry);
  EXPECT_EQ(h.host("bad host").what, outcome::fail);
}

TEST_F(resolver_suite, many_concurrent_lookups_complete) {
  harness h({server_->server()});
  int ok = 0, total = 0;
  for (int i = 0; i < 100; ++i) {
    h.resolver->resolve_mx("d" + std::to_string(i) + ".test", [&](mx_result r) {
      ++total;
      if (r.what == outcome::ok && r.hosts.size() == 1 && r.hosts[0].addresses.size() == 2) ++ok;
    });
  }
  for (int i = 0; i < 20; ++i)  // identical lookups share one query
    h.resolver->resolve_mx("example.test", [&](mx_result r) {
      ++total;
      if (r.what == outcome::ok && r.hosts.size() == 3) ++ok;
    });
  h.run();
  EXPECT_EQ(total, 120);
  EXPECT_EQ(ok, 120);
}

TEST(resolver_cache, answers_from_cache_until_the_ttl_passes) {
  dnsmasq server(test_records(), 60);
  harness h({server.server()}, 3000ms, 1);
  ASSERT_EQ(h.mx("example.test").what, outcome::ok);
  ASSERT_EQ(h.mx("nosuchdomain.test").what, outcome::not_found);
  ASSERT_EQ(h.host("mx2.example.test").what, outcome::ok);
  server.stop();
  h.clock += 59s;
  EXPECT_EQ(h.mx("example.test").what, outcome::ok);
  EXPECT_EQ(h.host("mx2.example.test").what, outcome::ok);
  EXPECT_EQ(h.mx("nosuchdomain.test").what, outcome::not_found);
  h.clock += 2s;  // past the 60 s TTL
  EXPECT_EQ(h.mx("example.test").what, outcome::retry);
  EXPECT_EQ(h.host("mx2.example.test").what, outcome::retry);
  EXPECT_EQ(h.mx("nosuchdomain.test").what, outcome::not_found);  // no SOA: 5 minutes
  h.clock += 240s;
  EXPECT_EQ(h.mx("nosuchdomain.test").what, outcome::retry);
}

TEST(resolver_cache, retry_is_not_cached) {
  dnsmasq server(test_records());
  harness h({server.server()}, 3000ms, 1);
  server.stop();
  EXPECT_EQ(h.mx("example.test").what, outcome::retry);
  server.restart();
  EXPECT_EQ(h.mx("example.test").what, outcome::ok);
}

TEST(resolver_cache, is_bounded) {
  dnsmasq server(test_records());
  harness h({server.server()}, 3000ms, 1, 1);
  ASSERT_EQ(h.mx("d1.test").what, outcome::ok);
  ASSERT_EQ(h.mx("d2.test").what, outcome::ok);
  server.stop();
  EXPECT_EQ(h.mx("d2.test").what, outcome::ok);
  EXPECT_EQ(h.mx("d1.test").what, outcome::retry);  // evicted
}

TEST_F(resolver_suite, cancel_completes_everything_with_retry) {
  harness h({server_->server()}, 5000ms, 1, 0);
  std::vector<mx_result> got;
  for (const char* d : {"example.test", "implicit.test", "tie.test"})
    h.resolver->resolve_mx(d, [&](mx_result r) { got.push_back(std::move(r)); });
  h.resolver->resolve_host("mx1.example.test", [&](mx_result r) { got.push_back(std::move(r)); });
  h.resolver->cancel();  // before any reply is read
  h.run();
  ASSERT_EQ(got.size(), 4u);
  for (const auto& r : got) EXPECT_EQ(r.what, outcome::retry) << r.detail;
  EXPECT_EQ(h.mx("example.test").what, outcome::ok);  // still usable
}

TEST_F(resolver_suite, destruction_drops_outstanding_callbacks) {
  harness h({server_->server()});
  ASSERT_EQ(h.mx("example.test").what, outcome::ok);  // cached: completion posted, not run
  int calls = 0;
  h.resolver->resolve_mx("example.test", [&](mx_result) { ++calls; });
  h.resolver->resolve_mx("tie.test", [&](mx_result) { ++calls; });
  h.resolver->resolve_host("mx2.example.test", [&](mx_result) { ++calls; });
  h.resolver.reset();
  h.run();
  EXPECT_EQ(calls, 0);
}

TEST(resolver_options, servers_are_checked_at_construction) {
  boost::asio::io_context io;
  dns::resolver_options ok;
  ok.servers = {"127.0.0.1:5353", "[::1]:53", "::1", "192.0.2.53"};
  EXPECT_NO_THROW((dns::mx_resolver{io, ok}));
  dns::resolver_options bad;
  bad.servers = {"127.0.0.1:5353", "dns.example.org"};
  try {
    dns::mx_resolver r(io, bad);
    FAIL() << "expected a start-up error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("dns.example.org"), std::string::npos) << e.what();
  }
  dns::resolver_options defaults;  // /etc/resolv.conf (or c-ares' default when absent)
  EXPECT_NO_THROW((dns::mx_resolver{io, defaults}));
}

TEST(resolver_outcome, names) {
  EXPECT_EQ(dns::to_string(outcome::ok), "ok");
  EXPECT_EQ(dns::to_string(outcome::retry), "retry");
  EXPECT_EQ(dns::to_string(outcome::fail), "fail");
  EXPECT_EQ(dns::to_string(outcome::not_found), "not_found");
  EXPECT_EQ(dns::to_string(outcome::null_mx), "null_mx");
}

// TXT (DKIM key records): strings of one record joined; NXDOMAIN and a name
// with other records but no TXT are not_found; a bad name fails.
// DANE: TLSA through the AD-asking query path (ares_send), whose replies are
// mapped to the same statuses as ares_query's; and MX lookups on that path.
TEST_F(resolver_suite, tlsa_records_and_queries_asking_for_the_ad_bit) {
  harness h({server_->server()});
  auto tlsa = [&](const std::string& name) {
    std::optional<dns::tlsa_result> got;
    h.resolver->resolve_tlsa(name, [&](dns::tlsa_result r) { got = std::move(r); });
    h.run();
    if (!got) throw std::runtime_error("no completion for " + name);
    return *got;
  };
  auto ok = tlsa("_25._tcp.mx1.example.test");
  ASSERT_EQ(ok.what, outcome::ok) << ok.detail;
  ASSERT_EQ(ok.records.size(), 1u);
  EXPECT_EQ(dns::to_string(ok.records[0]), "3 1 1 " + std::string(64, 'a'));
  EXPECT_TRUE(dns::usable(ok.records[0]));
  EXPECT_FALSE(ok.secure);  // dnsmasq does not validate: no AD bit
  auto short_one = tlsa("_25._tcp.mx2.example.test");
  EXPECT_EQ(short_one.what, outcome::ok) << short_one.detail;
  EXPECT_TRUE(short_one.records.empty());
  EXPECT_EQ(short_one.malformed, 1u);
  auto nodata = tlsa("_25._tcp.mx3.example.test");
  EXPECT_EQ(nodata.what, outcome::not_found) << nodata.detail;
  EXPECT_EQ(tlsa("_25._tcp.nowhere.example.test").what, outcome::not_found);
  EXPECT_EQ(tlsa("bad..name").what, outcome::fail);

  fake_dns_server servfail(fake_dns_server::servfail);
  harness bad({servfail.server()});
  std::optional<dns::tlsa_result> failed;
  bad.resolver->resolve_tlsa("_25._tcp.mx.example.org",
                             [&](dns::tlsa_result r) { failed = std::move(r); });
  bad.run();
  ASSERT_TRUE(failed);
  EXPECT_EQ(failed->what, outcome::retry);
  EXPECT_EQ(failed->detail, "SERVFAIL looking up TLSA for _25._tcp.mx.example.org");

  dns::resolver_options o;
  o.servers = {server_->server()};
  o.dnssec = true;
  boost::asio::io_context io;
  dns::mx_resolver dnssec(io, o);
  std::vector<mx_result> got;
  for (const char* d : {"example.test", "nxdomain.test", "implicit.test"})
    dnssec.resolve_mx(d, [&](mx_result r) { got.push_back(std::move(r)); });
  io.run_for(60s);
  ASSERT_EQ(got.size(), 3u);
  std::sort(got.begin(), got.end(),
            [](const mx_result& a, const mx_result& b) { return a.hosts.size() > b.hosts.size(); });
  EXPECT_EQ(got[0].what, outcome::ok) << got[0].detail;
  EXPECT_EQ(got[0].hosts.size(), 3u);
  EXPECT_FALSE(got[0].secure);
  EXPECT_EQ(got[1].what, outcome::ok) << got[1].detail;  // implicit MX
  EXPECT_EQ(got[2].what, outcome::not_found) << got[2].detail;
}

TEST_F(resolver_suite, txt_records) {
  harness h({server_->server()});
  auto txt = [&](const std::string& name) {
    std::optional<dns::txt_result> got;
    h.resolver->resolve_txt(name, [&](dns::txt_result r) { got = std::move(r); });
    h.run();
    if (!got) throw std::runtime_error("no completion for " + name);
    return *got;
  };
  auto ok = txt("S1._domainkey.key.test.");
  ASSERT_EQ(ok.what, outcome::ok) << ok.detail;
  EXPECT_EQ(ok.records, std::vector<std::string>{"v=DKIM1; k=rsa; p=QUJD"});
  auto none = txt("s2._domainkey.key.test");
  EXPECT_EQ(none.what, outcome::not_found) << none.detail;
  EXPECT_EQ(none.detail, "NXDOMAIN looking up TXT for s2._domainkey.key.test");
  auto nodata = txt("implicit.test");
  EXPECT_EQ(nodata.what, outcome::not_found) << nodata.detail;
  EXPECT_EQ(txt("bad..name").what, outcome::fail);
}
