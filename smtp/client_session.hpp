// The outbound SMTP dialogue as a state machine without I/O: server bytes in,
// commands and events out, the mirror of smtp::server_session. The delivery agent's
// coroutine owns the socket, TLS and the timeouts, and is a thin pump:
//
//   loop: read bytes (timeout chosen by phase());  EOF/error/timeout -> connection_lost()
//         while bytes: step = feed(bytes); bytes.remove_prefix(step.consumed);
//           always           -> while (!output().empty()) { write(output()); clear_output(); }
//                               (clear_output() refills the DATA content chunk by chunk)
//           need_more        -> go on feeding what is left of bytes, then read again
//           start_tls        -> discard any unread plaintext, TLS handshake, tls_established()
//           ready            -> send(message) (or quit())
//           transaction_done -> take_result(); phase() == ready: send() again or quit();
//                               phase() == closed: write output(), close
//           failed / closed  -> write output() (a polite QUIT, maybe), close
//
// It speaks EHLO (HELO when EHLO gets a 5xx), STARTTLS (RFC 3207), AUTH PLAIN or
// LOGIN (RFC 4954), XOAUTH2 or OAUTHBEARER (RFC 7628), SIZE (RFC 1870), 8BITMIME (RFC 6152), SMTPUTF8 (RFC 6531), DSN
// (RFC 3461: RET/ENVID on MAIL, NOTIFY/ORCPT on RCPT, only to a server that
// advertises DSN, otherwise nothing of them) and PIPELINING (RFC 2920: MAIL, every RCPT and DATA in one write; when DATA gets its
// 354 although no recipient was accepted, a lone "." ends it).
// Every recipient gets its own result; a connection can carry many transactions.
// Server replies are bounded by reply_limits and anything malformed is a protocol
// error, never a crash: input buffered is at most one reply. Never throws on input.
//
// Classification (delivery_status of each recipient, or of a connection_failure):
//  - 2xx after the final "." -> delivered, for the recipients whose RCPT got 2xx;
//  - a 4xx reply -> temporary, a 5xx reply -> permanent, to the recipients it covers:
//    MAIL's reply covers all, RCPT's its recipient, DATA's and the final one the
//    accepted recipients;
//  - 421 at any point: the server is closing; every recipient not yet decided gets it
//    (temporary), the session ends and destination_throttled is set;
//  - is_throttling() replies (421, or any 4xx with enhanced code 4.7.x, greylisting
//    included) set destination_throttled: DESIGN.md backs off the whole
//    destination. Exceptions: a 421 while idle (the server's idle timeout), and a
//    4.7.x refusal of STARTTLS or AUTH (security, not load; only 421 counts there);
//  - synthetic results (from_server = false): SIZE over the remote limit -> 552 5.3.4
//    permanent; SMTPUTF8 message, server without SMTPUTF8 -> 553 5.6.7 permanent; a
//    protocol error -> 451 4.5.0 temporary; connection lost -> 451 4.4.2 temporary;
//  - connection-level failures: greeting and EHLO/HELO refusals by their code; TLS
//    required but not offered or refused -> temporary; AUTH refused (535 or any
//    5xx), no usable mechanism, or credentials that would go in clear -> temporary
//    with local_fault set: our configuration, never a bounce.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "smtp/client_capabilities.hpp"
#include "smtp/delivery_status.hpp"
#include "smtp/envelope.hpp"
#include "smtp/reply.hpp"
#include "smtp/reply_parser.hpp"
#include "smtp/sasl_oauth.hpp"

namespace smtp {

struct client_options {
  std::string helo_name = "localhost";  // the EHLO/HELO argument
  bool want_tls = false;                // STARTTLS when offered (tls = may, encrypt, verify)
  bool require_tls = false;             // no TLS, no mail (encrypt, verify, AUTH off loopback)
  bool implicit_tls = false;            // the connection is TLS from the start (no STARTTLS)
  // Smarthost credentials; an empty user means no AUTH.
  std::string auth_user;
  std::string auth_password;  // with an OAuth2 mechanism: the access token
  // password: PLAIN, else LOGIN. xoauth2 / oauthbearer: only that mechanism; an
  // error challenge (334) gets the mechanism's dummy response, then the 5xx.
  sasl_mechanism auth_mechanism = sasl_mechanism::password;
  bool allow_plaintext_auth = false;        // AUTH without TLS (loopback smarthost only)
  std::size_t body_chunk_size = 64 * 1024;  // content octets stuffed per output() refill
  reply_limits limits;
};

// Where the dialogue is; the pump picks its timeout from it (RFC 5321 4.5.3.2:
// greeting 5 min, MAIL 5, RCPT 5, DATA 2, each data block 3, final "." 10) and
// names it when a step stalls.
enum class client_phase : std::uint8_t {
  greeting,       // waiting for the 220
  ehlo,           // EHLO sent
  helo,           // HELO sent (EHLO was refused)
  starttls,       // STARTTLS sent
  tls_handshake,  // the pump is doing the handshake; then tls_established()
  auth,           // AUTH exchange in progress
  ready,          // idle: send() or quit()
  mail,           // waiting for MAIL's reply
  rcpt,           // waiting for a RCPT reply
  data,           // DATA sent, waiting for 354
  data_body,      // content being written (clear_output() refills output())
  dot,            // content and "." sent, waiting for the final reply
  rset,           // RSET sent after a transaction that did not reach DATA's end
  quit,           // QUIT sent
  closed,         // finished: close the connection
};
std::string_view to_string(client_phase p);  // "greeting", "ehlo", ... "data_body", ...

// A recipient's DSN request, passed on to a server that advertises DSN.
struct recipient_dsn {
  std::uint8_t notify = 0;  // smtp::notify_bits; 0: no NOTIFY
  std::string orcpt;        // "rfc822;user@example.org" (decoded); "": no ORCPT
};

// One message to one destination.
struct outgoing_message {
  std::string sender;                   // "" for the null sender
  std::vector<std::string> recipients;  // this destination's recipients
  // The content as stored (CRLF line endings, not dot-stuffed). Not copied: it must
  // stay valid until transaction_done.
  std::string_view body;
  std::uint64_t size = 0;  // for SIZE=; normally body.size()
  bool body_8bit = false;  // BODY=8BITMIME when the server offers 8BITMIME; when it
                           // does not, the content goes as is (relayd never downgrades)
  bool smtputf8 = false;   // needs a server with SMTPUTF8, else 5.6.7 for everyone
  // DSN parameters (RFC 3461), sent only when the server advertises DSN.
  dsn_ret ret = dsn_ret::unspecified;  // RET=; unspecified: none
  std::string envid;                   // ENVID= (decoded); "": none
  std::vector<recipient_dsn> dsn;      // empty, or one per entry of recipients
  // RFC 8689: MAIL carries REQUIRETLS. Only under TLS to a server that offers
  // REQUIRETLS, else nothing is sent and everyone gets a synthetic 5.7.10 (no
  // TLS) or 5.7.30 (no REQUIRETLS). Whether the TLS is verified well enough is
  // the caller's decision (relayd/delivery_requiretls.hpp), made before send().
  bool requiretls = false;
};

struct recipient_result {
  std::string address;
  delivery_status status = delivery_status::temporary;
  reply response;                                 // the reply that decided this recipient
  bool from_server = true;                        // false: a synthetic reply made by the client
  client_phase in_reply_to = client_phase::rcpt;  // mail, rcpt, data, dot, ... ("in reply to")
};

struct transaction_result {
  std::vector<recipient_result> recipients;  // in the order of outgoing_message
  bool destination_throttled = false;        // 421 or a 4.7.x reply: back off the destination
  bool connection_closed = false;            // the session ended with this transaction
};

// A failure of the connection itself, outside a transaction: nothing was sent for
// any message; all of them get `status` (temporary or permanent, never delivered).
struct connection_failure {
  failure_cause cause = failure_cause::protocol_error;
  delivery_status status = delivery_status::temporary;
  reply response;  // the server's reply, or a synthetic one
  bool from_server = true;
  bool local_fault = false;                     // our configuration: defer, never bounce
  bool destination_throttled = false;           // 421 / 4.7.x during the set-up
  client_phase phase = client_phase::greeting;  // where it happened
};

class client_session {
 public:
  enum class event {
    need_more,         // write output(); then feed the bytes left, or read more
    start_tls,         // 220 to STARTTLS: handshake, then tls_established()
    ready,             // set-up done (EHLO, TLS, AUTH): send() or quit()
    transaction_done,  // take_result(); then phase() is ready or closed
    failed,            // connection-level failure(): write output(), close
    closed,            // QUIT answered (or the session already ended): close
  };
  struct step {
    std::size_t consumed;
    event what;
  };

  explicit client_session(client_options options);
  ~client_session();
  client_session(const client_session&) = delete;
  client_session& operator=(const client_session&) = delete;

  // Consumes a prefix of `in`, stopping right after the reply that causes an event
  // other than need_more, and after the 354 that starts the content (need_more
  // with bytes left: the content is written before they are fed). Bytes that
  // follow the 220 to STARTTLS in the same call are a protocol error (response
  // injection); bytes fed after the session ended are not consumed.
  step feed(std::string_view in);

  // Commands waiting to be written (may contain AUTH secrets: never log it). During
  // data_body, clear_output() refills it with the next stuffed chunk of content
  // and finally the terminator; write until it stays empty.
  const std::string& output() const;
  void clear_output();

  // The TLS handshake after start_tls succeeded: EHLO again, old capabilities gone.
  void tls_established();
  // Starts a transaction; only in phase ready. Returns need_more (commands in
  // output()) or transaction_done when the checks settled every recipient without
  // sending anything (SIZE over the limit, SMTPUTF8 not offered, no recipients).
  event send(const outgoing_message& message);
  // Queues QUIT when ready; the reply to it gives event closed.
  void quit();
  // The pump lost the connection (EOF, reset, write error, timeout): recipients
  // still open get a temporary synthetic reply naming `why` and the phase.
  // Returns transaction_done in a transaction, failed during set-up or while
  // idle, closed after QUIT or when already ended.
  event connection_lost(std::string_view why);

  client_phase phase() const;
  const server_capabilities& capabilities() const;
  bool tls_active() const;
  bool authenticated() const;
  const reply& greeting() const;     // the server's banner, for logs
  std::size_t transactions() const;  // transactions finished on this connection

  // After transaction_done.
  transaction_result take_result();
  // After failed.
  const connection_failure& failure() const;

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace smtp
