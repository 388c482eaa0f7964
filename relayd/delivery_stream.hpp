// The outbound stream: one TCP connection to a next hop that may turn into TLS, and
// the pump running an smtp::client_session over it. Every operation has a deadline
// (beast tcp_stream expires_after): it can neither fire into a freed stream nor
// cancel the next operation. Errors are values; a passed deadline is timed_out.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "queue/record.hpp"
#include "relayd/net.hpp"
#include "smtp/client_session.hpp"

namespace boost::asio::ssl {
class context;
}
struct ssl_st;  // OpenSSL's SSL

namespace relayd {

using deadline = std::chrono::steady_clock::duration;

class outbound {
 public:
  using error_code = boost::system::error_code;
  // `ctx` must outlive the stream (the agent owns both contexts).
  outbound(asio::io_context& io, asio::ssl::context& ctx);
  ~outbound();
  outbound(const outbound&) = delete;
  outbound& operator=(const outbound&) = delete;

  awaitable<error_code> connect(const tcp::endpoint& ep, deadline timeout);
  awaitable<std::pair<error_code, std::size_t>> read_some(char* buf, std::size_t n,
                                                          deadline timeout);
  awaitable<error_code> write(std::string_view data, deadline timeout);
  // SNI and, when `verify_name` is set, certificate name verification. The
  // name is checked in any case (without failing the handshake), for verified().
  awaitable<error_code> handshake(const std::string& server_name, bool verify_name,
                                  deadline timeout);
  const std::string& tls_error() const;  // why the last handshake failed
  // The TLS session after a successful handshake (nullopt before): protocol,
  // cipher, and whether the chain verified and the name was checked (a context
  // that does not verify still records the result: MTA-STS testing mode).
  struct tls_facts {
    std::string version, cipher;
    bool verified = false;
    std::string problem;  // when not verified: the verification error
  };
  std::optional<tls_facts> tls_session() const;
  ssl_st* native_ssl();  // for per-connection TLS settings made before the handshake (DANE)
  // After a successful handshake: the certificate chains to the context's CA
  // store and is valid for the server name given to handshake() (WebPKI),
  // whether or not the context asked OpenSSL to enforce it.
  bool verified() const;
  // Whether the peer closed or spoke while nothing was asked of it (EOF, a reset,
  // an idle-timeout 421, a TLS alert): a cached connection in that state is dead.
  // Never blocks (a peek at the socket).
  bool peer_spoke_while_idle();
  // Our end's address once connected ("" before or when unknown): TLS-RPT's
  // sending-mta-ip.
  std::string local_address() const;
  void close();

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

// What pump() ended with: the session's event, and when the stream failed (EOF,
// reset, deadline), the cause the session was told about.
struct pump_step {
  smtp::client_session::event what;
  std::optional<queue::outcome_cause> lost;  // lost or timeout
};

// Writes the session's output and feeds it the server's bytes until an event
// other than need_more. `in` holds bytes read but not yet fed (owned by the
// caller, who keeps it for the next call).
awaitable<pump_step> pump(outbound& c, smtp::client_session& s, std::string& in,
                          deadline timeout);

}  // namespace relayd
