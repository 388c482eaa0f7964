// The outbound SMTP state machine (see client_session.hpp). Every command written
// pushes what its reply will answer onto a queue; each complete reply pops one
// entry and runs that step's handler, so pipelined and lock-step dialogues share
// the same code. A reply nobody waits for, a malformed reply or a reply class that
// makes no sense for its command is a protocol error that ends the session.
#include "smtp/client_session.hpp"

#include <algorithm>
#include <cassert>
#include <deque>
#include <optional>
#include <utility>

#include "smtp/address.hpp"
#include "smtp/base64.hpp"
#include "smtp/command.hpp"
#include "smtp/dot_stuffer.hpp"
#include "smtp/text.hpp"

namespace smtp {
namespace {

// RFC 4954 4: an AUTH command line with its initial response stays within the
// 512-octet command line limit, otherwise the response follows a 334.
constexpr std::size_t max_command_line = 512;

int reply_class(const reply& r) {
  return r.code / 100;
}

reply synthetic(int code, std::string_view enhanced, std::string text) {
  return reply{code, std::string(enhanced), std::move(text)};
}

// A path that cannot break the command line it goes into.
bool sendable_path(std::string_view path, bool recipient) {
  if (path.empty()) return !recipient;
  if (recipient && text::iequals(path, "postmaster")) return true;
  return check_mailbox(path, true).has_value();
}

}  // namespace

std::string_view to_string(client_phase p) {
  switch (p) {
    case client_phase::greeting:
      return "greeting";
    case client_phase::ehlo:
      return "ehlo";
    case client_phase::helo:
      return "helo";
    case client_phase::starttls:
      return "starttls";
    case client_phase::tls_handshake:
      return "tls_handshake";
    case client_phase::auth:
      return "auth";
    case client_phase::ready:
      return "ready";
    case client_phase::mail:
      return "mail";
    case client_phase::rcpt:
      return "rcpt";
    case client_phase::data:
      return "data";
    case client_phase::data_body:
      return "data_body";
    case client_phase::dot:
      return "dot";
    case client_phase::rset:
      return "rset";
    case client_phase::quit:
      return "quit";
    case client_phase::closed:
      return "closed";
  }
  return "?";
}

struct client_session::impl {
  // What the next reply answers.
  enum class expect : std::uint8_t {
    greeting,
    ehlo,
    helo,
    starttls,
    auth,
    mail,
    rcpt,
    data,
    dot,
    rset,
    quit
  };
  struct pending {
    expect what;
    std::size_t index = 0;  // rcpt: the recipient
  };
  enum class state : std::uint8_t { dialogue, tls_handshake, body, closed };
  enum class auth_step : std::uint8_t {
    none,
    plain_sent,       // AUTH PLAIN with its initial response
    plain_challenge,  // AUTH PLAIN without it (too long): 334, then the response
    login_user,       // AUTH LOGIN: 334, then the user name
    login_password,   // 334, then the password
    login_sent,       // password sent
    oauth_challenge,  // AUTH XOAUTH2/OAUTHBEARER without the response (too long): 334 first
    oauth_sent,       // the bearer response sent: 235, or a 334 error challenge
    oauth_error_ack,  // the dummy response to the error challenge sent: the final 5xx
  };

  explicit impl(client_options o) : options_(std::move(o)), parser_(options_.limits) {
    if (options_.body_chunk_size == 0) options_.body_chunk_size = 1;
    tls_active_ = options_.implicit_tls;
    pending_.push_back({expect::greeting});
  }

  client_options options_;
  reply_parser parser_;
  std::string out_;
  std::deque<pending> pending_;
  state state_ = state::dialogue;
  std::optional<event> event_;  // what feed() reports after the current reply

  server_capabilities caps_;
  reply greeting_;
  bool tls_active_ = false;
  bool tls_refused_ = false;  // STARTTLS answered 4xx/5xx: go on in clear when allowed
  bool authenticated_ = false;
  auth_step auth_ = auth_step::none;
  connection_failure failure_;
  std::size_t transactions_ = 0;
  client_phase last_phase_ = client_phase::greeting;  // of the reply being handled

  // The open transaction.
  bool in_txn_ = false;
  transaction_result result_;
  std::vector<bool> decided_;
  std::vector<bool> accepted_;
  std::vector<std::size_t> to_send_;  // recipients that get a RCPT, in order
  std::size_t next_rcpt_ = 0;         // lock-step mode: next entry of to_send_
  std::size_t accepted_count_ = 0;
  bool mail_refused_ = false;
  bool pipelined_ = false;
  std::vector<recipient_dsn> dsn_;  // of the open transaction; empty: none asked
  std::string_view body_;
  std::size_t body_pos_ = 0;
  bool terminator_queued_ = false;
  dot_stuffer stuffer_;

  bool want_tls() const { return options_.want_tls || options_.require_tls; }

  client_phase phase() const {
    switch (state_) {
      case state::closed:
        return client_phase::closed;
      case state::tls_handshake:
        return client_phase::tls_handshake;
      case state::body:
        return client_phase::data_body;
      case state::dialogue:
        break;
    }
    if (pending_.empty()) return client_phase::ready;
    switch (pending_.front().what) {
      case expect::greeting:
        return client_phase::greeting;
      case expect::ehlo:
        return client_phase::ehlo;
      case expect::helo:
        return client_phase::helo;
      case expect::starttls:
        return client_phase::starttls;
      case expect::auth:
        return client_phase::auth;
      case expect::mail:
        return client_phase::mail;
      case expect::rcpt:
        return client_phase::rcpt;
      case expect::data:
        return client_phase::data;
      case expect::dot:
        return client_phase::dot;
      case expect::rset:
        return client_phase::rset;
      case expect::quit:
        return client_phase::quit;
    }
    return client_phase::ready;
  }

  void write(std::string_view line, expect what, std::size_t index = 0) {
    out_ += line;
    pending_.push_back({what, index});
  }

  // ---- endings ----------------------------------------------------------------

  void close() {
    state_ = state::closed;
    pending_.clear();
  }

  void fail(failure_cause cause, reply r, bool from_server, client_phase where, bool polite_quit) {
    failure_ = connection_failure{};
    failure_.cause = cause;
    failure_.from_server = from_server;
    failure_.phase = where;
    // 454 4.7.0 to STARTTLS or AUTH is about security, not load: only 421 counts there.
    const bool security = cause == failure_cause::tls_unavailable ||
                          cause == failure_cause::auth_temporary ||
                          cause == failure_cause::auth_rejected;
    failure_.destination_throttled = from_server && (security ? r.code == 421 : is_throttling(r));
    switch (cause) {
      case failure_cause::greeting_refused:
      case failure_cause::hello_refused:
        failure_.status =
            reply_class(r) == 5 ? delivery_status::permanent : delivery_status::temporary;
        break;
      default:
        failure_.status = delivery_status::temporary;
        break;
    }
    failure_.local_fault =
        cause == failure_cause::auth_rejected || cause == failure_cause::auth_unavailable;
    failure_.response = std::move(r);
    close();
    if (polite_quit) out_ += "QUIT\r\n";
    event_ = event::failed;
  }

  void decide(std::size_t i, const reply& r, bool from_server, client_phase where) {
    if (decided_[i]) return;
    decided_[i] = true;
    recipient_result& rr = result_.recipients[i];
    rr.status = status_of(r);
    rr.response = r;
    rr.from_server = from_server;
    rr.in_reply_to = where;
  }

  void decide_open(const reply& r, bool from_server, client_phase where) {
    for (std::size_t i = 0; i < decided_.size(); ++i) decide(i, r, from_server, where);
  }

  void finish() {
    if (state_ == state::body) state_ = state::dialogue;  // final reply before the last clear
    in_txn_ = false;
    ++transactions_;
    body_ = {};
    result_.connection_closed = state_ == state::closed;
    event_ = event::transaction_done;
  }

  // The server closes (421): every open recipient gets its reply.
  void service_closing(const reply& r, client_phase where, bool throttled) {
    if (in_txn_) {
      decide_open(r, true, where);
      result_.destination_throttled = true;
      close();
      finish();
      return;
    }
    fail(failure_cause::service_closing, r, true, where, false);
    // A 421 while idle is the server's idle timeout, not a sign of overload.
    failure_.destination_throttled = throttled;
  }

  // last_phase_ names the step: set by on_reply() and by feed() before parsing.
  void protocol_error(std::string_view what) {
    const client_phase where = last_phase_;
    reply r = synthetic(451, "4.5.0", "Protocol error: " + std::string(what));
    if (in_txn_) {
      decide_open(r, false, where);
      close();
      finish();
      return;
    }
    fail(failure_cause::protocol_error, std::move(r), false, where, false);
  }

  // ---- set-up -----------------------------------------------------------------

  void send_ehlo() {
    command c;
    c.what = verb::ehlo;
    c.argument = options_.helo_name;
    write(c.encode(), expect::ehlo);
  }

  void after_hello() {
    if (!tls_active_ && want_tls() && !tls_refused_ && caps_.starttls) {
      write("STARTTLS\r\n", expect::starttls);
      return;
    }
    if (!tls_active_ && options_.require_tls) {
      fail(failure_cause::tls_unavailable,
           synthetic(451, "4.7.4", "TLS is required, but the server does not offer STARTTLS"),
           false, last_phase_, true);
      return;
    }
    start_auth();
  }

  void start_auth() {
    if (options_.auth_user.empty()) {
      event_ = event::ready;
      return;
    }
    if (!tls_active_ && !options_.allow_plaintext_auth) {
      fail(failure_cause::auth_unavailable,
           synthetic(451, "4.7.0", "Credentials are not sent without TLS, and TLS is not active"),
           false, last_phase_, true);
      return;
    }
    if (options_.auth_mechanism != sasl_mechanism::password) {
      start_oauth();
      return;
    }
    if (caps_.auth_plain) {
      const std::string response = plain_response();
      if (std::string_view("AUTH PLAIN ").size() + response.size() + 2 <= max_command_line) {
        write("AUTH PLAIN " + response + "\r\n", expect::auth);
        auth_ = auth_step::plain_sent;
      } else {
        write("AUTH PLAIN\r\n", expect::auth);
        auth_ = auth_step::plain_challenge;
      }
      return;
    }
    if (caps_.auth_login) {
      write("AUTH LOGIN\r\n", expect::auth);
      auth_ = auth_step::login_user;
      return;
    }
    fail(failure_cause::auth_unavailable,
         synthetic(451, "4.7.0", "The server offers neither AUTH PLAIN nor AUTH LOGIN"), false,
         last_phase_, true);
  }

  void start_oauth() {
    const bool x = options_.auth_mechanism == sasl_mechanism::xoauth2;
    const std::string name = x ? "XOAUTH2" : "OAUTHBEARER";
    if (!(x ? caps_.auth_xoauth2 : caps_.auth_oauthbearer)) {
      fail(failure_cause::auth_unavailable,
           synthetic(451, "4.7.0", "The server does not offer AUTH " + name), false, last_phase_,
           true);
      return;
    }
    const std::string response = oauth_response();
    if (name.size() + response.size() + 8 <= max_command_line) {
      write("AUTH " + name + " " + response + "\r\n", expect::auth);
      auth_ = auth_step::oauth_sent;
    } else {
      write("AUTH " + name + "\r\n", expect::auth);
      auth_ = auth_step::oauth_challenge;
    }
  }

  std::string oauth_response() const {
    const auto& u = options_.auth_user;
    const auto& t = options_.auth_password;
    return base64::encode(options_.auth_mechanism == sasl_mechanism::xoauth2
                              ? xoauth2_response(u, t)
                              : oauthbearer_response(u, t));
  }

  // RFC 4616: authzid (empty) NUL authcid NUL passwd.
  std::string plain_response() const {
    std::string message;
    message.reserve(options_.auth_user.size() + options_.auth_password.size() + 2);
    message.push_back('\0');
    message += options_.auth_user;
    message.push_back('\0');
    message += options_.auth_password;
    return base64::encode(message);
  }

  void on_greeting(const reply& r) {
    greeting_ = r;
    switch (reply_class(r)) {
      case 2:
        send_ehlo();
        return;
      case 4:
      case 5:
        fail(failure_cause::greeting_refused, r, true, client_phase::greeting, r.code != 421);
        return;
      default:
        protocol_error("unexpected greeting " + r.to_string());
    }
  }

  void on_ehlo(const reply& r) {
    switch (reply_class(r)) {
      case 2:
        caps_ = parse_capabilities(r);
        after_hello();
        return;
      case 5: {  // RFC 5321 3.2: an old server; try HELO
        command c;
        c.what = verb::helo;
        c.argument = options_.helo_name;
        write(c.encode(), expect::helo);
        return;
      }
      case 4:
        fail(failure_cause::hello_refused, r, true, client_phase::ehlo, true);
        return;
      default:
        protocol_error("unexpected reply to EHLO " + r.to_string());
    }
  }

  void on_helo(const reply& r) {
    switch (reply_class(r)) {
      case 2:
        caps_ = server_capabilities{};
        after_hello();
        return;
      case 4:
      case 5:
        fail(failure_cause::hello_refused, r, true, client_phase::helo, true);
        return;
      default:
        protocol_error("unexpected reply to HELO " + r.to_string());
    }
  }

  void on_starttls(const reply& r) {
    switch (reply_class(r)) {
      case 2:
        state_ = state::tls_handshake;
        event_ = event::start_tls;
        return;
      case 4:
      case 5:
        if (options_.require_tls) {
          fail(failure_cause::tls_unavailable, r, true, client_phase::starttls, true);
          return;
        }
        tls_refused_ = true;
        after_hello();
        return;
      default:
        protocol_error("unexpected reply to STARTTLS " + r.to_string());
    }
  }

  void on_auth(const reply& r) {
    if (reply_class(r) == 2) {
      authenticated_ = true;
      auth_ = auth_step::none;
      event_ = event::ready;
      return;
    }
    if (r.code == 334) {
      switch (auth_) {
        case auth_step::plain_challenge:
          write(plain_response() + "\r\n", expect::auth);
          auth_ = auth_step::plain_sent;
          return;
        case auth_step::login_user:
          write(base64::encode(options_.auth_user) + "\r\n", expect::auth);
          auth_ = auth_step::login_password;
          return;
        case auth_step::login_password:
          write(base64::encode(options_.auth_password) + "\r\n", expect::auth);
          auth_ = auth_step::login_sent;
          return;
        case auth_step::oauth_challenge:
          write(oauth_response() + "\r\n", expect::auth);
          auth_ = auth_step::oauth_sent;
          return;
        case auth_step::oauth_sent:  // the error challenge (JSON): acknowledge, get the 5xx
          write(options_.auth_mechanism == sasl_mechanism::xoauth2
                    ? std::string("\r\n")
                    : base64::encode(oauthbearer_error_ack) + "\r\n",
                expect::auth);
          auth_ = auth_step::oauth_error_ack;
          return;
        default:
          protocol_error("unexpected 334 challenge to AUTH");
          return;
      }
    }
    auth_ = auth_step::none;
    switch (reply_class(r)) {
      case 4:
        fail(failure_cause::auth_temporary, r, true, client_phase::auth, true);
        return;
      case 5:
        fail(failure_cause::auth_rejected, r, true, client_phase::auth, true);
        return;
      default:
        protocol_error("unexpected reply to AUTH " + r.to_string());
    }
  }

  // ---- transaction ------------------------------------------------------------

  void send_rcpt(std::size_t i) {
    command c;
    c.what = verb::rcpt;
    c.path = result_.recipients[i].address;
    if (caps_.dsn && i < dsn_.size()) {
      c.notify = dsn_[i].notify;
      c.orcpt = dsn_[i].orcpt;
    }
    write(c.encode(), expect::rcpt, i);
  }

  void send_rset() { write("RSET\r\n", expect::rset); }

  // Lock-step mode (MAIL was accepted), once every RCPT has its reply.
  void after_rcpts() {
    if (accepted_count_ == 0) {
      send_rset();  // the server holds an open transaction
    } else {
      write("DATA\r\n", expect::data);
    }
  }

  void on_mail(const reply& r) {
    switch (reply_class(r)) {
      case 2:
        if (!pipelined_) send_rcpt(to_send_[next_rcpt_++]);
        return;
      case 4:
      case 5:
        mail_refused_ = true;
        decide_open(r, true, client_phase::mail);
        // Pipelined RCPTs and DATA still get (meaningless) replies; on_data() ends it.
        if (!pipelined_) finish();
        return;
      default:
        protocol_error("unexpected reply to MAIL " + r.to_string());
    }
  }

  void on_rcpt(const reply& r, std::size_t i) {
    if (!mail_refused_) {
      switch (reply_class(r)) {
        case 2:
          if (!accepted_[i]) ++accepted_count_;
          accepted_[i] = true;
          result_.recipients[i].response = r;
          result_.recipients[i].in_reply_to = client_phase::rcpt;
          break;
        case 4:
        case 5:
          decide(i, r, true, client_phase::rcpt);
          break;
        default:
          protocol_error("unexpected reply to RCPT " + r.to_string());
          return;
      }
    }
    if (pipelined_) return;  // the pipelined DATA's reply comes next
    if (next_rcpt_ < to_send_.size()) {
      send_rcpt(to_send_[next_rcpt_++]);
    } else {
      after_rcpts();
    }
  }

  void on_data(const reply& r) {
    switch (reply_class(r)) {
      case 3:
        if (mail_refused_ || accepted_count_ == 0) {
          // Pipelined DATA accepted although no recipient was (RFC 2920 3.1):
          // end it with a lone dot; every recipient already has its reply.
          write(".\r\n", expect::dot);
          return;
        }
        state_ = state::body;
        terminator_queued_ = false;
        fill_body();
        return;
      case 4:
      case 5:
        if (mail_refused_) {  // pipelined: nothing is open at the server
          finish();
          return;
        }
        decide_open(r, true, client_phase::data);
        send_rset();
        return;
      default:
        protocol_error("unexpected reply to DATA " + r.to_string());
    }
  }

  // Next chunk of stuffed content into out_; the terminator with the last one.
  void fill_body() {
    if (terminator_queued_) {
      // The chunk holding the terminator has been written: wait for the reply.
      state_ = state::dialogue;
      return;
    }
    const std::size_t n = std::min(options_.body_chunk_size, body_.size() - body_pos_);
    stuffer_.put(body_.substr(body_pos_, n), out_);
    body_pos_ += n;
    if (body_pos_ == body_.size()) {
      stuffer_.finish(out_);
      pending_.push_back({expect::dot});
      terminator_queued_ = true;
    }
  }

  void on_dot(const reply& r) {
    switch (reply_class(r)) {
      case 2:
      case 4:
      case 5:
        decide_open(r, true, client_phase::dot);
        finish();
        return;
      default:
        protocol_error("unexpected reply to end of data " + r.to_string());
    }
  }

  void on_rset(const reply& r) {
    if (reply_class(r) != 2) {
      // The server's state is unknown: no further transaction on this connection.
      close();
      out_ += "QUIT\r\n";
    }
    finish();
  }

  // ---- replies ----------------------------------------------------------------

  void on_reply(const reply& r) {
    const client_phase where = phase();
    last_phase_ = where;
    if (in_txn_ && is_throttling(r)) result_.destination_throttled = true;
    if (pending_.empty()) {  // unsolicited (while idle, or during the content)
      if (r.code == 421) {
        service_closing(r, where, in_txn_);
      } else {
        protocol_error("unexpected reply " + r.to_string());
      }
      return;
    }
    const pending p = pending_.front();
    pending_.pop_front();
    if (r.code == 421 && p.what != expect::quit && p.what != expect::greeting) {
      service_closing(r, where, true);
      return;
    }
    switch (p.what) {
      case expect::greeting:
        return on_greeting(r);
      case expect::ehlo:
        return on_ehlo(r);
      case expect::helo:
        return on_helo(r);
      case expect::starttls:
        return on_starttls(r);
      case expect::auth:
        return on_auth(r);
      case expect::mail:
        return on_mail(r);
      case expect::rcpt:
        return on_rcpt(r, p.index);
      case expect::data:
        return on_data(r);
      case expect::dot:
        return on_dot(r);
      case expect::rset:
        return on_rset(r);
      case expect::quit:
        close();
        event_ = event::closed;
        return;
    }
  }

  event take_event() {
    const event e = *event_;
    event_.reset();
    return e;
  }

  step feed(std::string_view in) {
    if (state_ == state::closed) return {0, event::closed};
    std::size_t consumed = 0;
    while (true) {
      if (consumed == in.size()) return {consumed, event::need_more};
      last_phase_ = phase();
      if (state_ == state::tls_handshake) {
        // Plaintext after the 220 to STARTTLS: a response injection attempt.
        protocol_error("data received before the TLS handshake");
        return {consumed, take_event()};
      }
      const auto r = parser_.put(in.substr(consumed));
      consumed += r.consumed;
      if (r.what == reply_parser::status::need_more) continue;
      if (r.what == reply_parser::status::error) {
        protocol_error(to_string(parser_.failure()));
      } else {
        on_reply(parser_.get());
      }
      if (event_) {
        if (*event_ == event::start_tls && consumed < in.size()) {
          event_.reset();
          protocol_error("data received before the TLS handshake");
        }
        return {consumed, take_event()};
      }
      if (state_ == state::closed) return {consumed, event::closed};
      // The content goes out before anything else is read.
      if (state_ == state::body) return {consumed, event::need_more};
    }
  }

  event send(const outgoing_message& m) {
    assert(phase() == client_phase::ready && "send() outside phase ready");
    in_txn_ = true;
    result_ = transaction_result{};
    const std::size_t n = m.recipients.size();
    result_.recipients.reserve(n);
    for (const auto& address : m.recipients) {
      recipient_result rr;
      rr.address = address;
      rr.in_reply_to = client_phase::rcpt;
      result_.recipients.push_back(std::move(rr));
    }
    decided_.assign(n, false);
    accepted_.assign(n, false);
    to_send_.clear();
    next_rcpt_ = 0;
    accepted_count_ = 0;
    mail_refused_ = false;
    pipelined_ = caps_.pipelining;
    dsn_ = m.dsn;
    body_ = m.body;
    body_pos_ = 0;
    terminator_queued_ = false;
    stuffer_.reset();

    if (phase() != client_phase::ready) {  // misuse in a release build: nothing is sent
      decide_open(synthetic(451, "4.3.0", "SMTP client not ready"), false, phase());
      finish();
      return take_event();
    }
    if (m.requiretls && !tls_active_) {
      decide_open(synthetic(550, "5.7.10", "REQUIRETLS: the connection is not encrypted"), false,
                  client_phase::mail);
    } else if (m.requiretls && !caps_.requiretls) {
      decide_open(synthetic(550, "5.7.30", "REQUIRETLS: the server does not offer REQUIRETLS"),
                  false, client_phase::mail);
    } else if (m.smtputf8 && !caps_.smtputf8) {
      // RFC 6531 3.2: no downgrade; the message cannot go to this server.
      decide_open(synthetic(553, "5.6.7", "SMTPUTF8 is required, but the server does not offer it"),
                  false, client_phase::mail);
    } else if (caps_.size && caps_.max_size != 0 && m.size > caps_.max_size) {
      decide_open(synthetic(552, "5.3.4",
                            "Message size exceeds remote limit of " +
                                std::to_string(caps_.max_size) + " octets"),
                  false, client_phase::mail);
    } else if (!sendable_path(m.sender, false)) {
      decide_open(synthetic(501, "5.1.7", "Bad sender address syntax"), false, client_phase::mail);
    }
    for (std::size_t i = 0; i < n; ++i) {
      if (decided_[i]) continue;
      if (sendable_path(m.recipients[i], true)) {
        to_send_.push_back(i);
      } else {
        decide(i, synthetic(501, "5.1.3", "Bad recipient address syntax"), false,
               client_phase::rcpt);
      }
    }
    if (to_send_.empty()) {
      finish();
      return take_event();
    }
    command mail;
    mail.what = verb::mail;
    mail.path = m.sender;
    if (caps_.size) mail.size = m.size;
    if (m.body_8bit && caps_.eight_bit_mime) mail.body = body_type::eight_bit_mime;
    mail.smtputf8 = m.smtputf8;
    mail.requiretls = m.requiretls;
    if (caps_.dsn) {
      mail.ret = m.ret;
      mail.envid = m.envid;
    }
    write(mail.encode(), expect::mail);
    if (pipelined_) {
      // RFC 2920 3.1: DATA may end the group; its reply is read after theirs.
      for (std::size_t i : to_send_) send_rcpt(i);
      write("DATA\r\n", expect::data);
    }
    return event::need_more;
  }

  event connection_lost(std::string_view why) {
    if (state_ == state::closed) return event::closed;
    const client_phase where = phase();
    if (where == client_phase::quit) {
      close();
      return event::closed;
    }
    reply r = synthetic(451, "4.4.2",
                        "Connection lost: " + std::string(why) + " (in phase " +
                            std::string(to_string(where)) + ")");
    if (in_txn_) {
      decide_open(r, false, where);
      close();
      finish();
    } else {
      fail(failure_cause::connection_lost, std::move(r), false, where, false);
    }
    return take_event();
  }
};

client_session::client_session(client_options options)
    : impl_(std::make_unique<impl>(std::move(options))) {}

client_session::~client_session() = default;

client_session::step client_session::feed(std::string_view in) {
  return impl_->feed(in);
}

const std::string& client_session::output() const {
  return impl_->out_;
}

void client_session::clear_output() {
  impl_->out_.clear();
  if (impl_->state_ == impl::state::body) impl_->fill_body();
}

void client_session::tls_established() {
  assert(impl_->state_ == impl::state::tls_handshake && "tls_established() without start_tls");
  if (impl_->state_ != impl::state::tls_handshake) return;
  impl_->state_ = impl::state::dialogue;
  impl_->tls_active_ = true;
  impl_->caps_ = server_capabilities{};  // RFC 3207 4.2: forget what was said in clear
  impl_->parser_.reset();
  impl_->send_ehlo();
}

client_session::event client_session::send(const outgoing_message& message) {
  return impl_->send(message);
}

void client_session::quit() {
  if (impl_->state_ == impl::state::closed) return;
  assert(impl_->phase() == client_phase::ready && "quit() outside phase ready");
  impl_->write("QUIT\r\n", impl::expect::quit);
}

client_session::event client_session::connection_lost(std::string_view why) {
  return impl_->connection_lost(why);
}

client_phase client_session::phase() const {
  return impl_->phase();
}

const server_capabilities& client_session::capabilities() const {
  return impl_->caps_;
}

bool client_session::tls_active() const {
  return impl_->tls_active_;
}

bool client_session::authenticated() const {
  return impl_->authenticated_;
}

const reply& client_session::greeting() const {
  return impl_->greeting_;
}

std::size_t client_session::transactions() const {
  return impl_->transactions_;
}

transaction_result client_session::take_result() {
  return std::exchange(impl_->result_, transaction_result{});
}

const connection_failure& client_session::failure() const {
  return impl_->failure_;
}

}  // namespace smtp
