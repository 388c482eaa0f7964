// Connection set-up for the delivery agent (Postfix's smtp_connect.c): DNS (MX or
// relayhost), the hosts in preference order and each address in turn, connect,
// EHLO, STARTTLS per [delivery] tls (with the `may` plaintext fallback), AUTH
// (a password, or for a route with oauth2 / [delivery] relayhost_oauth2 an OAuth2
// access token).
// Each route (delivery_route.hpp) brings its own relayhost pool (tried in order,
// equals spread, smtps:// with TLS before the greeting), credentials, TLS and port.
// Fails with a deferred (for a permanent DNS answer, failed) outcome; never throws.
#pragma once

#include <expected>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "relayd/delivery_requiretls.hpp"
#include "relayd/delivery_stream.hpp"
#include "relayd/delivery_types.hpp"

namespace dns {
class mx_resolver;
}
namespace queue {
class spool;
}

namespace relayd {

struct config;
class metrics;
class tls_status_table;
class tls_rpt_service;

// A connection ready for transactions.
struct delivery_link {
  std::unique_ptr<outbound> stream;
  std::unique_ptr<smtp::client_session> session;
  std::string in;         // bytes read and not yet fed to the session
  std::string relay;      // "mx1.example.org[192.0.2.1]:25"
  std::string host_name;  // "mx1.example.org"
  // How far this connection may be trusted (REQUIRETLS, delivery_requiretls.hpp).
  // Filled once the session is ready; MTA-STS and DANE raise `verification`
  // (and DNSSEC `name`) when their checks passed.
  next_hop_facts hop;
};

struct connect_result {
  std::optional<delivery_link> link;  // set when a host is ready
  recipient_outcome problem;          // else: why not (the last host's failure)
  bool throttled = false;    // a host answered 421 / 4.7.x: back off the destination
  bool local_fault = false;  // our configuration was refused (e.g. AUTH 535)
  // No link, and every host tried failed its TLS policy (MTA-STS enforce or
  // DANE): the destination's circuit breaker (scheduler::systemic_failure).
  bool tls_policy_failed = false;
  bool token_refused = false;  // the OAuth2 token got a 5xx: forgotten, open() gets a new one
  double dns_seconds = 0, connect_seconds = 0;
};

class connector {
 public:
  // Opens each route's credential files (a route's password_file, first line;
  // for route 0 [delivery] relayhost_password_file; a route's oauth2 files) and
  // keeps them open: call before the privilege drop. Throws std::runtime_error
  // naming the key when one cannot be read. With `spool` and [delivery] mta_sts,
  // MX delivery follows MTA-STS policies (delivery_mta_sts.hpp) cached there;
  // `stats` counts TLS policy outcomes; `tls_status` (outliving the connector)
  // gets each destination's TLS policy and outcome for relayctl destinations.
  connector(asio::io_context& io, const config& cfg, dns::mx_resolver& dns,
            queue::spool* spool = nullptr, metrics* stats = nullptr,
            tls_status_table* tls_status = nullptr);
  ~connector();
  connector(const connector&) = delete;
  connector& operator=(const connector&) = delete;

  // Resolves the destination's domain (MX) or its route's relayhosts, and connects.
  // `requiretls` (RFC 8689 4.2.1): STARTTLS is mandatory and each host in turn
  // must pass check_next_hop() for a REQUIRETLS message, else it gets QUIT and
  // the next one is tried; when none passes, `problem` says why (failed when
  // every host answered and none qualified, deferred when some could not be asked).
  awaitable<connect_result> open(const destination_key& destination, bool requiretls = false);
  // SIGHUP: re-reads every route's password file and the OAuth2 secret and
  // refresh token files (through the descriptors kept open when only root can
  // read them); a file that cannot be read keeps its previous value.
  void reload_credentials();
  // A reload: the routes of `next` (relayhosts, TLS policy, port, credentials)
  // for connections opened from now on; their password files are read now
  // (after the privilege drop a new file must be readable by relayd's user).
  // On failure nothing changes and the error names the key.
  std::expected<void, std::string> reconfigure(const config& next);
  // [delivery] tls_rpt: every MX session's TLS policy outcome goes to `reports`
  // (delivery_tls_rpt.hpp); null: none. It outlives this object.
  void set_tls_reports(tls_rpt_service* reports);

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace relayd
