// The inbound session pump: one coroutine per accepted connection that feeds
// smtp::server_session and does what it asks (write replies, STARTTLS, AUTH on
// the worker pool, spool a message and answer 250 only after the synced commit),
// under idle, command-line and DATA deadlines and the data-memory budget.
// Ends when the client or the session closes; never throws for client input.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "relayd/net.hpp"
#include "relayd/services_fwd.hpp"
#include "smtp/envelope.hpp"

namespace relayd {

class inbound_connection;
class alias_source;
class dkim_service;

// What a listener is for: [smtp] listen, submission, smtps or [local] socket.
enum class listener_kind { smtp, submission, smtps, local };
const char* to_string(listener_kind k);

// "192.0.2.1:25", "[2001:db8::1]:25".
std::string peer_text(const std::string& ip, std::uint16_t port);

// smtp.max_data_memory: message content all sessions hold together. Shared
// ownership: a session frame destroyed with the io_context may outlive the
// listener that made it.
struct data_budget {
  std::uint64_t limit = 0;
  std::uint64_t held = 0;
};

// What every session borrows. All of it is owned by run_daemon()'s locals or
// the inbound_listener, which are alive whenever a session runs: sessions run
// only inside io.run(), and a frame left when io.run() returns is destroyed
// without being resumed (its destructors touch only what it owns).
struct inbound_services {
  const config& cfg;
  queue::spool& spool;
  scheduler& sched;
  // The scheduler's (main) I/O thread: a queued message is posted there, with
  // its events; sessions run on the inbound thread.
  asio::io_context& delivery_io;
  metrics& stats;
  asio::thread_pool& auth_pool;  // crypt(3) off the I/O thread
  const alias_source* aliases = nullptr;  // [local] aliases (run_daemon's); null: none
  const dkim_service* dkim = nullptr;     // [[dkim]] signing (run_daemon's); null: none
};

// One connection's session, from the banner (or the implicit-TLS handshake)
// to the close. `tls` and `users` are the ones current at accept: a reload
// does not change them for this connection. `local` is the peer of the local
// submission socket (kind local, no TLS, no AUTH): it may relay, bare
// addresses get [local] domain, MAIL is checked against the [local] policy,
// and the message carries the identity.
awaitable<void> serve_session(inbound_services services, std::shared_ptr<inbound_connection> c,
                              listener_kind kind, std::shared_ptr<asio::ssl::context> tls,
                              std::shared_ptr<const auth_users> users,
                              std::shared_ptr<data_budget> memory,
                              std::optional<smtp::local_identity> local = std::nullopt);

}  // namespace relayd
