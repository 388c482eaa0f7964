// Tests for relayd/config: defaults, a file with every key, one bad snippet per error class
// (each message must name its key), the caps, and the value parsers (durations, sizes,
// endpoints; CIDR blocks are in net_cidr_test.cpp).
#include "relayd/config.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cctype>
#include <cstdio>
#include <fstream>
#include <string>

namespace relayd {
namespace {

using namespace std::chrono_literals;

config parse_ok(std::string_view text) {
  auto c = parse_config(text, "relayd.toml");
  EXPECT_TRUE(c.has_value()) << c.error();
  return c.value_or(config{});
}

std::string parse_error(std::string_view text) {
  auto c = parse_config(text, "relayd.toml");
  EXPECT_FALSE(c.has_value()) << "accepted:\n" << text;
  return c ? std::string() : c.error();
}

std::vector<std::string> strings(const std::vector<endpoint>& list) {
  std::vector<std::string> out;
  for (const auto& e : list) out.push_back(e.to_string());
  return out;
}

TEST(config, empty_file_gives_design_defaults) {
  const config c = parse_ok("");
  EXPECT_FALSE(c.hostname.empty());
  EXPECT_EQ(c.spool, "/var/spool/relayd");
  EXPECT_EQ(strings(c.smtp.listen), (std::vector<std::string>{"127.0.0.1:25", "[::1]:25"}));
  EXPECT_TRUE(c.smtp.submission.empty());
  EXPECT_TRUE(c.smtp.smtps.empty());
  ASSERT_EQ(c.smtp.mynetworks.size(), 2u);
  EXPECT_TRUE(c.smtp.mynetworks[0].contains("127.1.2.3"));
  EXPECT_FALSE(c.smtp.mynetworks[0].contains("128.0.0.1"));
  EXPECT_TRUE(c.smtp.mynetworks[1].contains("::1"));
  EXPECT_FALSE(c.smtp.mynetworks[1].contains("::2"));
  EXPECT_EQ(c.smtp.max_message_size, 35u * 1024 * 1024);
  EXPECT_EQ(c.smtp.max_recipients, 1000u);
  EXPECT_EQ(c.smtp.max_connections, 1000u);
  EXPECT_EQ(c.smtp.max_connections_per_client, 50u);
  EXPECT_EQ(c.smtp.idle_timeout, 5min);
  EXPECT_EQ(c.smtp.data_timeout, 10min);
  EXPECT_EQ(c.smtp.max_errors, 10u);
  EXPECT_EQ(c.smtp.max_header_size, 1024u * 1024);
  EXPECT_EQ(c.smtp.max_connection_rate_per_client, 0u);
  EXPECT_EQ(c.user, "");
  EXPECT_EQ(c.tls.cert, "");
  EXPECT_EQ(c.tls.key, "");
  EXPECT_EQ(c.auth.users, "");
  EXPECT_FALSE(c.auth.allow_plaintext_loopback);
  EXPECT_FALSE(c.delivery.relayhost.has_value());
  EXPECT_EQ(c.delivery.relayhost_user, "");
  EXPECT_EQ(c.delivery.relayhost_password_file, "");
  EXPECT_EQ(c.delivery.port, 25);
  EXPECT_TRUE(c.delivery.dns_servers.empty());
  EXPECT_EQ(c.delivery.tls, tls_policy::may);
  EXPECT_FALSE(c.delivery.dane);
  EXPECT_EQ(c.delivery.concurrency_per_destination, 20u);
  EXPECT_EQ(c.delivery.connect_timeout, 30s);
  EXPECT_EQ(c.delivery.command_timeout, 5min);
  EXPECT_EQ(c.queue.min_backoff, 5min);
  EXPECT_EQ(c.queue.max_backoff, 1h);
  EXPECT_EQ(c.queue.max_lifetime, 5 * 24h);
  EXPECT_EQ(c.queue.delay_warning, 4h);
  EXPECT_EQ(c.queue.dead_retention, 30 * 24h);
  EXPECT_EQ(c.queue.max_messages, 0u);
  EXPECT_EQ(c.queue.min_free_disk, 100u * 1024 * 1024);
  EXPECT_EQ(c.queue.max_spool_size, 0u);
  EXPECT_TRUE(c.queue.bounces);
  EXPECT_EQ(c.control.socket, "/run/relayd/control.sock");
  ASSERT_TRUE(c.metrics.listen.has_value());
  EXPECT_EQ(c.metrics.listen->to_string(), "127.0.0.1:9587");
}

TEST(config, default_hostname_is_the_system_host_name) {
  char buf[256] = {};
  ASSERT_EQ(gethostname(buf, sizeof buf - 1), 0);
  const std::string expected = buf[0] != '\0' ? buf : "localhost";
  EXPECT_EQ(parse_ok("").hostname, expected);
  EXPECT_EQ(parse_ok("hostname = \"\"").hostname, expected);
}

TEST(config, every_key_set) {
  const config c = parse_ok(R"(
hostname = "relay.example.org"
spool    = "/tmp/spool"

[smtp]
listen     = ["127.0.0.1:2525", "[::1]:2525", "localhost:0"]
submission = ["127.0.0.1:587"]
smtps      = ["127.0.0.1"]
mynetworks = ["10.0.0.0/8", "192.168.1.7", "fd00::/8"]
max_message_size = "10M"
max_recipients   = 100
max_connections  = 200
max_connections_per_client = 10
idle_timeout     = "1m"

[tls]
cert = "/etc/relayd/cert.pem"
key  = "/etc/relayd/key.pem"

[auth]
users = "/etc/relayd/users"
allow_plaintext_loopback = true

[delivery]
relayhost = "[smtp.example.net]:587"
relayhost_user = "relay"
relayhost_password_file = "/etc/relayd/relay.pw"
port = 2525
dns_servers = ["127.0.0.1:5353", "[::1]"]
tls = "verify"
dane = true
concurrency_per_destination = 4
connect_timeout = "10s"
command_timeout = 120

[queue]
min_backoff   = "1m"
max_backoff   = "2h"
max_lifetime  = "1w"
delay_warning = "0s"
dead_retention = "7d"
max_messages  = 50000
min_free_disk = "1G"
max_spool_size = "2T"
bounces = false

[control]
socket = "/tmp/relayd.sock"

[metrics]
listen = "[::1]:9000"
)");
  EXPECT_EQ(c.hostname, "relay.example.org");
  EXPECT_EQ(c.spool, "/tmp/spool");
  EXPECT_EQ(strings(c.smtp.listen),
            (std::vector<std::string>{"127.0.0.1:2525", "[::1]:2525", "localhost:0"}));
  EXPECT_EQ(strings(c.smtp.submission), (std::vector<std::string>{"127.0.0.1:587"}));
  EXPECT_EQ(strings(c.smtp.smtps), (std::vector<std::string>{"127.0.0.1:465"}));
  ASSERT_EQ(c.smtp.mynetworks.size(), 3u);
  EXPECT_TRUE(c.smtp.mynetworks[0].contains("10.255.0.1"));
  EXPECT_TRUE(c.smtp.mynetworks[1].contains("192.168.1.7"));
  EXPECT_FALSE(c.smtp.mynetworks[1].contains("192.168.1.8"));
  EXPECT_TRUE(c.smtp.mynetworks[2].contains("fd12::1"));
  EXPECT_EQ(c.smtp.max_message_size, 10u << 20);
  EXPECT_EQ(c.smtp.max_recipients, 100u);
  EXPECT_EQ(c.smtp.max_connections, 200u);
  EXPECT_EQ(c.smtp.max_connections_per_client, 10u);
  EXPECT_EQ(c.smtp.idle_timeout, 1min);
  EXPECT_EQ(c.tls.cert, "/etc/relayd/cert.pem");
  EXPECT_EQ(c.tls.key, "/etc/relayd/key.pem");
  EXPECT_EQ(c.auth.users, "/etc/relayd/users");
  EXPECT_TRUE(c.auth.allow_plaintext_loopback);
  ASSERT_TRUE(c.delivery.relayhost.has_value());
  EXPECT_EQ(c.delivery.relayhost->host, "smtp.example.net");
  EXPECT_EQ(c.delivery.relayhost->port, 587);
  EXPECT_EQ(c.delivery.relayhost_user, "relay");
  EXPECT_EQ(c.delivery.relayhost_password_file, "/etc/relayd/relay.pw");
  EXPECT_EQ(c.delivery.port, 2525);
  EXPECT_EQ(strings(c.delivery.dns_servers),
            (std::vector<std::string>{"127.0.0.1:5353", "[::1]:53"}));
  EXPECT_EQ(c.delivery.tls, tls_policy::verify);
  EXPECT_TRUE(c.delivery.dane);
  EXPECT_EQ(c.delivery.concurrency_per_destination, 4u);
  EXPECT_EQ(c.delivery.connect_timeout, 10s);
  EXPECT_EQ(c.delivery.command_timeout, 120s);
  EXPECT_EQ(c.queue.min_backoff, 1min);
  EXPECT_EQ(c.queue.max_backoff, 2h);
  EXPECT_EQ(c.queue.max_lifetime, 7 * 24h);
  EXPECT_EQ(c.queue.delay_warning, 0s);
  EXPECT_EQ(c.queue.dead_retention, 7 * 24h);
  EXPECT_EQ(c.queue.max_messages, 50000u);
  EXPECT_EQ(c.queue.min_free_disk, 1ull << 30);
  EXPECT_EQ(c.queue.max_spool_size, 2ull << 40);
  EXPECT_FALSE(c.queue.bounces);
  EXPECT_EQ(c.control.socket, "/tmp/relayd.sock");
  ASSERT_TRUE(c.metrics.listen.has_value());
  EXPECT_EQ(c.metrics.listen->to_string(), "[::1]:9000");
}

TEST(config, missing_sections_keep_defaults) {
  const config c = parse_ok("[smtp]\nmax_recipients = 5\n");
  EXPECT_EQ(c.smtp.max_recipients, 5u);
  EXPECT_EQ(c.smtp.max_connections, 1000u);
  EXPECT_EQ(strings(c.smtp.listen), (std::vector<std::string>{"127.0.0.1:25", "[::1]:25"}));
  EXPECT_EQ(c.delivery.tls, tls_policy::may);
  EXPECT_EQ(c.queue.max_backoff, 1h);
}

TEST(config, empty_values_mean_unset) {
  const config c = parse_ok(R"(
[smtp]
listen = []
submission = ["127.0.0.1:587"]
mynetworks = []
[delivery]
relayhost = ""
[metrics]
listen = ""
)");
  EXPECT_TRUE(c.smtp.listen.empty());
  EXPECT_TRUE(c.smtp.mynetworks.empty());
  EXPECT_FALSE(c.delivery.relayhost.has_value());
  EXPECT_FALSE(c.metrics.listen.has_value());
}

TEST(config, integers_accepted_for_sizes_and_durations) {
  const config c = parse_ok("[smtp]\nmax_message_size = 1024\nidle_timeout = 90\n");
  EXPECT_EQ(c.smtp.max_message_size, 1024u);
  EXPECT_EQ(c.smtp.idle_timeout, 90s);
}

TEST(config, inline_and_dotted_tables_work) {
  const config c = parse_ok("smtp.max_recipients = 7\nqueue = { bounces = false }\n");
  EXPECT_EQ(c.smtp.max_recipients, 7u);
  EXPECT_FALSE(c.queue.bounces);
}

TEST(config, exact_messages) {
  EXPECT_EQ(parse_error("[smtp]\nmax_message_size = \"35Q\"\n"),
            "relayd.toml: smtp.max_message_size: bad size \"35Q\" (use e.g. 512K, 35M)");
  EXPECT_EQ(parse_error("[smtp]\nmax_mesage_size = \"35M\"\n"),
            "relayd.toml: smtp.max_mesage_size: unknown key (did you mean max_message_size?)");
  EXPECT_EQ(parse_error("[smpt]\n"), "relayd.toml: smpt: unknown table (did you mean smtp?)");
  EXPECT_EQ(parse_error("[smtp]\nmax_recipients = \"10\"\n"),
            "relayd.toml: smtp.max_recipients: expected an integer, got a string");
  EXPECT_EQ(parse_error("[smtp]\nlisten = []\n"),
            "relayd.toml: smtp: no listener (smtp.listen, smtp.submission and smtp.smtps are all "
            "empty)");
  EXPECT_EQ(parse_error("[frobnicate]\n"), "relayd.toml: frobnicate: unknown table");
  EXPECT_EQ(parse_error("[queue]\nmin_backoff = \"2h\"\nmax_backoff = 3600\n"),
            "relayd.toml: queue.min_backoff: 2h is greater than queue.max_backoff (1h)");
  EXPECT_EQ(parse_error("[smtp]\nmax_recipients = = 3\n").rfind("relayd.toml:2:", 0), 0u);
}

TEST(config, caps_accept_their_limit_and_name_it_when_passed) {
  const config c =
      parse_ok("[smtp]\nmax_connections = 500000\n[queue]\nmax_spool_size = \"1024T\"\n");
  EXPECT_EQ(c.smtp.max_connections, 500000u);
  EXPECT_EQ(c.queue.max_spool_size, 1ull << 50);
  EXPECT_EQ(parse_error("[smtp]\nmax_connections = 500001\n"),
            "relayd.toml: smtp.max_connections: must be at most 500000, got 500001");
  EXPECT_EQ(parse_error("[queue]\nmax_spool_size = \"1025T\"\n"),
            "relayd.toml: queue.max_spool_size: must be at most 1024T, got 1126999418470400 bytes");
}

TEST(config, first_problem_in_file_order_is_reported) {
  // Tables iterate in key order; the report follows the file instead.
  EXPECT_NE(parse_error("[smtp]\nmax_recipients = -1\n[delivery]\ntls = \"bad\"\n")
                .find("smtp.max_recipients"),
            std::string::npos);
  EXPECT_NE(parse_error("[delivery]\ntls = \"bad\"\n[auth]\nuserz = \"\"\n").find("delivery.tls"),
            std::string::npos);
  EXPECT_NE(parse_error("[queue]\nmin_backoff = \"x\"\nbounces = 1\n").find("queue.min_backoff"),
            std::string::npos);
}

TEST(config, syntax_errors_give_line_and_column) {
  const std::string e = parse_error("hostname = \"a.example\"\n[smtp]\nmax_recipients = = 3\n");
  EXPECT_EQ(e.rfind("relayd.toml:3:", 0), 0u) << e;
  const std::string dup = parse_error("[smtp]\nmax_recipients = 3\nmax_recipients = 4\n");
  EXPECT_EQ(dup.rfind("relayd.toml:3:", 0), 0u) << dup;
  const std::string unterminated = parse_error("\n\n\nspool = \"/var\n");
  EXPECT_EQ(unterminated.rfind("relayd.toml:4:", 0), 0u) << unterminated;
}

// One bad snippet per error class; the message must name the key.
struct bad_case {
  const char* toml;
  const char* key;   // must appear as "relayd.toml: KEY: "
  const char* what;  // a further substring of the message
};

class bad_config : public testing::TestWithParam<bad_case> {};

TEST_P(bad_config, names_the_key) {
  const bad_case& c = GetParam();
  const std::string e = parse_error(c.toml);
  EXPECT_EQ(e.rfind("relayd.toml: " + std::string(c.key) + ": ", 0), 0u) << e;
  EXPECT_NE(e.find(c.what), std::string::npos) << e;
}

TEST(config, hardening_keys) {
  const config c = parse_ok(R"(
user = "relayd"
[smtp]
data_timeout = "3m"
max_errors = 4
max_header_size = "64K"
max_connection_rate_per_client = 120
max_data_memory = "256M"
)");
  EXPECT_EQ(c.user, "relayd");
  EXPECT_EQ(c.smtp.data_timeout, 3min);
  EXPECT_EQ(c.smtp.max_errors, 4u);
  EXPECT_EQ(c.smtp.max_header_size, 64u * 1024);
  EXPECT_EQ(c.smtp.max_connection_rate_per_client, 120u);
  EXPECT_EQ(c.smtp.max_data_memory, 256u * 1024 * 1024);
  EXPECT_EQ(parse_ok("").smtp.max_data_memory, 0u);  // 0: a quarter of physical memory
  EXPECT_EQ(parse_error("[smtp]\nmax_data_memory = \"lots\"\n").substr(0, 34),
            "relayd.toml: smtp.max_data_memory:");
  EXPECT_EQ(parse_ok("user = \"_relay-d.1\"").user, "_relay-d.1");
  EXPECT_EQ(parse_ok("user = \"\"").user, "");
  EXPECT_EQ(parse_ok("[smtp]\nmax_header_size = 4096").smtp.max_header_size, 4096u);
}

const bad_case bad_cases[] = {
    // hardening keys
    {"user = 0", "user", "expected a string"},
    {"user = \"root:x\"", "user", "bad user name"},
    {"user = \"-rf\"", "user", "bad user name"},
    {"[smtp]\ndata_timeout = \"0s\"", "smtp.data_timeout", "at least 1s"},
    {"[smtp]\ndata_timeout = \"soon\"", "smtp.data_timeout", ""},
    {"[smtp]\nmax_errors = 0", "smtp.max_errors", "at least 1"},
    {"[smtp]\nmax_errors = -1", "smtp.max_errors", "negative"},
    {"[smtp]\nmax_header_size = \"0\"", "smtp.max_header_size", "greater than 0"},
    {"[smtp]\nmax_header_size = \"1X\"", "smtp.max_header_size", ""},
    {"[smtp]\nmax_connection_rate_per_client = \"5\"", "smtp.max_connection_rate_per_client",
     "expected an integer"},
    // unknown keys and tables
    {"nonsense = 1", "nonsense", "unknown key"},
    {"hostnme = \"x\"", "hostnme", "did you mean hostname?"},
    {"[smtp]\nlistn = []", "smtp.listn", "unknown key"},
    {"[smtp.extra]\na = 1", "smtp.extra", "unknown key"},
    {"[queue]\nmax_spool = \"1G\"", "queue.max_spool", "unknown key"},
    {"[metrics]\nport = 1", "metrics.port", "unknown key"},
    // wrong types
    {"hostname = 5", "hostname", "expected a string, got an integer"},
    {"spool = []", "spool", "expected a string"},
    {"smtp = 5", "smtp", "expected a table, got an integer"},
    {"[[smtp]]\nlisten = []", "smtp", "expected a table, got an array"},
    {"[smtp]\nlisten = \"127.0.0.1:25\"", "smtp.listen", "expected an array of strings"},
    {"[smtp]\nlisten = [\"127.0.0.1:25\", 25]", "smtp.listen", "item 2: expected a string"},
    {"[smtp]\nmax_message_size = 1.5", "smtp.max_message_size", "expected a size"},
    {"[smtp]\nidle_timeout = 00:05:00", "smtp.idle_timeout", "got a time"},
    {"[smtp]\nmax_connections = true", "smtp.max_connections", "expected an integer"},
    {"[queue]\nbounces = \"yes\"", "queue.bounces", "expected a boolean"},
    {"[tls]\ncert = 1", "tls.cert", "expected a string"},
    {"[auth]\nusers = false", "auth.users", "expected a string"},
    {"[auth]\nallow_plaintext_loopback = \"yes\"", "auth.allow_plaintext_loopback",
     "expected a boolean"},
    {"[auth]\nallow_plaintext_lopback = true", "auth.allow_plaintext_lopback",
     "unknown key (did you mean allow_plaintext_loopback?)"},
    {"[delivery]\nport = \"25\"", "delivery.port", "expected an integer"},
    {"[control]\nsocket = 1", "control.socket", "expected a string"},
    {"[metrics]\nlisten = [\"127.0.0.1:1\"]", "metrics.listen", "expected a string"},
    // bad values
    {"hostname = \"bad_name.example\"", "hostname", "bad host name"},
    {"hostname = \"-x.example\"", "hostname", "bad host name"},
    {"hostname = \"192.0.2.1\"", "hostname", "bad host name"},
    {"hostname = \"relay.example.org.\"", "hostname", "bad host name"},
    {"spool = \"\"", "spool", "must not be empty"},
    {"[smtp]\nlisten = [\"::1:25\"]", "smtp.listen", "brackets"},
    {"[smtp]\nlisten = [\"127.0.0.1:65536\"]", "smtp.listen", "bad port"},
    {"[smtp]\nlisten = [\"300.0.0.1:25\"]", "smtp.listen", "bad host"},
    {"[smtp]\nsubmission = [\"[::1\"]", "smtp.submission", "missing \"]\""},
    {"[smtp]\nsmtps = [\"[zz::1]:465\"]", "smtp.smtps", "bad host"},
    {"[smtp]\nmynetworks = [\"10.0.0.0/33\"]", "smtp.mynetworks", "out of range"},
    {"[smtp]\nmynetworks = [\"::1/129\"]", "smtp.mynetworks", "out of range"},
    {"[smtp]\nmynetworks = [\"example.org\"]", "smtp.mynetworks", "bad network"},
    {"[smtp]\nmynetworks = [\"10.0.0.0/\"]", "smtp.mynetworks", "bad prefix"},
    {"[smtp]\nmax_message_size = \"35Q\"", "smtp.max_message_size", "bad size \"35Q\""},
    {"[smtp]\nmax_message_size = \"99999999T\"", "smtp.max_message_size", "too large"},
    {"[smtp]\nmax_message_size = -1", "smtp.max_message_size", "negative"},
    {"[smtp]\nmax_message_size = \"-1M\"", "smtp.max_message_size", "negative"},
    {"[smtp]\nmax_message_size = 0", "smtp.max_message_size", "greater than 0"},
    {"[smtp]\nmax_recipients = 0", "smtp.max_recipients", "at least 1"},
    {"[smtp]\nmax_connections = -3", "smtp.max_connections", "negative"},
    {"[smtp]\nidle_timeout = \"5x\"", "smtp.idle_timeout", "bad duration \"5x\""},
    {"[smtp]\nidle_timeout = \"0s\"", "smtp.idle_timeout", "at least 1s"},
    {"[smtp]\nidle_timeout = -5", "smtp.idle_timeout", "negative"},
    {"[delivery]\nrelayhost = \"[mail.example\"", "delivery.relayhost", "missing"},
    {"[delivery]\nrelayhost = \"mail.example:0\"", "delivery.relayhost",
     "only allowed for listeners"},
    {"[delivery]\nport = 0", "delivery.port", "out of range"},
    {"[delivery]\nport = 70000", "delivery.port", "out of range"},
    {"[delivery]\ndns_servers = [\"ns.example:53\"]", "delivery.dns_servers", "not an IP address"},
    {"[delivery]\ndns_servers = [\"1.1.1.1:0\"]", "delivery.dns_servers", "port 0"},
    {"[delivery]\ntls = \"always\"", "delivery.tls", "none, may, encrypt or verify"},
    {"[delivery]\nconcurrency_per_destination = 0", "delivery.concurrency_per_destination",
     "at least 1"},
    {"[delivery]\nconnect_timeout = \"1y\"", "delivery.connect_timeout", "bad duration"},
    {"[delivery]\ncommand_timeout = \"99999999w\"", "delivery.command_timeout", "too long"},
    {"[queue]\nmax_lifetime = \"0s\"", "queue.max_lifetime", "at least 1s"},
    {"[queue]\ndelay_warning = \"4 h\"", "queue.delay_warning", "bad duration"},
    {"[queue]\ndead_retention = \"\"", "queue.dead_retention", "bad duration"},
    {"[queue]\nmax_messages = -1", "queue.max_messages", "negative"},
    {"[queue]\nmin_free_disk = \"1.5G\"", "queue.min_free_disk", "bad size"},
    {"[queue]\nmax_spool_size = \"10X\"", "queue.max_spool_size", "bad size"},
    {"[control]\nsocket = \"\"", "control.socket", "must not be empty"},
    {"[control]\nsocket = "
     "\"/"
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
     "aaaaaaaaaaaaaaaaaaaaaaa.sock\"",
     "control.socket", "Unix socket path"},
    {"[metrics]\nlisten = \"[::1]x\"", "metrics.listen", "bad address"},
    // across keys
    {"[smtp]\nlisten = []", "smtp", "no listener"},
    {"[smtp]\nlisten = [\"127.0.0.1:25\"]\nsubmission = [\"127.0.0.1:25\"]", "smtp.submission",
     "also in smtp.listen"},
    {"[smtp]\nlisten = [\"127.0.0.1:25\", \"127.0.0.1:25\"]", "smtp.listen", "also in smtp.listen"},
    {"[metrics]\nlisten = \"127.0.0.1:25\"", "metrics.listen", "also in smtp.listen"},
    {"[smtp]\nmax_connections = 10\nmax_connections_per_client = 11",
     "smtp.max_connections_per_client", "greater than smtp.max_connections"},
    // caps on values whose derived use is unbounded
    {"[smtp]\nmax_connections = 500001", "smtp.max_connections", "at most 500000"},
    {"[smtp]\nmax_connections = 9223372036854775807", "smtp.max_connections", "at most 500000"},
    {"[queue]\nmax_spool_size = \"1025T\"", "queue.max_spool_size", "at most 1024T"},
    {"[queue]\nmax_spool_size = \"16777215T\"", "queue.max_spool_size", "at most 1024T"},
    {"[tls]\ncert = \"/c.pem\"", "tls.key", "must be set when tls.cert is set"},
    {"[tls]\nkey = \"/k.pem\"", "tls.cert", "must be set when tls.key is set"},
    {"[delivery]\nrelayhost = \"[mx.example]:587\"\nrelayhost_user = \"u\"",
     "delivery.relayhost_password_file", "must be set"},
    {"[delivery]\nrelayhost_user = \"u\"\nrelayhost_password_file = \"/pw\"",
     "delivery.relayhost_user", "delivery.relayhost is empty"},
    {"[queue]\nmin_backoff = \"2h\"\nmax_backoff = \"1h\"", "queue.min_backoff",
     "greater than queue.max_backoff"},
    // DANE trusts the AD bit only from resolvers named in the configuration.
    {"[delivery]\ndane = true", "delivery.dane", "DNSSEC-validating resolver"},
    {"[delivery]\ndane = \"yes\"", "delivery.dane", ""},
};

// Test names say which key is broken: "smtp_max_message_size_3".
INSTANTIATE_TEST_SUITE_P(cases, bad_config, testing::ValuesIn(bad_cases),
                         [](const testing::TestParamInfo<bad_case>& info) {
                           std::string name;
                           for (const char* p = info.param.key; *p; ++p)
                             name += std::isalnum(static_cast<unsigned char>(*p)) ? *p : '_';
                           return name + "_" + std::to_string(info.index);
                         });

TEST(config, port_zero_only_for_listeners) {
  const config c = parse_ok(
      "[smtp]\nlisten = [\"127.0.0.1:0\"]\nsubmission = [\"127.0.0.1:0\"]\n"
      "[metrics]\nlisten = \"127.0.0.1:0\"\n");
  EXPECT_EQ(c.smtp.listen[0].port, 0);
  EXPECT_EQ(c.metrics.listen->port, 0);
}

TEST(config, load_config_reads_a_file_and_names_it) {
  char path[] = "/tmp/relayd_config_test_XXXXXX";
  const int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  close(fd);
  {
    std::ofstream out(path);
    out << "[smtp]\nmax_recipients = 12\n";
  }
  auto c = load_config(path);
  ASSERT_TRUE(c.has_value()) << c.error();
  EXPECT_EQ(c->smtp.max_recipients, 12u);
  {
    std::ofstream out(path);
    out << "[smtp]\nmax_recipients = 0\n";
  }
  c = load_config(path);
  ASSERT_FALSE(c.has_value());
  EXPECT_EQ(c.error(), std::string(path) + ": smtp.max_recipients: must be at least 1");
  std::remove(path);
  c = load_config(path);
  ASSERT_FALSE(c.has_value());
  EXPECT_EQ(c.error().rfind(std::string(path) + ": cannot open: ", 0), 0u) << c.error();
}

TEST(duration, parses) {
  EXPECT_EQ(parse_duration("30s"), 30s);
  EXPECT_EQ(parse_duration("5m"), 5min);
  EXPECT_EQ(parse_duration("4h"), 4h);
  EXPECT_EQ(parse_duration("5d"), 5 * 24h);
  EXPECT_EQ(parse_duration("1w"), 7 * 24h);
  EXPECT_EQ(parse_duration("0s"), 0s);
  EXPECT_EQ(parse_duration("42"), 42s);
  EXPECT_EQ(parse_duration("36500d"), 36500 * 24h);
}

TEST(duration, rejects) {
  for (const char* s : {"", "s", "-5s", "5M", "5x", "1.5h", " 5s", "5s ", "5 s", "+5s", "1h30m",
                        "36501d", "99999999999999999999s", "5ss"}) {
    EXPECT_FALSE(parse_duration(s).has_value()) << s;
  }
  EXPECT_NE(parse_duration("-5s").error().find("negative"), std::string::npos);
  EXPECT_NE(parse_duration("99999999999999999999s").error().find("too long"), std::string::npos);
  EXPECT_NE(parse_duration("5x").error().find("\"5x\""), std::string::npos);
}

TEST(size, parses) {
  EXPECT_EQ(parse_size("0"), 0u);
  EXPECT_EQ(parse_size("123"), 123u);
  EXPECT_EQ(parse_size("512K"), 512u * 1024);
  EXPECT_EQ(parse_size("512k"), 512u * 1024);
  EXPECT_EQ(parse_size("35M"), 35u * 1024 * 1024);
  EXPECT_EQ(parse_size("1G"), 1ull << 30);
  EXPECT_EQ(parse_size("100T"), 100ull << 40);
  EXPECT_EQ(parse_size("16777215T"), 16777215ull << 40);
  EXPECT_EQ(parse_size("18446744073709551615"), 18446744073709551615ull);
}

TEST(size, rejects) {
  for (const char* s : {"", "K", "35Q", "-1", "-1M", "1.5M", "35MB", "35 M", "16777216T",
                        "18446744073709551616", "0x10"})
    EXPECT_FALSE(parse_size(s).has_value()) << s;
  EXPECT_NE(parse_size("16777216T").error().find("too large"), std::string::npos);
  EXPECT_NE(parse_size("-1").error().find("negative"), std::string::npos);
}

TEST(endpoint, parses) {
  struct {
    const char* text;
    std::uint16_t default_port;
    const char* host;
    std::uint16_t port;
    const char* back;
  } cases[] = {
      {"127.0.0.1:25", 0, "127.0.0.1", 25, "127.0.0.1:25"},
      {"[::1]:25", 0, "::1", 25, "[::1]:25"},
      {"localhost:25", 0, "localhost", 25, "localhost:25"},
      {"mail.example.org:587", 0, "mail.example.org", 587, "mail.example.org:587"},
      {"[mail.example.org]:587", 0, "mail.example.org", 587, "mail.example.org:587"},
      {"[mail.example.org]", 25, "mail.example.org", 25, "mail.example.org:25"},
      {"[2001:db8::1]", 53, "2001:db8::1", 53, "[2001:db8::1]:53"},
      {"10.0.0.1", 53, "10.0.0.1", 53, "10.0.0.1:53"},
      {"[::]:0", 0, "::", 0, "[::]:0"},
      {"0.0.0.0:65535", 0, "0.0.0.0", 65535, "0.0.0.0:65535"},
      {"[::ffff:127.0.0.1]:25", 0, "::ffff:127.0.0.1", 25, "[::ffff:127.0.0.1]:25"},
  };
  for (const auto& c : cases) {
    auto e = parse_endpoint(c.text, c.default_port);
    ASSERT_TRUE(e.has_value()) << c.text << ": " << e.error();
    EXPECT_EQ(e->host, c.host) << c.text;
    EXPECT_EQ(e->port, c.port) << c.text;
    EXPECT_EQ(e->to_string(), c.back) << c.text;
  }
}

TEST(endpoint, rejects) {
  for (const char* s :
       {"",           "127.0.0.1",   "::1",           "::1:25",        "[::1]",
        "[::1]25",    "[::1",        "[]:25",         ":25",           "host:",
        "host:65536", "host:-1",     "host:2x",       "host:+25",      "256.0.0.1:25",
        "1.2.3:25",   "bad_host:25", "-a.example:25", "a..example:25", "[fe80::1%eth0]:25",
        "host :25"})
    EXPECT_FALSE(parse_endpoint(s).has_value()) << s;
  EXPECT_NE(parse_endpoint("::1:25").error().find("[::1]:25"), std::string::npos);
  EXPECT_NE(parse_endpoint("127.0.0.1").error().find("missing port"), std::string::npos);
}

}  // namespace
}  // namespace relayd

namespace relayd {
// [[dkim]] as the key tooling reads it (the signer's keys are accepted, typed).
TEST(config, dkim_entries) {
  const config c = parse_ok(R"(
[[dkim]]
domain = "Example.ORG"
selector = "s2026"
key = "/etc/relayd/dkim/example.org.s2026.key"
require_dns = true
match = "from"
subdomains = true
expire = "7d"
[[dkim]]
domain = "example.org"
selector = "ed"
key = "/k/ed.key"
)");
  ASSERT_EQ(c.dkim.size(), 2u);
  EXPECT_EQ(c.dkim[0].domain, "example.org");
  EXPECT_EQ(c.dkim[0].selector, "s2026");
  EXPECT_EQ(c.dkim[0].key, "/etc/relayd/dkim/example.org.s2026.key");
  EXPECT_TRUE(c.dkim[0].require_dns);
  EXPECT_FALSE(c.dkim[1].require_dns);
  EXPECT_TRUE(parse_ok("").dkim.empty());
  EXPECT_NE(parse_error("[[dkim]]\ndomain = \"a.org\"\nkey = \"/k\"\n").find("dkim[1].selector: is required"),
            std::string::npos);
  EXPECT_NE(parse_error("[[dkim]]\ndomain = \"a.org\"\nselector = \"s\"\nkey = \"/k\"\nkeys = 1\n")
                .find("dkim[1].keys: unknown key"),
            std::string::npos);
  EXPECT_NE(parse_error("[[dkim]]\ndomain = \"a org\"\nselector = \"s\"\nkey = \"/k\"\n")
                .find("bad domain"),
            std::string::npos);
  EXPECT_NE(parse_error("dkim = 1\n").find("dkim: expected an array of tables"), std::string::npos);
}
}  // namespace relayd

namespace relayd {
namespace {

TEST(config, events_and_destinations_top) {
  const config d = parse_ok("");
  EXPECT_EQ(d.events.file, "");
  EXPECT_EQ(d.events.webhook, "");
  EXPECT_EQ(d.metrics.destinations_top, 20u);
  const config c = parse_ok(
      "[events]\nfile = \"/var/log/relayd/events.jsonl\"\nwebhook = \"https://h.test:8443/in\"\n"
      "[metrics]\ndestinations_top = 5\n");
  EXPECT_EQ(c.events.file, "/var/log/relayd/events.jsonl");
  EXPECT_EQ(c.events.webhook, "https://h.test:8443/in");
  EXPECT_EQ(c.metrics.destinations_top, 5u);
  EXPECT_EQ(parse_ok("[events]\nwebhook = \"http://127.0.0.1:9/x\"\n").events.webhook,
            "http://127.0.0.1:9/x");
  EXPECT_NE(parse_error("[events]\nwebhook = \"ftp://h.test/\"\n")
                .find("events.webhook: expected an http:// or https:// URL"),
            std::string::npos);
  EXPECT_NE(parse_error("[events]\nwebhook = \"https:///x\"\n").find("events.webhook"),
            std::string::npos);
  EXPECT_NE(parse_error("[metrics]\ndestinations_top = 0\n").find("metrics.destinations_top: must be 1 to 1000"),
            std::string::npos);
  EXPECT_NE(parse_error("[events]\nfiles = \"x\"\n").find("events.files: unknown key (did you mean file?)"),
            std::string::npos);
}

}  // namespace
}  // namespace relayd
