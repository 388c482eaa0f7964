// relayd's configuration: the whole TOML file of DESIGN.md, parsed and validated
// at once. Unknown keys, wrong types and bad durations, sizes or addresses are
// errors whose message names the key ("smtp.max_message_size: ..."); nothing is
// half-applied. Defaults are DESIGN.md's.
#pragma once

#include <chrono>
#include <cstdint>
#include <expected>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "relayd/config_values.hpp"  // endpoint, parse_duration, parse_size, ...
#include "relayd/net_cidr.hpp"       // cidr, parse_cidr
#include "smtp/sasl_oauth.hpp"       // sasl_mechanism

namespace relayd {

enum class tls_policy { none, may, encrypt, verify };

// [log] level: the least severe lines written, by syslog's names. relayd writes
// no lines at notice severity, so `notice` writes what `warning` writes.
enum class log_level { debug, info, notice, warning, error };

// OAuth2 for a smarthost: the refresh token is exchanged at token_url for access
// tokens that AUTH XOAUTH2 / OAUTHBEARER sends (relayd/oauth2_token.hpp). The
// inline table is [delivery] relayhost_oauth2 (route 0 of relayd/delivery_route.hpp)
// or a [[route]]'s oauth2.
struct oauth2_settings {
  std::string token_url;           // "https://host[:port]/path"
  std::string client_id;
  std::string client_secret_file;  // first line; "" : a public client (no secret sent)
  std::string refresh_token_file;  // first line; a new refresh token is written back here
  std::string scope;               // "" : none sent
  smtp::sasl_mechanism mechanism = smtp::sasl_mechanism::xoauth2;  // "xoauth2" | "oauthbearer"
};

// A smarthost: "smtp://[host]:port" or the bare "[host]:port" (STARTTLS per the
// tls policy) or "smtps://[host]:port" (TLS right after connect, port 465 by default).
struct relay_host {
  std::string host;
  std::uint16_t port = 25;
  bool implicit_tls = false;      // smtps://
  std::string to_string() const;  // "[host]:587", "smtps://[host]:465"
};

// A [[route]] (DESIGN "Sender identity and routes"): one match key, then where
// the mail goes. Matching and rewriting live in relayd/delivery_route.hpp.
struct route {
  std::string name;  // [[route]] name, default "route1", "route2", ...
  std::string sender, sender_domain, recipient_domain;  // exactly one is set (lower case)
  std::vector<relay_host> relayhost;                    // a pool, in order; empty: MX
  std::string user, password_file;
  std::optional<oauth2_settings> oauth2;  // instead of password_file (AUTH XOAUTH2/OAUTHBEARER)
  tls_policy tls = tls_policy::may;
  std::uint16_t port = 25;  // MX delivery port
  std::string rewrite_sender, rewrite_from;
};

// A [[destination]] (DESIGN "Destinations, rules and events"): traffic shaping
// and reply rules for the mail of the recipient domains it matches. Matching,
// rates and the built-in provider profiles: relayd/delivery_destination.hpp.
struct destination_rule {
  std::string reply;  // ECMAScript regex searched in "code enhanced-status text"
  enum class action_kind { suspend, slow, hold } action = action_kind::suspend;
  std::chrono::seconds duration{0};  // `for`; hold with 0: until relayctl resume
};
struct destination_settings {
  std::string match;  // "example.org", "*.example.org" or "mx:*.example.net" (lower case)
  std::uint64_t max_connections = 0;              // 0: [delivery] concurrency_per_destination
  std::uint64_t max_messages_per_connection = 0;  // 0: no limit
  std::string max_rate, connect_rate;             // "" or "N/s", "N/m", "N/h", "N/d"
  std::vector<destination_rule> rules;
};

struct config {
  std::string hostname;  // default: the system host name
  std::string spool = "/var/spool/relayd";
  // Run as this user after binding listeners and opening the spool and the
  // control socket (only when started as root). Empty: stay as started.
  std::string user;

  struct smtp_section {
    std::vector<endpoint> listen;  // default 127.0.0.1:25, [::1]:25
    std::vector<endpoint> submission;
    std::vector<endpoint> smtps;
    std::vector<cidr> mynetworks;  // default 127.0.0.0/8, ::1/128
    std::uint64_t max_message_size = 35ull * 1024 * 1024;
    std::uint64_t max_recipients = 1000;
    std::uint64_t max_connections = 1000;
    std::uint64_t max_connections_per_client = 50;
    std::chrono::seconds idle_timeout{300};  // per read; also a whole command line
    std::chrono::seconds data_timeout{600};  // the whole DATA body, 354 to terminator
    std::uint64_t max_errors = 10;           // 5xx replies to commands, then 421 and close
    std::uint64_t max_header_size = 1024 * 1024;
    std::uint64_t max_connection_rate_per_client = 0;  // connections per minute; 0: no limit
    // Message content held in memory by all sessions together (bodies being
    // read, messages waiting for their commit); 0: a quarter of physical memory.
    std::uint64_t max_data_memory = 0;
  } smtp;

  struct tls_section {
    std::string cert;
    std::string key;
  } tls;

  struct auth_section {
    std::string users;                      // file of "user:crypt(3) hash" lines
    bool allow_plaintext_loopback = false;  // offer AUTH without TLS to loopback clients
  } auth;

  struct delivery_section {
    std::optional<relay_host> relayhost;
    std::string relayhost_user;
    std::string relayhost_password_file;
    std::optional<oauth2_settings> relayhost_oauth2;  // instead of the password file
    std::uint16_t port = 25;
    std::vector<endpoint> dns_servers;  // port defaults to 53
    tls_policy tls = tls_policy::may;
    // RFC 7672 DANE for MX delivery; needs dns_servers naming a validating resolver.
    bool dane = false;
    std::uint64_t concurrency_per_destination = 20;
    std::chrono::seconds connect_timeout{30};
    std::chrono::seconds command_timeout{300};
    // MTA-STS (RFC 8461, relayd/delivery_mta_sts.hpp) for MX delivery. The policy
    // host's HTTPS port is 443; another one is only for tests.
    bool mta_sts = true;
    std::uint16_t mta_sts_port = 443;
    // The built-in Gmail, Microsoft and Yahoo reply rules (delivery_destination.hpp).
    bool provider_profiles = true;
    // TLS reporting (RFC 8460, relayd/tls_rpt_service.hpp): daily reports sent
    // from tls_rpt_from (required when on); the organization-name defaults to
    // that address's domain, which is also the report's submitter.
    bool tls_rpt = false;
    std::string tls_rpt_from;
    std::string tls_rpt_organization;
  } delivery;

  struct queue_section {
    std::chrono::seconds min_backoff{300};
    std::chrono::seconds max_backoff{3600};
    std::chrono::seconds max_lifetime{5 * 86400};
    std::chrono::seconds delay_warning{4 * 3600};  // 0: disabled
    std::chrono::seconds dead_retention{30 * 86400};
    std::uint64_t max_messages = 0;
    std::uint64_t min_free_disk = 100ull * 1024 * 1024;
    std::uint64_t max_spool_size = 0;  // 0: limited by the disk
    bool bounces = true;
  } queue;

  struct control_section {
    std::string socket = "/run/relayd/control.sock";
    // Members may run every command (delete, hold, flush, ...); root and the
    // daemon's own user always may. "" : nobody else. Any local user may list.
    std::string admin_group;
  } control;

  // The host's MTA (DESIGN "The host's MTA"): sendmail's socket and drop
  // directory, local addresses and aliases.
  struct local_section {
    std::string socket = "/run/relayd/submit.sock";  // "" disables local submission
    std::string maildrop = "/var/spool/relayd/maildrop";
    // Group that owns the drop directory and that sendmail is set-group-id to;
    // "" : the daemon's own group.
    std::string maildrop_group;
    std::string domain;                // appended to bare addresses [hostname]
    std::vector<std::string> domains;  // local domains for aliases [hostname, localhost]
    std::string aliases = "/etc/relayd/aliases";  // "" : no aliases file
    std::string fallback;              // unmatched local recipients go here; "" : 5.1.1
    std::string masquerade;            // local senders' domain becomes this; "" : unchanged
    std::vector<std::string> allowed_users;  // who may submit; empty: every user
    // Senders a user may use, by login name: exact addresses or "*@domain";
    // a user not listed may use any sender.
    std::vector<std::pair<std::string, std::vector<std::string>>> senders;
  } local;

  std::vector<route> routes;  // [[route]], first match wins; none: [delivery]
  std::vector<destination_settings> destinations;  // [[destination]], first match wins

  struct metrics_section {
    std::optional<endpoint> listen = endpoint{"127.0.0.1", 9587};  // "" disables
    // Per-destination series for this many destinations (most queued), the rest as "other".
    std::uint64_t destinations_top = 20;
  } metrics;

  // [events] (relayd/events_log.hpp): JSON lines per state change.
  struct events_section {
    std::string file;     // "" : none
    std::string webhook;  // "http(s)://host[:port]/path"; "" : none
    // relayctl report's record in <spool>/events/ (events_report_log.hpp),
    // kept this many days; 0: none.
    std::uint64_t report_days = 7;
  } events;

  // [[dkim]]: one signing key (RFC 6376). Every entry for the signing domain
  // signs (RSA + Ed25519, old and new selector); the key file is read at start
  // and on SIGHUP (relayd/dkim_sign.hpp), not here.
  struct dkim_entry {
    std::string domain;    // d= (lower case)
    std::string selector;  // s=
    std::string key;       // PEM private key: RSA 1024-4096 bits or Ed25519
    enum class match_kind { from, sender } match = match_kind::from;  // whose domain signs
    bool subdomains = false;   // also sign for x.domain (d= stays domain)
    bool require_dns = false;  // sign only while DNS publishes the key (relayctl dkim check)
    std::optional<std::chrono::seconds> expire;  // x= = t= + expire
  };
  std::vector<dkim_entry> dkim;
  // How often the daemon looks the [[dkim]] selectors up in DNS (at most 5 min
  // while a require_dns entry does not match).
  std::chrono::seconds dkim_check_interval{6 * 3600};

  struct log_section {
    log_level level = log_level::info;
  } log;
};

// Parses and validates a whole file. On error: "FILE: KEY: what is wrong".
std::expected<config, std::string> load_config(const std::string& path);
// The same from text (for tests); `origin` names the source in messages.
std::expected<config, std::string> parse_config(std::string_view text,
                                                std::string_view origin = "config");

}  // namespace relayd
