// The inbound ESMTP server dialogue as a state machine without I/O: bytes in,
// replies and events out. The coroutine that owns the socket is a thin pump:
//
//   session.start();                      // greeting into output()
//   loop: write output(); read bytes;
//         while bytes: step = session.feed(bytes); bytes.remove_prefix(step.consumed);
//           event::message  -> spool the message_envelope()/take_message() under
//                              message_id(), then message_queued() or message_failed()
//           event::starttls -> write output() (220), DROP the rest of bytes, do the
//                              TLS handshake, then tls_started() (or close)
//           event::auth     -> check auth_user()/auth_password(), then auth_result()
//           event::close    -> write output(), close the connection
//
// Input limits (command line 512 octets, text line max_line_length, message size,
// header block size, recipient count, max_errors 5xx replies to commands) are
// enforced here; memory per session is bounded by max_message_size plus one
// command line, and output() by the replies to the bytes of one feed(). Time
// limits are the pump's: progress() tells it what the client is in the middle
// of sending, timeout() says 421 for it. Bare CR or LF inside DATA (SMTP
// smuggling) is refused with a 5xx reply and the connection is closed, so bytes
// after it are never read as commands. CHUNKING (RFC 3030): "BDAT n [LAST]" is
// followed by exactly n octets, which are read even when the command is refused
// (503 out of sequence, 552 over max_message_size), so they are never read as
// commands; they are not un-stuffed, bare CR or LF in them is data and is
// stored as CRLF. Each chunk is answered once read; the LAST one gives
// event::message as the end of DATA does. Nothing pipelined after STARTTLS is read
// (CVE-2011-0411): feed() stops right after its line, and tls_started() forgets
// every partial line and all state, as RFC 3207 4.2 asks. Never throws on input.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "smtp/envelope.hpp"
#include "smtp/reply.hpp"

namespace smtp {

struct session_options {
  std::string hostname = "localhost";               // banner, Received: by, Message-ID domain
  std::size_t max_message_size = 35 * 1024 * 1024;  // octets of content after un-stuffing
  std::size_t max_recipients = 1000;
  std::size_t max_line_length = 1000;  // text line in DATA, CRLF included (RFC 5321 4.5.3.1.6)
  // Octets of the header block (header fields up to the empty line); a message
  // over it gets 552 5.3.4 after its terminator and is not queued.
  std::size_t max_header_size = 1024 * 1024;
  // 5xx replies to commands before the session says 421 4.7.0 and closes.
  std::size_t max_errors = 10;
  // Assigns the queue ID at the end of DATA (it goes into the Received: header).
  std::function<std::string()> new_id;
  // Wall clock, seconds since the epoch; injectable for tests.
  std::function<std::int64_t()> now;
  // Called for every 4xx/5xx reply the session sends, with the command line that
  // caused it (empty for DATA content; never an AUTH secret); for the log.
  std::function<void(const reply&, std::string_view command)> on_reject;

  // STARTTLS (RFC 3207) and AUTH PLAIN/LOGIN (RFC 4954). The session runs the
  // dialogue; the pump does the handshake and checks the password.
  bool starttls = false;              // a TLS context exists: offer STARTTLS until TLS is on
  bool tls_active = false;            // the connection is under TLS from the start (RFC 8314)
  bool auth = false;                  // a user database exists: AUTH may be offered
  bool auth_without_tls = false;      // offer AUTH without TLS too (loopback client, by config)
  bool auth_required = false;         // submission: MAIL before AUTH gets 530 5.7.0
  std::size_t max_auth_failures = 3;  // the failure that reaches it also gets 421 4.7.0

  // Local submission (the submit socket, sendmail -bs). Non-empty: a bare local
  // part in MAIL or RCPT ("<root>") is qualified as "root@qualify_domain"
  // instead of refused.
  std::string qualify_domain;
  // Asked for every recipient that passed the session's own checks (syntax,
  // relay right, count), with the address as it will be stored: a reply
  // refuses it (e.g. 550 5.1.1 for an unknown local user), nullopt accepts it.
  std::function<std::optional<reply>(std::string_view address)> check_recipient;
  // Asked for MAIL's reverse-path (as given; "" for the null sender) once the
  // session's own checks passed: a reply refuses it (e.g. 553 5.7.1 for a local
  // user who may not use that sender), nullopt accepts it.
  std::function<std::optional<reply>(std::string_view sender)> check_sender;
};

struct client_info {
  std::string ip;              // "127.0.0.1", "::1"
  std::string hostname;        // reverse DNS name if known, else empty
  bool relay_allowed = false;  // client is in mynetworks (an authenticated client may relay too)
  // Set for the local submission socket: the peer's credentials. The Received:
  // field says "from local (uid N, user)" and the envelope carries it.
  std::optional<local_identity> local;
};

class server_session {
 public:
  enum class event {
    need_more,  // all input consumed; write output() and read more
    message,    // a complete message is ready: spool it, then message_queued/failed
    starttls,   // write output(), drop unconsumed input, handshake, then tls_started()
    auth,       // credentials are ready: check them, then auth_result()
    close,      // write output() and close the connection
  };
  struct step {
    std::size_t consumed;
    event what;
  };

  server_session(session_options options, client_info client);
  ~server_session();
  server_session(const server_session&) = delete;
  server_session& operator=(const server_session&) = delete;

  // Queues the 220 greeting.
  void start();
  // Consumes a prefix of `in`. Stops early at event::message and event::auth (the
  // rest of the input must be fed again after message_queued/message_failed or
  // auth_result), at event::starttls (the rest must be discarded) and at close.
  // Calling feed while a message, a handshake or a credential check is pending is
  // a programming error.
  step feed(std::string_view in);

  // Replies waiting to be written. The pump writes them, then clear_output().
  const std::string& output() const;
  void clear_output();

  // Valid after event::message until message_queued/message_failed.
  const envelope& message_envelope() const;
  const std::string& message_id() const;
  // The message as it goes into the spool: Received: prepended, Message-ID: and
  // Date: added when missing, CRLF line endings, dot-stuffing removed.
  std::string take_message();
  // "250 2.0.0 Ok: queued as ID"; the transaction ends and the session goes on.
  void message_queued();
  // The spool refused the message (e.g. 452 4.3.1); the transaction ends.
  void message_failed(const reply& r);

  // Octets of memory reserved for message content: the DATA body's or the BDAT
  // chunks' buffer (presized from SIZE=, grown by content_buffer's policy), or
  // the finished message until take_message(). Counts capacity, so it is never
  // below what is allocated.
  std::size_t buffered() const;
  // During DATA: the body so far is freed, the rest is read and dropped, and
  // the end of DATA is answered with `r` instead (the daemon's memory budget
  // for message content is spent). During a BDAT transfer (in a chunk or
  // between two): the chunks so far are freed and the current or next chunk is
  // answered with `r`, which ends the transaction. No effect otherwise.
  void refuse_message(const reply& r);

  // The TLS handshake after event::starttls succeeded: the session starts over
  // (the client must EHLO again; STARTTLS is no longer offered, AUTH may be).
  void tls_started();
  bool tls_active() const;

  // Valid after event::auth until auth_result. The password is wiped afterwards.
  // A malformed PLAIN response gives an empty user, which never matches.
  const std::string& auth_user() const;
  const std::string& auth_password() const;
  // 235 2.7.0 and the client may relay; or 535 5.7.8 (and 421 4.7.0, closing, at
  // max_auth_failures). The pump delays failures before calling this.
  void auth_result(bool ok);
  std::size_t auth_failures() const;
  // The user name after a successful AUTH, else empty.
  const std::string& authenticated_user() const;

  // Graceful stop: if no transaction is open, queue "421 4.3.2" and return true
  // (the pump then closes). Otherwise return false and finish the transaction
  // first; the session closes after the reply to DATA (or to BDAT LAST).
  bool shutdown();
  // What the client is in the middle of sending, for the pump's phase deadlines
  // (RFC 5321 4.5.3.2): a command line since its first byte, a DATA body since
  // the 354, or a BDAT chunk (data) since its command line. `generation`
  // changes whenever a new line, body or chunk begins, so the pump knows when
  // to restart the clock.
  enum class pending_input { none, command_line, data };
  struct input_progress {
    pending_input what;
    std::uint64_t generation;
  };
  input_progress progress() const;

  // A deadline hit: queue "421 4.4.2 ..." (idle, command line or DATA body not
  // complete in time) and close. A message being received is not queued.
  enum class timeout_kind { idle, command, data };
  void timeout(timeout_kind kind = timeout_kind::idle);

  bool in_transaction() const;
  // The session has queued its last reply (e.g. the 421 after too many AUTH
  // failures): the pump writes output() and closes without reading again.
  bool closed() const;
  std::size_t messages_accepted() const;

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace smtp
