// The inbound ESMTP state machine (see server_session.hpp). Each verb has a check
// step (may it run now, with these arguments?) returning the refusal, and a
// proceed step that changes state and queues the positive reply, as in
// OpenSMTPD's smtp_session.c. Input errors become replies; after max_errors 5xx
// replies to commands, a
// QUIT, a bare CR/LF in DATA, max_auth_failures failed AUTHs, a timeout or a
// shutdown, feed() returns close. AUTH responses (RFC 4954 4) are lines read
// while auth_step_ is set; they never reach on_reject. BDAT (RFC 3030) reads
// exactly its chunk's octets in phase::chunk, also when the command is refused,
// so chunk data is never read as commands.
#include "smtp/server_session.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <cassert>
#include <chrono>
#include <optional>
#include <utility>

#include "smtp/address.hpp"
#include "smtp/base64.hpp"
#include "smtp/chunk_reader.hpp"
#include "smtp/command.hpp"
#include "smtp/content_buffer.hpp"
#include "smtp/dot_reader.hpp"
#include "smtp/line_reader.hpp"
#include "smtp/message.hpp"
#include "smtp/replies.hpp"
#include "smtp/text.hpp"

namespace smtp {
namespace {

using text::iequals;

// `word` (any case) and then a space or the end of the line.
bool starts_with_word(std::string_view line, std::string_view word) {
  return text::istarts_with(line, word) &&
         (line.size() == word.size() || line[word.size()] == ' ');
}

// What on_reject may see of a command line: AUTH's initial response is a secret.
std::string_view loggable(std::string_view line) {
  if (!starts_with_word(line, "AUTH")) return line;
  const std::size_t mech_end = line.find(' ', 5);
  return line.substr(0, mech_end);
}

// Overwrites a secret before its memory is released or reused.
void wipe(std::string& s) {
  volatile char* p = s.data();
  for (std::size_t i = 0; i < s.size(); ++i) p[i] = 0;
  s.clear();
}

// RFC 4954 4: "=" is an empty response; anything else is base64.
std::optional<std::string> decode_response(std::string_view in) {
  if (in == "=") return std::string();
  return base64::decode(in);
}

// "BDAT" SP chunk-size [ SP "LAST" ] (RFC 3030 3), as command::parse left the
// argument: trimmed, case-insensitive LAST.
struct bdat_argument {
  std::uint64_t size;
  bool last;
};
std::optional<bdat_argument> parse_bdat(std::string_view arg) {
  const std::size_t sp = arg.find(' ');
  const std::string_view digits = arg.substr(0, sp);
  // At most 20 digits: the length of UINT64_MAX.
  const auto size = digits.size() <= 20 ? text::parse_decimal(digits) : std::nullopt;
  if (!size) return std::nullopt;
  if (sp == std::string_view::npos) return bdat_argument{*size, false};
  if (!iequals(text::trim(arg.substr(sp + 1)), "LAST")) return std::nullopt;
  return bdat_argument{*size, true};
}

constexpr std::string_view username_prompt = "VXNlcm5hbWU6";  // "Username:"
constexpr std::string_view password_prompt = "UGFzc3dvcmQ6";  // "Password:"

std::string fallback_id(std::int64_t now) {
  static std::atomic<std::uint64_t> counter{0};
  static constexpr char hex[] = "0123456789ABCDEF";
  const std::uint64_t parts[2] = {static_cast<std::uint64_t>(now), counter.fetch_add(1)};
  std::string id;
  for (std::uint64_t part : parts) {
    for (int shift = 60; shift >= 0; shift -= 4) id.push_back(hex[(part >> shift) & 0xf]);
  }
  return id;
}

}  // namespace

struct server_session::impl {
  enum class phase { command, data, chunk, message_pending, tls_pending, auth_pending, closed };
  // Where an AUTH exchange is: which response the next line is.
  enum class auth_step { none, plain, login_user, login_password };

  using check_step = std::optional<reply> (impl::*)(const command&);
  using proceed_step = void (impl::*)(const command&);
  struct handler {
    verb what;
    check_step check;
    proceed_step proceed;
  };

  impl(session_options o, client_info c)
      : options_(std::move(o)),
        client_(std::move(c)),
        dot_(options_.max_message_size, options_.max_line_length),
        chunks_(options_.max_message_size),
        tls_(options_.tls_active) {}
  ~impl() { wipe(auth_password_); }

  session_options options_;
  client_info client_;
  line_reader lines_{line_reader::default_limit};
  dot_reader dot_;
  std::string out_;
  phase state_ = phase::command;

  bool greeted_ = false;  // EHLO or HELO accepted
  bool esmtp_ = false;
  std::string helo_;

  bool in_mail_ = false;
  bool rcpt_attempted_ = false;  // a RCPT was tried in this transaction (even if refused)
  envelope env_;
  std::string id_;
  std::string message_;
  std::optional<reply> refusal_;  // refuse_message(): the answer to this DATA

  // BDAT. A transaction's chunks go into chunks_ until the LAST one.
  chunk_reader chunks_;
  bool bdat_ = false;                  // this transaction has used BDAT: DATA is refused
  std::optional<reply> bdat_refusal_;  // its content was refused: the answer to this or the
                                       // next chunk, which ends the transaction
  // The chunk being read (phase::chunk).
  std::uint64_t chunk_left_ = 0;
  std::uint64_t chunk_size_ = 0;
  bool chunk_last_ = false;
  bool chunk_stored_ = false;          // false: the command was refused, its octets are dropped
  std::optional<reply> chunk_reply_;   // the refusal sent once the octets are read
  bool chunk_reply_is_error_ = false;  // it counts towards max_errors
  std::string chunk_command_;          // for on_reject
  // After a failed BDAT, chunks the client pipelined before it saw the failure
  // are read, dropped and answered with it (RFC 3030 2), up to a LAST.
  std::optional<reply> after_failed_bdat_;

  std::size_t errors_ = 0;
  std::uint64_t input_generation_ = 0;  // see progress()
  std::size_t accepted_ = 0;
  bool shutdown_pending_ = false;

  bool tls_ = false;
  auth_step auth_step_ = auth_step::none;
  std::string auth_mechanism_;  // "PLAIN", "LOGIN": for the log
  std::string auth_user_;       // the credentials of the exchange in progress
  std::string auth_password_;
  std::string authenticated_user_;  // non-empty once AUTH succeeded
  std::size_t auth_failures_ = 0;

  // ---- replies -------------------------------------------------------------

  void send(const reply& r, std::string_view cause) {
    out_ += r.encode();
    if (r.code >= 400 && options_.on_reject) options_.on_reject(r, cause);
  }

  void close_with(const reply& r) {
    send(r, {});
    state_ = phase::closed;
  }

  // A refusal caused by the client; enough permanent ones end the session.
  void reject(const reply& r, std::string_view cause) {
    send(r, cause);
    if (r.code >= 500 && ++errors_ >= options_.max_errors) close_with(replies::too_many_errors());
  }

  void end_transaction() {
    in_mail_ = false;
    rcpt_attempted_ = false;
    env_ = envelope{};
    id_.clear();
    message_.clear();
    bdat_ = false;
    bdat_refusal_.reset();
    after_failed_bdat_.reset();
    chunks_.discard();  // frees what a refused or unfinished BDAT transfer held
  }

  // A pending graceful stop happens as soon as no transaction is open.
  void settle_shutdown() {
    if (shutdown_pending_ && !in_mail_ && state_ != phase::closed) {
      close_with(replies::shutting_down());
    }
  }

  std::int64_t now() const {
    if (options_.now) return options_.now();
    return std::chrono::duration_cast<std::chrono::seconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  }

  // ---- check steps: the refusal, or nullopt when the command may proceed ----

  std::optional<reply> check_none(const command&) { return std::nullopt; }

  // RFC 8689 2: REQUIRETLS only where the submission itself cannot be read on
  // the wire: under TLS, or on the local submission socket (and sendmail -bs),
  // whose bytes never leave the host.
  bool requiretls_offered() const { return tls_ || client_.local.has_value(); }

  std::optional<reply> check_mail(const command& c) {
    if (!greeted_) return replies::need_helo();
    if (options_.auth_required && authenticated_user_.empty()) return replies::auth_required();
    if (in_mail_) return replies::nested_mail();
    if (c.size && *c.size > options_.max_message_size) return replies::message_too_big();
    if (!c.smtputf8 && !is_ascii(c.path)) return replies::needs_smtputf8();
    if (c.requiretls && (!esmtp_ || !requiretls_offered()))
      return replies::requiretls_not_offered();
    if (options_.check_sender) return options_.check_sender(c.path);
    return std::nullopt;
  }

  std::optional<reply> check_rcpt(const command& c) {
    if (!greeted_) return replies::need_helo();
    if (!in_mail_) return replies::need_mail();
    rcpt_attempted_ = true;
    if (!env_.smtputf8 && !is_ascii(c.path)) return replies::needs_smtputf8();
    if (c.path.find('@') == std::string::npos) return replies::no_local_delivery();
    if (!client_.relay_allowed && authenticated_user_.empty()) return replies::relay_denied();
    if (env_.recipients.size() >= options_.max_recipients) return replies::too_many_recipients();
    if (options_.check_recipient) return options_.check_recipient(c.path);
    return std::nullopt;
  }

  // Whether message content (DATA or BDAT) may come now.
  std::optional<reply> check_content_allowed() const {
    if (!greeted_) return replies::need_helo();
    if (!in_mail_) return replies::need_mail();
    if (env_.recipients.empty()) {
      return rcpt_attempted_ ? replies::no_valid_recipients() : replies::need_rcpt();
    }
    return std::nullopt;
  }

  std::optional<reply> check_data(const command&) {
    if (auto r = check_content_allowed()) return r;
    if (bdat_) return replies::data_after_bdat();
    return std::nullopt;
  }

  // Only the argument: a BDAT with a readable size is followed by its octets,
  // which proceed_bdat reads even when it refuses the command.
  std::optional<reply> check_bdat(const command& c) {
    if (!parse_bdat(c.argument)) return replies::bdat_syntax();
    return std::nullopt;
  }

  std::optional<reply> check_starttls(const command& c) {
    if (!options_.starttls) return replies::not_implemented();
    if (tls_) return replies::tls_already_active();
    if (!c.argument.empty()) return replies::no_arguments_allowed();
    if (in_mail_) return replies::in_transaction();
    return std::nullopt;
  }

  bool auth_offered() const { return options_.auth && (tls_ || options_.auth_without_tls); }

  // The argument is "MECHANISM [initial-response]".
  std::optional<reply> check_auth(const command& c) {
    if (!options_.auth) return replies::not_implemented();
    if (!greeted_) return replies::need_helo();
    if (!authenticated_user_.empty()) return replies::already_authenticated();
    if (in_mail_) return replies::in_transaction();
    const std::string_view arg = c.argument;
    const std::size_t space = arg.find(' ');
    const std::string_view mechanism = arg.substr(0, space);
    if (mechanism.empty()) return replies::auth_syntax();
    if (space != std::string_view::npos && arg.find(' ', space + 1) != std::string_view::npos)
      return replies::auth_syntax();
    if (!iequals(mechanism, "PLAIN") && !iequals(mechanism, "LOGIN"))
      return replies::auth_mechanism_unknown();
    if (!auth_offered()) return replies::encryption_required();
    if (space != std::string_view::npos && !decode_response(arg.substr(space + 1)))
      return replies::auth_bad_base64();
    return std::nullopt;
  }

  // ---- proceed steps: change state, queue the positive reply ----------------

  void proceed_ehlo(const command& c) {
    end_transaction();  // EHLO/HELO reset the transaction (RFC 5321 4.1.4)
    greeted_ = true;
    esmtp_ = c.what == verb::ehlo;
    helo_ = c.argument;
    send(esmtp_ ? replies::ehlo(options_.hostname, options_.max_message_size,
                                options_.starttls && !tls_, auth_offered(),
                                requiretls_offered())
                : replies::helo(options_.hostname),
         {});
  }

  void proceed_mail(const command& c) {
    in_mail_ = true;
    env_ = envelope{};
    env_.sender = c.path;
    env_.body = c.body.value_or(body_type::seven_bit);
    env_.smtputf8 = c.smtputf8;
    env_.requiretls = c.requiretls;
    env_.declared_size = c.size.value_or(0);
    env_.ret = c.ret;
    env_.envid = c.envid;
    env_.client_ip = client_.ip;
    env_.helo = helo_;
    env_.local = client_.local;
    send(replies::sender_ok(), {});
  }

  // A recipient given twice is accepted once, so it is delivered once.
  void proceed_rcpt(const command& c) {
    const auto same = [&](const envelope_recipient& r) { return r.address == c.path; };
    if (std::none_of(env_.recipients.begin(), env_.recipients.end(), same))
      env_.recipients.push_back({.address = c.path, .notify = c.notify, .orcpt = c.orcpt});
    send(replies::recipient_ok(), {});
  }

  void proceed_data(const command&) {
    dot_.reset(static_cast<std::size_t>(env_.declared_size));
    refusal_.reset();
    state_ = phase::data;
    ++input_generation_;
    send(replies::start_data(), {});
  }

  // RFC 3030: the reply to a BDAT comes once its octets are read.
  void proceed_bdat(const command& c) {
    const bdat_argument arg = *parse_bdat(c.argument);
    chunk_size_ = chunk_left_ = arg.size;
    chunk_last_ = arg.last;
    chunk_stored_ = false;
    chunk_reply_.reset();
    chunk_reply_is_error_ = false;
    chunk_command_ = "BDAT " + c.argument;
    if (in_mail_) after_failed_bdat_.reset();  // a new transaction began
    if (after_failed_bdat_) {
      chunk_reply_ = after_failed_bdat_;
      if (chunk_last_) after_failed_bdat_.reset();
    } else if (auto refusal = check_content_allowed()) {
      chunk_reply_ = std::move(refusal);
      chunk_reply_is_error_ = true;
    } else {
      if (!bdat_) {
        bdat_ = true;
        chunks_.reset(static_cast<std::size_t>(env_.declared_size));
      }
      chunk_stored_ = true;
      // Known before a single octet: the octets are still read, then refused.
      const std::uint64_t limit = options_.max_message_size;
      const std::uint64_t room = limit - std::min<std::uint64_t>(chunks_.received(), limit);
      if (arg.size > room) refuse_chunks(replies::message_too_big());
    }
    if (chunk_left_ == 0) {
      end_chunk();
      return;
    }
    state_ = phase::chunk;
    ++input_generation_;
  }

  // The transaction's content is lost; the current or next chunk says `r`.
  void refuse_chunks(const reply& r) {
    if (!bdat_refusal_) bdat_refusal_ = r;
    chunks_.discard();
  }

  void end_chunk() {
    state_ = phase::command;
    if (chunk_reply_) {
      if (chunk_reply_is_error_) {
        reject(*chunk_reply_, chunk_command_);
      } else {
        send(*chunk_reply_, {});
      }
      settle_shutdown();
      return;
    }
    if (chunks_.too_big()) refuse_chunks(replies::message_too_big());
    if (bdat_refusal_) {
      const reply r = *bdat_refusal_;
      data_refused(r);
      if (!chunk_last_ && state_ != phase::closed) after_failed_bdat_ = r;
      return;
    }
    if (chunk_last_) {
      chunks_.end();
      if (chunks_.too_big()) {
        data_refused(replies::message_too_big());
        return;
      }
      finish_message(chunks_.take_content());
      return;
    }
    send(replies::chunk_received(chunk_size_), {});
  }

  void proceed_rset(const command&) {
    end_transaction();
    send(replies::ok(), {});
  }

  void proceed_noop(const command&) { send(replies::ok(), {}); }
  void proceed_vrfy(const command&) { send(replies::cannot_vrfy(), {}); }
  void proceed_help(const command&) { send(replies::help(), {}); }
  void proceed_quit(const command&) { close_with(replies::closing()); }

  // The pump writes the 220, drops what the client sent after this line, and
  // calls tls_started() after the handshake.
  void proceed_starttls(const command&) {
    send(replies::ready_to_start_tls(), {});
    state_ = phase::tls_pending;
  }

  void proceed_auth(const command& c) {
    const std::string_view arg = c.argument;
    const std::size_t space = arg.find(' ');
    const bool plain = iequals(arg.substr(0, space), "PLAIN");
    auth_mechanism_ = plain ? "PLAIN" : "LOGIN";
    auth_step_ = plain ? auth_step::plain : auth_step::login_user;
    if (space == std::string_view::npos) {
      challenge(plain ? std::string_view() : username_prompt);
      return;
    }
    std::optional<std::string> initial = decode_response(arg.substr(space + 1));
    assert(initial && "checked in check_auth");
    auth_response(*initial);
    wipe(*initial);
  }

  // "334 SP base64 CRLF" (RFC 4954 4). Written here because reply::encode drops the
  // space of an empty text, and PLAIN's challenge is empty.
  void challenge(std::string_view base64_text) {
    out_ += "334 ";
    out_ += base64_text;
    out_ += "\r\n";
  }

  // One decoded response of the exchange; the caller wipes it.
  void auth_response(const std::string& response) {
    switch (auth_step_) {
      case auth_step::plain: {
        // authzid NUL authcid NUL passwd (RFC 4616); acting for another user
        // (authzid != authcid) is not supported and fails like a wrong password.
        const std::size_t a = response.find('\0');
        const std::size_t b = a == std::string::npos ? a : response.find('\0', a + 1);
        if (b != std::string::npos && response.find('\0', b + 1) == std::string::npos) {
          const std::string_view authzid(response.data(), a);
          const std::string_view authcid(response.data() + a + 1, b - a - 1);
          if (authzid.empty() || authzid == authcid) {
            auth_user_ = authcid;
            auth_password_.assign(response, b + 1);
          }
        }
        auth_step_ = auth_step::none;
        state_ = phase::auth_pending;
        return;
      }
      case auth_step::login_user:
        auth_user_ = response;
        auth_step_ = auth_step::login_password;
        challenge(password_prompt);
        return;
      case auth_step::login_password:
        auth_password_ = response;
        auth_step_ = auth_step::none;
        state_ = phase::auth_pending;
        return;
      case auth_step::none:
        break;
    }
    assert(false && "AUTH response outside an exchange");
  }

  // A line while an AUTH exchange waits for a response: "*" cancels.
  void handle_auth_line(std::string_view line) {
    if (line == "*") {
      abort_auth();
      reject(replies::auth_cancelled(), "AUTH " + auth_mechanism_ + " (cancelled)");
      return;
    }
    std::optional<std::string> decoded = decode_response(line);
    if (!decoded) {
      abort_auth();
      reject(replies::auth_bad_base64(), "AUTH " + auth_mechanism_ + " (response)");
      return;
    }
    auth_response(*decoded);
    wipe(*decoded);
  }

  void abort_auth() {
    auth_step_ = auth_step::none;
    auth_user_.clear();
    wipe(auth_password_);
  }

  // Indexed by verb; the order must follow enum class verb.
  static constexpr std::array<handler, 13> table{{
      {verb::ehlo, &impl::check_none, &impl::proceed_ehlo},
      {verb::helo, &impl::check_none, &impl::proceed_ehlo},
      {verb::mail, &impl::check_mail, &impl::proceed_mail},
      {verb::rcpt, &impl::check_rcpt, &impl::proceed_rcpt},
      {verb::data, &impl::check_data, &impl::proceed_data},
      {verb::rset, &impl::check_none, &impl::proceed_rset},
      {verb::noop, &impl::check_none, &impl::proceed_noop},
      {verb::quit, &impl::check_none, &impl::proceed_quit},
      {verb::vrfy, &impl::check_none, &impl::proceed_vrfy},
      {verb::help, &impl::check_none, &impl::proceed_help},
      {verb::starttls, &impl::check_starttls, &impl::proceed_starttls},
      {verb::auth, &impl::check_auth, &impl::proceed_auth},
      {verb::bdat, &impl::check_bdat, &impl::proceed_bdat},
  }};

  void handle_line(std::string_view line) {
    if (auth_step_ != auth_step::none) {
      handle_auth_line(line);
      return;
    }
    // Local submission: "<root>" is read as "<root@qualify_domain>".
    std::optional<std::string> qualified;
    if (!options_.qualify_domain.empty())
      qualified = qualify_local_part(line, options_.qualify_domain);
    auto parsed = command::parse(qualified ? std::string_view(*qualified) : line);
    if (!parsed) {
      if (in_mail_ && starts_with_word(line, "RCPT")) rcpt_attempted_ = true;
      reject(to_reply(parsed.error()), loggable(line));
      return;
    }
    const handler& h = table[static_cast<std::size_t>(parsed->what)];
    assert(h.what == parsed->what);
    if (auto refusal = (this->*h.check)(*parsed)) {
      // Going over the recipient limit is the client's normal way to learn it
      // (RFC 5321 4.5.3.1.10), not an error that should end the session.
      if (refusal->code == 452) {
        send(*refusal, loggable(line));
      } else {
        reject(*refusal, loggable(line));
      }
      return;
    }
    (this->*h.proceed)(*parsed);
  }

  // ---- end of DATA ------------------------------------------------------

  // `content` is DATA un-stuffed or BDAT chunks joined, CRLF line endings.
  void finish_message(std::string content) {
    if (header_block_end(content) > options_.max_header_size) {
      data_refused(replies::header_too_big());
      return;
    }
    const std::int64_t t = now();
    if (options_.new_id) id_ = options_.new_id();
    if (id_.empty()) id_ = fallback_id(t);
    received_info info;
    info.helo = helo_;
    info.client_hostname = client_.hostname;
    info.client_ip = client_.ip;
    info.local = client_.local;
    info.hostname = options_.hostname;
    info.esmtp = esmtp_;
    info.smtputf8 = env_.smtputf8;
    info.tls = tls_;
    info.authenticated = !authenticated_user_.empty();
    info.queue_id = id_;
    for (const auto& r : env_.recipients) info.recipients.push_back(r.address);
    info.time = t;
    message_ =
        build_message(content, received_header(info), t, make_message_id(id_, options_.hostname));
    state_ = phase::message_pending;
  }

  void data_refused(const reply& r) {
    send(r, {});
    end_transaction();
    state_ = phase::command;
    settle_shutdown();
  }

  step feed(std::string_view in) {
    assert(state_ != phase::message_pending && "feed() while a message is pending");
    assert(state_ != phase::tls_pending && "feed() before tls_started()");
    assert(state_ != phase::auth_pending && "feed() before auth_result()");
    std::size_t consumed = 0;
    while (true) {
      if (state_ == phase::closed) return {consumed, event::close};
      if (state_ == phase::message_pending) return {consumed, event::message};
      if (state_ == phase::tls_pending) return {consumed, event::starttls};
      if (state_ == phase::auth_pending) return {consumed, event::auth};
      if (consumed == in.size()) return {consumed, event::need_more};
      const std::string_view rest = in.substr(consumed);
      if (state_ == phase::chunk) {
        const std::size_t n = static_cast<std::size_t>(
            std::min<std::uint64_t>(chunk_left_, rest.size()));
        if (chunk_stored_) chunks_.put(rest.substr(0, n));
        consumed += n;
        chunk_left_ -= n;
        if (chunk_left_ == 0) end_chunk();
        continue;
      }
      if (state_ == phase::data) {
        const auto r = dot_.put(rest);
        consumed += r.consumed;
        switch (r.what) {
          case dot_reader::status::need_more:
            break;
          case dot_reader::status::complete:
            finish_message(dot_.take_content());
            break;
          case dot_reader::status::too_big:
            data_refused(refusal_ ? *refusal_ : replies::message_too_big());
            refusal_.reset();
            break;
          case dot_reader::status::line_too_long:
            data_refused(replies::message_line_too_long(options_.max_line_length));
            break;
          case dot_reader::status::bare_cr:
          case dot_reader::status::bare_lf:
            // The client and relayd may disagree on where the message ends; nothing
            // after this byte may be read as a command (SMTP smuggling).
            close_with(replies::bare_cr_or_lf_in_data());
            break;
        }
        continue;
      }
      if (!lines_.partial()) ++input_generation_;  // a new command line begins
      const auto r = lines_.put(rest);
      consumed += r.consumed;
      switch (r.what) {
        case line_reader::status::need_more:
          break;
        case line_reader::status::line:
          handle_line(lines_.line());
          settle_shutdown();
          break;
        case line_reader::status::too_long:
          if (auth_step_ != auth_step::none) abort_auth();
          reject(replies::line_too_long(), {});
          break;
        case line_reader::status::bare_lf:
          if (auth_step_ != auth_step::none) abort_auth();
          reject(replies::bare_lf(), {});
          break;
      }
    }
  }
};

server_session::server_session(session_options options, client_info client)
    : impl_(std::make_unique<impl>(std::move(options), std::move(client))) {}

server_session::~server_session() = default;

void server_session::start() {
  impl_->send(replies::greeting(impl_->options_.hostname), {});
}

server_session::step server_session::feed(std::string_view in) {
  return impl_->feed(in);
}

const std::string& server_session::output() const {
  return impl_->out_;
}

void server_session::clear_output() {
  impl_->out_.clear();
}

const envelope& server_session::message_envelope() const {
  return impl_->env_;
}

const std::string& server_session::message_id() const {
  return impl_->id_;
}

std::string server_session::take_message() {
  return std::exchange(impl_->message_, std::string());
}

void server_session::message_queued() {
  // A timeout() while the spool works may already have closed the session.
  assert(impl_->state_ == impl::phase::message_pending || impl_->state_ == impl::phase::closed);
  impl_->send(replies::queued(impl_->id_), {});
  ++impl_->accepted_;
  impl_->end_transaction();
  if (impl_->state_ != impl::phase::closed) impl_->state_ = impl::phase::command;
  impl_->settle_shutdown();
}

void server_session::message_failed(const reply& r) {
  assert(impl_->state_ == impl::phase::message_pending || impl_->state_ == impl::phase::closed);
  impl_->send(r, {});
  impl_->end_transaction();
  if (impl_->state_ != impl::phase::closed) impl_->state_ = impl::phase::command;
  impl_->settle_shutdown();
}

void server_session::tls_started() {
  impl& s = *impl_;
  assert(s.state_ == impl::phase::tls_pending);
  // RFC 3207 4.2: forget everything learnt from the client before TLS.
  s.tls_ = true;
  s.lines_.reset();
  s.greeted_ = false;
  s.esmtp_ = false;
  s.helo_.clear();
  s.end_transaction();
  s.abort_auth();
  s.authenticated_user_.clear();
  s.state_ = impl::phase::command;
}

bool server_session::tls_active() const {
  return impl_->tls_;
}

const std::string& server_session::auth_user() const {
  return impl_->auth_user_;
}

const std::string& server_session::auth_password() const {
  return impl_->auth_password_;
}

void server_session::auth_result(bool ok) {
  impl& s = *impl_;
  assert(s.state_ == impl::phase::auth_pending || s.state_ == impl::phase::closed);
  const std::string cause = "AUTH " + s.auth_mechanism_;
  if (s.state_ != impl::phase::closed) s.state_ = impl::phase::command;
  if (ok && !s.auth_user_.empty()) {
    s.authenticated_user_ = s.auth_user_;
    s.send(replies::auth_succeeded(), {});
  } else {
    s.send(replies::auth_failed(), cause);
    if (++s.auth_failures_ >= s.options_.max_auth_failures && s.state_ != impl::phase::closed)
      s.close_with(replies::too_many_auth_failures());
  }
  s.auth_user_.clear();
  wipe(s.auth_password_);
  s.settle_shutdown();
}

std::size_t server_session::auth_failures() const {
  return impl_->auth_failures_;
}

const std::string& server_session::authenticated_user() const {
  return impl_->authenticated_user_;
}

bool server_session::shutdown() {
  if (impl_->state_ == impl::phase::closed) return true;
  if (impl_->in_mail_) {
    impl_->shutdown_pending_ = true;
    return false;
  }
  impl_->close_with(replies::shutting_down());
  return true;
}

server_session::input_progress server_session::progress() const {
  const impl& s = *impl_;
  pending_input what = pending_input::none;
  if (s.state_ == impl::phase::data || s.state_ == impl::phase::chunk)
    what = pending_input::data;
  else if (s.state_ == impl::phase::command && s.lines_.partial())
    what = pending_input::command_line;
  return {what, s.input_generation_};
}

void server_session::timeout(timeout_kind kind) {
  if (impl_->state_ == impl::phase::closed) return;
  switch (kind) {
    case timeout_kind::idle:
      impl_->close_with(replies::idle_timeout());
      return;
    case timeout_kind::command:
      impl_->close_with(replies::command_timeout());
      return;
    case timeout_kind::data:
      impl_->close_with(replies::data_timeout());
      return;
  }
}

std::size_t server_session::buffered() const {
  const impl& s = *impl_;
  // Capacity, not size: what the allocator holds, including the SIZE= presize
  // and the slack of string growth (smtp.max_data_memory budgets memory). A
  // string short enough to live inside the object holds nothing beyond it.
  const auto held = [](const std::string& b) {
    return content_buffer::holds_memory(b) ? b.capacity() : 0;
  };
  if (s.state_ == impl::phase::data) return held(s.dot_.content());
  if (s.state_ == impl::phase::message_pending) return held(s.message_);
  if (s.bdat_) return held(s.chunks_.content());  // during and between chunks
  return 0;
}

void server_session::refuse_message(const reply& r) {
  impl& s = *impl_;
  if (s.state_ == impl::phase::data) {
    s.refusal_ = r;
    s.dot_.discard();
    return;
  }
  // A BDAT transfer, in a chunk or between two: the current or next chunk says r.
  if (s.bdat_ && (s.state_ == impl::phase::chunk || s.state_ == impl::phase::command))
    s.refuse_chunks(r);
}

bool server_session::in_transaction() const {
  return impl_->in_mail_;
}

bool server_session::closed() const {
  return impl_->state_ == impl::phase::closed;
}

std::size_t server_session::messages_accepted() const {
  return impl_->accepted_;
}

}  // namespace smtp
