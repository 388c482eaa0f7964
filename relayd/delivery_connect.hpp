// Connection set-up for the delivery agent (Postfix's smtp_connect.c): DNS (MX or
// relayhost), the hosts in preference order and each address in turn, connect,
// EHLO, STARTTLS per [delivery] tls (with the `may` plaintext fallback), AUTH.
// Each route (delivery_route.hpp) brings its own relayhost pool (tried in order,
// equals spread, smtps:// with TLS before the greeting), credentials, TLS and port.
// Fails with a deferred (for a permanent DNS answer, failed) outcome; never throws.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "relayd/delivery_stream.hpp"
#include "relayd/delivery_types.hpp"

namespace dns {
class mx_resolver;
}

namespace relayd {

struct config;

// A connection ready for transactions.
struct delivery_link {
  std::unique_ptr<outbound> stream;
  std::unique_ptr<smtp::client_session> session;
  std::string in;         // bytes read and not yet fed to the session
  std::string relay;      // "mx1.example.org[192.0.2.1]:25"
  std::string host_name;  // "mx1.example.org"
};

struct connect_result {
  std::optional<delivery_link> link;  // set when a host is ready
  recipient_outcome problem;          // else: why not (the last host's failure)
  bool throttled = false;    // a host answered 421 / 4.7.x: back off the destination
  bool local_fault = false;  // our configuration was refused (e.g. AUTH 535)
  double dns_seconds = 0, connect_seconds = 0;
};

// Each route's relayhost password (its password_file's first line; [delivery]
// relayhost_password_file for route 0), "" for a route without a user; indexed by
// route number. Throws std::runtime_error naming the key when a file cannot be read.
std::vector<std::string> read_route_passwords(const config& cfg);

class connector {
 public:
  // `passwords` (read_route_passwords) are moved in and wiped when the connector goes.
  connector(asio::io_context& io, const config& cfg, dns::mx_resolver& dns,
            std::vector<std::string> passwords);
  ~connector();
  connector(const connector&) = delete;
  connector& operator=(const connector&) = delete;

  // Resolves the destination's domain (MX) or its route's relayhosts, and connects.
  awaitable<connect_result> open(const destination_key& destination);

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace relayd
