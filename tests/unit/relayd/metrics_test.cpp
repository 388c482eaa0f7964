// The metrics registry and the /metrics endpoint: the text exposition format
// (HELP/TYPE, labels, escaping, cumulative histogram buckets), deferral
// classification, the queue census, the request router, and the real HTTP
// server on 127.0.0.1:0 driven by a plain POSIX socket (200/404/405, garbage,
// oversized heads, the connection limit).
#include "relayd/metrics.hpp"

#include "relayd/delivery_outcome.hpp"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <chrono>
#include <cmath>
#include <map>
#include <regex>
#include <sstream>
#include <thread>
#include <vector>

#include "relayd/metrics_http.hpp"

namespace relayd {
namespace {

// "name{labels}" -> value, for every sample line; fails on a malformed line.
std::map<std::string, std::string> samples(const std::string& text) {
  static const std::regex line_re(
      R"(^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\\n]|\\[\\"n])*"(,[a-zA-Z_][a-zA-Z0-9_]*="([^"\\\n]|\\[\\"n])*")*)?\})? ([^ ]+)$)");
  std::map<std::string, std::string> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.starts_with("# HELP ") || line.starts_with("# TYPE ")) continue;
    std::smatch m;
    EXPECT_TRUE(std::regex_match(line, m, line_re)) << "bad sample line: " << line;
    if (m.empty()) continue;
    out[line.substr(0, line.rfind(' '))] = m[m.size() - 1];
  }
  return out;
}

std::string type_of(const std::string& text, const std::string& name) {
  auto pos = text.find("# TYPE " + name + " ");
  if (pos == std::string::npos) return "";
  auto start = pos + 7 + name.size() + 1;
  return text.substr(start, text.find('\n', start) - start);
}

TEST(metrics, fresh_registry_renders_every_family_at_zero) {
  metrics m(1700000000);
  const auto text = m.render();
  ASSERT_TRUE(text.ends_with("\n"));
  auto s = samples(text);
  EXPECT_EQ(s["relayd_messages_received_total"], "0");
  EXPECT_EQ(s["relayd_delivery_attempts_total{result=\"sent\"}"], "0");
  EXPECT_EQ(s["relayd_delivery_attempts_total{result=\"deferred\"}"], "0");
  EXPECT_EQ(s["relayd_delivery_attempts_total{result=\"failed\"}"], "0");
  for (auto c : {"4xx", "421_throttle", "connect", "dns", "tls", "timeout", "local"})
    EXPECT_EQ(s[fmt::format("relayd_deferrals_total{{class=\"{}\"}}", c)], "0") << c;
  for (auto r : metrics::known_dead_reasons)
    EXPECT_EQ(s[fmt::format("relayd_dead_letters_total{{reason=\"{}\"}}", r)], "0") << r;
  for (auto st : {"active", "deferred", "held", "dead"})
    EXPECT_EQ(s[fmt::format("relayd_queue_messages{{state=\"{}\"}}", st)], "0") << st;
  EXPECT_EQ(s["relayd_bounces_total"], "0");
  EXPECT_EQ(s["relayd_queue_oldest_age_seconds"], "0");
  EXPECT_EQ(s["relayd_spool_bytes"], "0");
  EXPECT_EQ(s["relayd_spool_max_bytes"], "0");
  EXPECT_EQ(s["relayd_in_flight_messages"], "0");
  EXPECT_EQ(s["relayd_start_time_seconds"], "1700000000");
  EXPECT_EQ(s["relayd_delivery_duration_seconds_bucket{le=\"+Inf\"}"], "0");
  EXPECT_EQ(s["relayd_delivery_duration_seconds_count"], "0");
  EXPECT_EQ(s["relayd_delivery_duration_seconds_sum"], "0");

  EXPECT_EQ(type_of(text, "relayd_messages_received_total"), "counter");
  EXPECT_EQ(type_of(text, "relayd_delivery_attempts_total"), "counter");
  EXPECT_EQ(type_of(text, "relayd_deferrals_total"), "counter");
  EXPECT_EQ(type_of(text, "relayd_dead_letters_total"), "counter");
  EXPECT_EQ(type_of(text, "relayd_smtp_rejections_total"), "counter");
  EXPECT_EQ(type_of(text, "relayd_delivery_duration_seconds"), "histogram");
  EXPECT_EQ(type_of(text, "relayd_queue_messages"), "gauge");
  EXPECT_EQ(type_of(text, "relayd_smtp_connections"), "gauge");
  EXPECT_EQ(type_of(text, "relayd_spool_max_bytes"), "gauge");

  // Every TYPE has a HELP right before it, and no family appears twice.
  std::istringstream in(text);
  std::string line, last;
  std::map<std::string, int> seen;
  while (std::getline(in, line)) {
    if (line.starts_with("# TYPE ")) {
      auto name = line.substr(7, line.find(' ', 7) - 7);
      EXPECT_TRUE(last.starts_with("# HELP " + name + " ")) << line;
      EXPECT_EQ(++seen[name], 1) << name;
    }
    last = line;
  }
}

TEST(metrics, counters_and_labels) {
  metrics m;
  m.message_received();
  m.message_received();
  m.delivery_attempt(attempt_result::sent);
  m.delivery_attempt(attempt_result::deferred);
  m.delivery_attempt(attempt_result::deferred);
  m.deferral(deferral_class::throttle_421);
  m.deferral(deferral_class::reply_4xx);
  m.dead_letter("expired");
  m.dead_letter("Bounce Failed!");  // reduced to [a-z0-9_]
  m.dead_letter("");
  m.bounce();
  m.delay_warning();
  m.smtp_rejection(550);
  m.smtp_rejection(550);
  m.smtp_rejection(99);
  m.set_in_flight(7);
  m.add_listener("127.0.0.1:25");
  m.connection_opened("[::1]:25");
  m.connection_opened("[::1]:25");
  m.connection_closed("[::1]:25");
  m.connection_closed("127.0.0.1:25");  // never below 0
  m.set_queue_gauges(3, 2, 1, 4, 12.5, 4096, 1 << 20);
  auto s = samples(m.render());
  EXPECT_EQ(s["relayd_messages_received_total"], "2");
  EXPECT_EQ(s["relayd_delivery_attempts_total{result=\"sent\"}"], "1");
  EXPECT_EQ(s["relayd_delivery_attempts_total{result=\"deferred\"}"], "2");
  EXPECT_EQ(s["relayd_deferrals_total{class=\"421_throttle\"}"], "1");
  EXPECT_EQ(s["relayd_deferrals_total{class=\"4xx\"}"], "1");
  EXPECT_EQ(s["relayd_dead_letters_total{reason=\"expired\"}"], "1");
  EXPECT_EQ(s["relayd_dead_letters_total{reason=\"bounce_failed_\"}"], "1");
  EXPECT_EQ(s["relayd_dead_letters_total{reason=\"unknown\"}"], "1");
  EXPECT_EQ(s["relayd_bounces_total"], "1");
  EXPECT_EQ(s["relayd_delay_warnings_total"], "1");
  EXPECT_EQ(s["relayd_smtp_rejections_total{code=\"550\"}"], "2");
  EXPECT_EQ(s["relayd_smtp_rejections_total{code=\"other\"}"], "1");
  EXPECT_EQ(s["relayd_in_flight_messages"], "7");
  EXPECT_EQ(s["relayd_smtp_connections{listener=\"127.0.0.1:25\"}"], "0");
  EXPECT_EQ(s["relayd_smtp_connections{listener=\"[::1]:25\"}"], "1");
  EXPECT_EQ(s["relayd_queue_messages{state=\"active\"}"], "3");
  EXPECT_EQ(s["relayd_queue_messages{state=\"deferred\"}"], "2");
  EXPECT_EQ(s["relayd_queue_messages{state=\"held\"}"], "1");
  EXPECT_EQ(s["relayd_queue_messages{state=\"dead\"}"], "4");
  EXPECT_EQ(s["relayd_queue_oldest_age_seconds"], "12.5");
  EXPECT_EQ(s["relayd_spool_bytes"], "4096");
  EXPECT_EQ(s["relayd_spool_max_bytes"], "1048576");
}

TEST(metrics, histogram_buckets_are_cumulative) {
  metrics m;
  for (double v : {0.005, 0.01, 0.3, 0.3, 2.0, 299.0, 1000.0, -1.0}) m.observe_delivery_duration(v);
  const auto text = m.render();
  auto s = samples(text);
  auto bucket = [&](const char* le) {
    return s[fmt::format("relayd_delivery_duration_seconds_bucket{{le=\"{}\"}}", le)];
  };
  EXPECT_EQ(bucket("0.01"), "3");  // 0.005, 0.01 (le is inclusive), -1 counted as 0
  EXPECT_EQ(bucket("0.025"), "3");
  EXPECT_EQ(bucket("0.25"), "3");
  EXPECT_EQ(bucket("0.5"), "5");
  EXPECT_EQ(bucket("1"), "5");
  EXPECT_EQ(bucket("2.5"), "6");
  EXPECT_EQ(bucket("120"), "6");
  EXPECT_EQ(bucket("300"), "7");
  EXPECT_EQ(bucket("+Inf"), "8");
  EXPECT_EQ(s["relayd_delivery_duration_seconds_count"], "8");
  EXPECT_DOUBLE_EQ(std::stod(s["relayd_delivery_duration_seconds_sum"]),
                   0.005 + 0.01 + 0.3 + 0.3 + 2.0 + 299.0 + 1000.0);
  // Buckets come in increasing le order, +Inf last, then _sum and _count.
  auto p_small = text.find("le=\"0.01\"");
  auto p_big = text.find("le=\"300\"");
  auto p_inf = text.find("le=\"+Inf\"");
  auto p_sum = text.find("relayd_delivery_duration_seconds_sum ");
  EXPECT_LT(p_small, p_big);
  EXPECT_LT(p_big, p_inf);
  EXPECT_LT(p_inf, p_sum);
  // NaN is ignored.
  m.observe_delivery_duration(std::nan(""));
  EXPECT_EQ(samples(m.render())["relayd_delivery_duration_seconds_count"], "8");
}

TEST(metrics, escaping) {
  EXPECT_EQ(metrics::escape_label_value(R"(a\b"c)"
                                        "\nd"),
            R"(a\\b\"c\nd)");
  EXPECT_EQ(metrics::escape_help("x\\y\nz \"q\""), "x\\\\y\\nz \"q\"");
  metrics m;
  m.add_listener("we\"ird\\\nname");
  auto text = m.render();
  EXPECT_NE(text.find(R"(relayd_smtp_connections{listener="we\"ird\\\nname"} 0)"),
            std::string::npos)
      << text;
  samples(text);  // every line still parses
}

TEST(metrics, value_format) {
  EXPECT_EQ(metrics::format_value(0), "0");
  EXPECT_EQ(metrics::format_value(3), "3");
  EXPECT_EQ(metrics::format_value(-2), "-2");
  EXPECT_EQ(metrics::format_value(0.025), "0.025");
  EXPECT_EQ(metrics::format_value(12.5), "12.5");
  EXPECT_EQ(metrics::format_value(1e20), "1e+20");
  EXPECT_EQ(metrics::format_value(std::numeric_limits<double>::infinity()), "+Inf");
  EXPECT_EQ(metrics::format_value(-std::numeric_limits<double>::infinity()), "-Inf");
  EXPECT_EQ(metrics::format_value(std::nan("")), "NaN");
}

TEST(metrics, dynamic_labels_are_bounded) {
  metrics m;
  for (int i = 0; i < 500; ++i) m.dead_letter("reason_" + std::to_string(i));
  m.dead_letter(std::string(200, 'x'));
  auto s = samples(m.render());
  std::size_t dead_series = 0;
  for (const auto& [k, v] : s) dead_series += k.starts_with("relayd_dead_letters_total{");
  EXPECT_LE(dead_series, 65u);
  EXPECT_NE(s["relayd_dead_letters_total{reason=\"other\"}"], "");
  for (const auto& [k, v] : s) EXPECT_LT(k.size(), 120u) << k;
}

TEST(metrics, concurrent_updates_are_counted) {
  metrics m;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < 10000; ++i) {
        m.message_received();
        m.dead_letter("rejected");
        m.observe_delivery_duration(0.1);
        if (i % 1000 == 0) m.render();
      }
    });
  for (auto& t : threads) t.join();
  auto s = samples(m.render());
  EXPECT_EQ(s["relayd_messages_received_total"], "40000");
  EXPECT_EQ(s["relayd_dead_letters_total{reason=\"rejected\"}"], "40000");
  EXPECT_EQ(s["relayd_delivery_duration_seconds_count"], "40000");
}

// A real outcome: the mapping of a client result for one RCPT reply.
recipient_outcome rcpt_reply(int code, std::string enhanced, std::string text) {
  smtp::recipient_result r;
  r.status = code >= 500 ? smtp::delivery_status::permanent : smtp::delivery_status::temporary;
  r.response = smtp::reply{code, std::move(enhanced), std::move(text)};
  r.in_reply_to = smtp::client_phase::rcpt;
  return outcome_of(r, "mx[192.0.2.1]:25");
}

// A real set-up failure: the mapping of a connection_failure.
recipient_outcome set_up_failure(smtp::failure_cause cause, smtp::client_phase phase, int code,
                                 std::string enhanced, bool from_server = true) {
  smtp::connection_failure f;
  f.cause = cause;
  f.phase = phase;
  f.response = smtp::reply{code, std::move(enhanced), "refused"};
  f.from_server = from_server;
  return outcome_of(f, "mx[192.0.2.1]:25");
}

TEST(metrics, deferral_class_from_the_outcome) {
  using smtp::client_phase;
  using smtp::failure_cause;
  // Outcomes as the delivery agent makes them (delivery_outcome.hpp).
  EXPECT_EQ(classify_deferral(rcpt_reply(451, "4.3.0", "later")), deferral_class::reply_4xx);
  EXPECT_EQ(classify_deferral(rcpt_reply(421, "4.7.0", "slow down")),
            deferral_class::throttle_421);
  EXPECT_EQ(classify_deferral(rcpt_reply(421, "", "closing")), deferral_class::throttle_421);
  EXPECT_EQ(classify_deferral(rcpt_reply(450, "4.7.1", "greylisted")),
            deferral_class::throttle_421);
  EXPECT_EQ(classify_deferral(set_up_failure(failure_cause::tls_unavailable,
                                             client_phase::starttls, 454, "4.7.0")),
            deferral_class::tls);
  EXPECT_EQ(classify_deferral(
                set_up_failure(failure_cause::auth_rejected, client_phase::auth, 535, "5.7.8")),
            deferral_class::local);
  EXPECT_EQ(classify_deferral(
                set_up_failure(failure_cause::auth_temporary, client_phase::auth, 454, "4.7.0")),
            deferral_class::local);
  dns::mx_result servfail;
  servfail.what = dns::outcome::retry;
  servfail.detail = "SERVFAIL looking up MX for example.org";
  EXPECT_EQ(classify_deferral(dns_failed(servfail, "")), deferral_class::dns);
  EXPECT_EQ(classify_deferral(tls_failed("mx[192.0.2.1]:25", "handshake failure")),
            deferral_class::tls);
  EXPECT_EQ(classify_deferral(connect_failed("mx[192.0.2.1]:25", true, "")),
            deferral_class::timeout);
  EXPECT_EQ(classify_deferral(set_up_failure(failure_cause::connection_lost, client_phase::ehlo,
                                             451, "4.4.2", false)),
            deferral_class::connect);
  EXPECT_EQ(classify_deferral(outcome_of(smtp::connection_failure{
                                             .cause = failure_cause::connection_lost,
                                             .response = smtp::reply{451, "4.4.2", "timeout"},
                                             .from_server = false},
                                         "mx[192.0.2.1]:25", queue::outcome_cause::timeout)),
            deferral_class::timeout);
  EXPECT_EQ(classify_deferral(connect_failed("mx[192.0.2.1]:25", false, "Connection refused")),
            deferral_class::connect);
  EXPECT_EQ(classify_deferral(no_host_answered()), deferral_class::connect);
  EXPECT_EQ(classify_deferral(set_up_failure(failure_cause::greeting_refused,
                                             client_phase::greeting, 554, "")),
            deferral_class::reply_4xx);
  EXPECT_EQ(classify_deferral(set_up_failure(failure_cause::protocol_error, client_phase::mail,
                                             451, "4.5.0", false)),
            deferral_class::local);
  // The words of the text never count: a host named timeout.example that refuses
  // the connection is "connect", a TLS-named host that times out is "timeout".
  EXPECT_EQ(classify_deferral(connect_failed("timeout.example[192.0.2.1]:25", false,
                                             "Connection refused")),
            deferral_class::connect);
  EXPECT_EQ(classify_deferral(connect_failed("tls.example[192.0.2.1]:25", true, "")),
            deferral_class::timeout);
  auto auth_words = rcpt_reply(451, "4.3.0", "see (in reply to AUTH) TLS timeout");
  EXPECT_EQ(classify_deferral(auth_words), deferral_class::reply_4xx);
  // A suspended deferral keeps the class of the reply that started the backoff.
  auto suspended = rcpt_reply(421, "4.7.0", "slow down");
  suspended.description = "delivery temporarily suspended: " + suspended.description;
  suspended.counts_as_attempt = false;
  EXPECT_EQ(classify_deferral(suspended), deferral_class::throttle_421);
  EXPECT_EQ(to_string(deferral_class::throttle_421), "421_throttle");
  EXPECT_EQ(to_string(deferral_class::reply_4xx), "4xx");
  EXPECT_EQ(to_string(attempt_result::sent), "sent");
}

TEST(metrics, queue_census) {
  constexpr std::int64_t sec = 1'000'000;
  constexpr std::int64_t now = 1'700'000'000 * sec;
  queue::envelope_record fresh{.id = "A", .arrival_us = now - 10 * sec};
  fresh.recipients.push_back({.address = "a@x"});
  queue::envelope_record retried{.id = "B", .arrival_us = now - 100 * sec};
  retried.recipients.push_back({.address = "b@x", .state = queue::rcpt_state::delivered});
  retried.recipients.push_back({.address = "c@x", .attempts = 2});
  queue::envelope_record held{.id = "C", .arrival_us = now - 9000 * sec, .flags = queue::flag_held};
  held.recipients.push_back({.address = "d@x", .attempts = 1});

  EXPECT_EQ(state_of(fresh), queue_state::active);
  EXPECT_EQ(state_of(retried), queue_state::deferred);
  EXPECT_EQ(state_of(held), queue_state::held);
  queue_census c(now);
  for (const auto* r : {&fresh, &retried, &held}) c.add(*r);
  EXPECT_EQ(c.gauges.active, 1u);
  EXPECT_EQ(c.gauges.deferred, 1u);
  EXPECT_EQ(c.gauges.held, 1u);
  EXPECT_DOUBLE_EQ(c.gauges.oldest_age_seconds, 100.0);  // held ones do not count
}

TEST(metrics, effective_spool_max) {
  const std::string dir = ::testing::TempDir();
  const auto unlimited = effective_spool_max(dir, 4096, 0, 0);
  EXPECT_GT(unlimited, 4096u);
  EXPECT_EQ(effective_spool_max(dir, 4096, 8192, 0), 8192u);  // max_spool_size wins
  // min_free_disk larger than the disk: only what is already used.
  EXPECT_EQ(effective_spool_max(dir, 4096, 0, ~0ull), 4096u);
  EXPECT_EQ(effective_spool_max("/nonexistent/relayd-spool", 4096, 0, 0), 4096u);
}

TEST(metrics_http, routing) {
  EXPECT_EQ(route_metrics_request("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").status, 200);
  EXPECT_FALSE(route_metrics_request("GET /metrics HTTP/1.1\r\n\r\n").head_only);
  EXPECT_EQ(route_metrics_request("GET /metrics?x=1 HTTP/1.0\n\n").status, 200);
  auto head = route_metrics_request("HEAD /metrics HTTP/1.1\r\n\r\n");
  EXPECT_EQ(head.status, 200);
  EXPECT_TRUE(head.head_only);
  EXPECT_EQ(route_metrics_request("GET / HTTP/1.1\r\n\r\n").status, 404);
  EXPECT_EQ(route_metrics_request("GET /metricsx HTTP/1.1\r\n\r\n").status, 404);
  EXPECT_EQ(route_metrics_request("GET /metrics/ HTTP/1.1\r\n\r\n").status, 404);
  EXPECT_EQ(route_metrics_request("POST /metrics HTTP/1.1\r\n\r\n").status, 405);
  EXPECT_EQ(route_metrics_request("DELETE /metrics HTTP/1.1\r\n\r\n").status, 405);
  EXPECT_EQ(route_metrics_request("OPTIONS * HTTP/1.1\r\n\r\n").status, 405);
  EXPECT_EQ(route_metrics_request("GET /metrics HTTP/2.0\r\n\r\n").status, 505);
  EXPECT_EQ(route_metrics_request("GET /metrics HTTP/1.1 extra\r\n\r\n").status, 400);
  EXPECT_EQ(route_metrics_request("GET  /metrics HTTP/1.1\r\n\r\n").status, 400);
  EXPECT_EQ(route_metrics_request("GET /metrics\r\n\r\n").status, 400);
  EXPECT_EQ(route_metrics_request("GET /metrics HTTX/1.1\r\n\r\n").status, 400);
  EXPECT_EQ(route_metrics_request("G(T /metrics HTTP/1.1\r\n\r\n").status, 400);
  EXPECT_EQ(route_metrics_request("GET metrics HTTP/1.1\r\n\r\n").status, 400);
  EXPECT_EQ(route_metrics_request("GET http://h/metrics HTTP/1.1\r\n\r\n").status, 400);
  EXPECT_EQ(route_metrics_request(std::string_view("GET /m\0 HTTP/1.1\r\n\r\n", 21)).status, 400);
  EXPECT_EQ(route_metrics_request("").status, 400);
  EXPECT_EQ(route_metrics_request("\r\n\r\n").status, 400);
}

// ---- the real server --------------------------------------------------------

// One raw exchange: connect, send `request` (optionally half-close), read to EOF.
std::string http_exchange(std::uint16_t port, std::string_view request, bool half_close = false) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  EXPECT_GE(fd, 0);
  timeval tv{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0) {
    ::close(fd);
    ADD_FAILURE() << "connect failed";
    return "";
  }
  std::size_t sent = 0;
  while (sent < request.size()) {
    auto n = ::send(fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) break;  // the server may answer and stop reading early
    sent += static_cast<std::size_t>(n);
  }
  if (half_close) ::shutdown(fd, SHUT_WR);
  std::string out;
  char buf[4096];
  for (;;) {
    auto n = ::recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  return out;
}

int status_of(const std::string& response) {
  if (!response.starts_with("HTTP/1.1 ") || response.size() < 12) return -1;
  return std::stoi(response.substr(9, 3));
}

std::string header(const std::string& response, const std::string& name) {
  auto head = response.substr(0, response.find("\r\n\r\n"));
  auto pos = head.find("\r\n" + name + ": ");
  if (pos == std::string::npos) return "";
  auto start = pos + 4 + name.size();
  return head.substr(start, head.find("\r\n", start) - start);
}

std::string body(const std::string& response) {
  auto pos = response.find("\r\n\r\n");
  return pos == std::string::npos ? "" : response.substr(pos + 4);
}

class metrics_server_suite : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = std::make_unique<metrics_server>(io_, endpoint{"127.0.0.1", 0},
                                               [this] { return registry_.render(); });
    auto ok = server_->start();
    ASSERT_TRUE(ok) << ok.error();
    port_ = server_->local_port();
    ASSERT_NE(port_, 0);
    thread_ = std::thread([this] { io_.run(); });
  }
  void TearDown() override {
    if (thread_.joinable()) {
      boost::asio::post(io_, [this] { server_->stop(); });
      thread_.join();  // run() returns once the server has nothing left to do
    }
    server_.reset();
  }

  boost::asio::io_context io_{1};
  metrics registry_;
  std::unique_ptr<metrics_server> server_;
  std::uint16_t port_ = 0;
  std::thread thread_;
};

TEST_F(metrics_server_suite, get_metrics) {
  registry_.message_received();
  auto r = http_exchange(port_, "GET /metrics HTTP/1.1\r\nHost: localhost\r\nAccept: */*\r\n\r\n");
  ASSERT_EQ(status_of(r), 200) << r;
  EXPECT_EQ(header(r, "Content-Type"), "text/plain; version=0.0.4; charset=utf-8");
  EXPECT_EQ(header(r, "Connection"), "close");
  EXPECT_EQ(std::stoul(header(r, "Content-Length")), body(r).size());
  EXPECT_NE(body(r).find("\nrelayd_messages_received_total 1\n"), std::string::npos) << body(r);

  // The registry is read at each request.
  registry_.message_received();
  r = http_exchange(port_, "GET /metrics HTTP/1.0\r\n\r\n");
  EXPECT_NE(body(r).find("\nrelayd_messages_received_total 2\n"), std::string::npos);

  r = http_exchange(port_, "HEAD /metrics HTTP/1.1\r\n\r\n");
  EXPECT_EQ(status_of(r), 200);
  EXPECT_EQ(body(r), "");
  EXPECT_GT(std::stoul(header(r, "Content-Length")), 0u);

  // The head arriving in pieces.
  r = http_exchange(port_, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", true);
  EXPECT_EQ(status_of(r), 200);
}

TEST_F(metrics_server_suite, errors_and_garbage) {
  auto r = http_exchange(port_, "GET /nope HTTP/1.1\r\n\r\n");
  EXPECT_EQ(status_of(r), 404) << r;
  EXPECT_EQ(header(r, "Connection"), "close");
  EXPECT_EQ(std::stoul(header(r, "Content-Length")), body(r).size());

  r = http_exchange(port_, "POST /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc");
  EXPECT_EQ(status_of(r), 405) << r;
  EXPECT_EQ(header(r, "Allow"), "GET, HEAD");

  r = http_exchange(port_, "GET /metrics HTTP/3.0\r\n\r\n");
  EXPECT_EQ(status_of(r), 505) << r;

  // A TLS ClientHello: answered at once, without waiting for a blank line.
  const char hello[] = "\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\x00\x00";
  r = http_exchange(port_, std::string_view(hello, sizeof(hello) - 1));
  EXPECT_EQ(status_of(r), 400) << r;

  r = http_exchange(port_, "\r\n\r\n");
  EXPECT_EQ(status_of(r), 400) << r;

  // A head over 8 KiB.
  std::string big = "GET /metrics HTTP/1.1\r\nX-Filler: " + std::string(20000, 'a') + "\r\n\r\n";
  r = http_exchange(port_, big);
  EXPECT_EQ(status_of(r), 431) << r.substr(0, 200);

  // A request line that never ends.
  r = http_exchange(port_, std::string(9000, 'G'));
  EXPECT_EQ(status_of(r), 431) << r.substr(0, 200);

  // An incomplete head, then EOF: no answer, no harm.
  r = http_exchange(port_, "GET /metrics HTTP/1.1\r\nHost:", true);
  EXPECT_EQ(r, "");

  // Random bytes.
  std::string noise;
  std::uint32_t x = 12345;
  for (int i = 0; i < 3000; ++i) {
    x = x * 1103515245 + 12345;
    noise += static_cast<char>(x >> 24);
  }
  r = http_exchange(port_, noise, true);
  EXPECT_TRUE(r.empty() || status_of(r) == 400 || status_of(r) == 431) << r.substr(0, 200);

  // Still serving.
  r = http_exchange(port_, "GET /metrics HTTP/1.1\r\n\r\n");
  EXPECT_EQ(status_of(r), 200);
}

TEST_F(metrics_server_suite, connection_limit_and_idle_clients) {
  // Idle clients that never send anything hold a slot each (until the 10 s
  // read timeout); one over the limit is closed at once.
  std::vector<int> idle;
  for (std::size_t i = 0; i < metrics_server::max_connections; ++i) {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port_);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)), 0);
    idle.push_back(fd);
  }
  // Give the server a moment to accept them all.
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  auto r = http_exchange(port_, "GET /metrics HTTP/1.1\r\n\r\n");
  EXPECT_EQ(r, "");  // closed without an answer
  for (int fd : idle) ::close(fd);
  // The slots come back as the server sees the EOFs.
  int status = -1;
  for (int i = 0; i < 50 && status != 200; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    status = status_of(http_exchange(port_, "GET /metrics HTTP/1.1\r\n\r\n"));
  }
  EXPECT_EQ(status, 200);
}

TEST(metrics_server_start, error_names_the_endpoint) {
  boost::asio::io_context io;
  metrics_server a(io, endpoint{"127.0.0.1", 0}, [] { return std::string(); });
  ASSERT_TRUE(a.start());
  metrics_server b(io, endpoint{"127.0.0.1", a.local_port()}, [] { return std::string(); });
  auto r = b.start();
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().find(fmt::format("127.0.0.1:{}", a.local_port())), std::string::npos)
      << r.error();
}

}  // namespace
}  // namespace relayd
