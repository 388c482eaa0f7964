// The inbound session pump (see inbound_session.hpp). Runs on the I/O thread;
// the AUTH check runs on the worker pool and the spool's answer comes from the
// writer thread, both posted back here by from_callback. A broken connection
// ends the session; a spool failure is answered 452/451 and the session goes on.
#include "relayd/inbound_session.hpp"

#include <spdlog/spdlog.h>
#include <openssl/crypto.h>
#include <openssl/ssl.h>

#include <algorithm>
#include <array>
#include <cassert>
#include <chrono>
#include <ctime>
#include <tuple>

#include <boost/asio/this_coro.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/beast/core/error.hpp>

#include "queue/clock.hpp"
#include "queue/spool.hpp"
#include "relayd/async_call.hpp"
#include "relayd/auth_users.hpp"
#include "relayd/config.hpp"
#include "relayd/dkim_sign.hpp"
#include "relayd/events_log.hpp"
#include "relayd/inbound_connection.hpp"
#include "relayd/inbound_local.hpp"
#include "relayd/local_aliases.hpp"
#include "relayd/metrics.hpp"
#include "relayd/delivery_requiretls.hpp"
#include "relayd/delivery_route.hpp"
#include "relayd/delivery_scheduler.hpp"
#include "smtp/message.hpp"
#include "smtp/replies.hpp"
#include "smtp/server_session.hpp"

namespace relayd {
namespace {

using steady = std::chrono::steady_clock;
constexpr auto final_write_timeout = std::chrono::seconds(10);
constexpr auto handshake_timeout = std::chrono::seconds(30);  // or idle_timeout if shorter
// The n-th failed AUTH of a connection is answered after n times this; the
// max_auth_failures-th also ends the connection (421 4.7.0).
constexpr auto auth_failure_delay = std::chrono::seconds(1);
constexpr std::size_t max_auth_failures = 3;

bool is_loopback(const std::string& ip) {
  boost::system::error_code ec;
  const auto a = asio::ip::make_address(ip, ec);
  return !ec && a.is_loopback();
}

// Client text (a user name) as it may go into the log: printable ASCII, at most 64.
std::string printable(std::string_view s) {
  std::string out;
  for (unsigned char c : s.substr(0, 64)) out += c >= 0x20 && c < 0x7f ? static_cast<char>(c) : '?';
  if (s.size() > 64) out += "...";
  return out;
}

// A log value that may be empty: "-" then, so key=value fields stay aligned.
std::string_view or_dash(const std::string& s) { return s.empty() ? std::string_view("-") : s; }

// This session's share of the data budget: the body being read, then the
// message until the spool has answered for it. Given back when the frame goes.
struct memory_share {
  std::shared_ptr<data_budget> budget;
  std::uint64_t held = 0;
  void set(std::uint64_t n) {
    budget->held = budget->held - held + n;
    held = n;
  }
  ~memory_share() { budget->held -= held; }
};

smtp::session_options session_options(const inbound_services& s) {
  smtp::session_options o;
  o.hostname = s.cfg.hostname;
  o.max_message_size = s.cfg.smtp.max_message_size;
  o.max_recipients = s.cfg.smtp.max_recipients;
  o.max_errors = s.cfg.smtp.max_errors;
  o.max_header_size = s.cfg.smtp.max_header_size;
  o.new_id = [&spool = s.spool] { return spool.new_id(); };
  o.now = [] { return static_cast<std::int64_t>(std::time(nullptr)); };
  return o;
}

// The server handshake, logged; false when it failed (the caller closes).
awaitable<bool> start_tls(inbound_connection& c, asio::ssl::context& ctx, steady::duration limit,
                          const std::string& who) {
  auto ec = co_await c.handshake(ctx, limit);
  if (ec) {
    spdlog::info("TLS handshake from {} failed: {}", who,
                 ec == boost::beast::error::timeout ? std::string("timeout") : ec.message());
    co_return false;
  }
  SSL* s = c.tls_handle();
  spdlog::info("TLS from {}: {} {}", who, SSL_get_version(s), SSL_get_cipher_name(s));
  co_return true;
}

// Checks the session's AUTH credentials on the worker pool (crypt(3) is slow
// on purpose), delays a failure by n seconds for the n-th one, then answers.
// The job owns copies of what it needs; only its answer comes back here.
awaitable<void> check_credentials(const inbound_services& s, smtp::server_session& session,
                                  std::shared_ptr<const auth_users> users, const std::string& who) {
  const std::string user = session.auth_user();
  bool ok = false;
  if (users && !user.empty()) {
    std::string password = session.auth_password();
    ok = co_await from_callback<void(bool)>([&](auto done) {
      asio::post(s.auth_pool, [users, user, password = std::move(password),
                               done = std::move(done)]() mutable {
        const bool match = users->verify(user, password);
        OPENSSL_cleanse(password.data(), password.size());
        done(match);
      });
    });
  }
  if (ok) {
    spdlog::info("auth: from {}: sasl_username={}", who, printable(user));
  } else {
    const auto failures = session.auth_failures() + 1;
    spdlog::warn("auth failed: from {}: sasl_username={} (failure {} of {})", who,
                 printable(user), failures, max_auth_failures);
    asio::steady_timer t(co_await asio::this_coro::executor);
    t.expires_after(auth_failure_delay * failures);
    co_await t.async_wait(use_tuple);
  }
  session.auth_result(ok);
}

// Spools the session's pending message and answers it: 250 only after commit.
awaitable<void> spool_message(const inbound_services& s, smtp::server_session& session,
                              const std::string& ip, const local_addresses& addresses) {
  const std::string sasl = printable(session.authenticated_user());
  const auto& env = session.message_envelope();
  queue::envelope_record rec;
  rec.id = session.message_id();
  rec.arrival_us = queue::wall_clock_us();
  rec.sender = addresses.sender(env);  // masqueraded for local submissions
  rec.client_ip = ip;
  rec.helo = env.helo;
  if (env.body == smtp::body_type::eight_bit_mime) rec.flags |= queue::flag_eight_bit;
  if (env.smtputf8) rec.flags |= queue::flag_smtputf8;
  rec.ret = env.ret;
  rec.envid = env.envid;
  rec.local = env.local;
  for (const auto& r : addresses.recipients(env))  // local recipients: their aliases
    rec.recipients.push_back(queue::recipient{.address = r.address,
                                              .next_attempt_us = rec.arrival_us,
                                              .notify = r.notify,
                                              .orcpt = r.orcpt});
  std::string body = addresses.message(env, session.take_message());  // From: masqueraded
  rewrite_sender_identity(s.cfg, rec.sender, body);  // [[route]] rewrite_*: before signing
  rec.flags |= requiretls_flags(env.requiretls, body);  // RFC 8689 4.1
  // DKIM: signed on the signing pool, the final message, before the 250.
  std::string dkim_log;
  if (s.dkim && s.dkim->enabled())
    std::tie(body, dkim_log) = co_await from_callback<void(std::string, std::string)>(
        [&](auto done) { s.dkim->sign(std::move(body), rec.sender, std::move(done)); });
  // ", message-id=<...>" (the field as spooled) and the DKIM result, for the queued line.
  const std::string dkim = ", message-id=" + smtp::message_id_for_log(body) +
                           (dkim_log.empty() ? "" : ", dkim=" + dkim_log);
  rec.size = body.size();
  const std::optional<smtp::local_identity> submitter = rec.local;
  const std::size_t nrcpt = rec.recipients.size(), size = rec.size;
  const std::string sender = rec.sender, id = rec.id;
  const std::int64_t arrival = rec.arrival_us;

  event_log* events = s.sched.events();  // [events]: stored with the message
  event_batch event_lines = events ? events->received(rec, body, sasl) : event_batch{};

  // Not dispatched before the post below has told its arrival (and written
  // its "received" event), however soon the scheduler reads it in the spool.
  s.sched.arriving(id);
  // `done` runs on the spool's writer thread; from_callback posts it back here.
  auto r = co_await from_callback<void(queue::result)>([&](auto done) {
    s.spool.enqueue(std::move(rec), std::move(body), std::move(done),
                    events ? events->outbox_lines(event_lines) : std::vector<std::string>{});
  });
  if (r.code == queue::status::ok) {
    if (submitter)
      spdlog::info("{}: from=<{}>, size={}, nrcpt={}, client=local, uid={} user={} unit={}{}", id,
                   sender, size, nrcpt, submitter->uid, or_dash(submitter->user),
                   or_dash(submitter->unit), dkim);
    else if (sasl.empty())
      spdlog::info("{}: from=<{}>, size={}, nrcpt={}, client={}{}", id, sender, size, nrcpt, ip,
                   dkim);
    else
      spdlog::info("{}: from=<{}>, size={}, nrcpt={}, client={}, sasl_username={}{}", id, sender,
                   size, nrcpt, ip, sasl, dkim);
    session.message_queued();
    s.stats.message_received();
    // The scheduler and the events' file, record and webhook live on the
    // delivery thread (told after the line above, so the log reads in order);
    // both outlive its handlers (run_daemon's locals).
    asio::post(s.delivery_io, [&sched = s.sched, events, b = std::move(event_lines), arrival,
                               id]() mutable {
      if (events) events->committed(std::move(b));
      sched.notify_enqueued(arrival, id);
    });
    co_return;
  }
  s.sched.arrival_failed(id);
  const smtp::reply reply =
      r.code == queue::status::full ? smtp::replies::spool_full() : smtp::replies::local_error();
  spdlog::error("{}: not queued: {} ({}); client={}", id, reply.to_string(), r.detail,
                submitter ? identity_text(*submitter) : ip);
  session.message_failed(reply);
}

}  // namespace

const char* to_string(listener_kind k) {
  switch (k) {
    case listener_kind::smtp: return "smtp";
    case listener_kind::submission: return "submission";
    case listener_kind::smtps: return "smtps";
    case listener_kind::local: return "local";
  }
  return "?";
}

std::string peer_text(const std::string& ip, std::uint16_t port) {
  return ip.find(':') == std::string::npos ? fmt::format("{}:{}", ip, port)
                                           : fmt::format("[{}]:{}", ip, port);
}

awaitable<void> serve_session(inbound_services s, std::shared_ptr<inbound_connection> c,
                              listener_kind kind, std::shared_ptr<asio::ssl::context> tls,
                              std::shared_ptr<const auth_users> users,
                              std::shared_ptr<data_budget> memory,
                              std::optional<smtp::local_identity> local) {
  const auto who = local ? identity_text(*local) : peer_text(c->ip, c->port);
  if (local)
    spdlog::info("connect from {}", who);  // "local (uid 33, www-data, pid 1234)"
  else
    spdlog::info("connect from {} ({})", who, to_string(kind));
  const auto idle = std::chrono::duration_cast<steady::duration>(s.cfg.smtp.idle_timeout);
  const auto handshake_limit = std::min<steady::duration>(idle, handshake_timeout);

  if (kind == listener_kind::smtps) {
    assert(tls && "smtps listeners need [tls]: checked at start");
    if (!co_await start_tls(*c, *tls, handshake_limit, who)) co_return;
  }

  smtp::client_info client;
  client.ip = c->ip;
  // Local submission is trusted for relaying; a network client by its address (parsed once).
  client.relay_allowed = local || in_networks(s.cfg.smtp.mynetworks, c->ip);
  client.local = local;
  auto options = session_options(s);
  // Aliases and masquerading with the table current now (a reload applies to new connections).
  const local_addresses addresses(s.cfg, s.aliases ? s.aliases->current() : nullptr);
  options.check_recipient = [&addresses](std::string_view rcpt) {
    return addresses.check_recipient(rcpt);
  };
  if (local) {
    options.qualify_domain = s.cfg.local.domain;
    options.check_sender = [&cfg = s.cfg, who = *local](std::string_view sender) {
      return check_local_sender(cfg, who, sender);
    };
  }
  // Called only from feed() and friends below, while this frame is alive.
  options.on_reject = [&stats = s.stats, &who](const smtp::reply& r, std::string_view command) {
    stats.smtp_rejection(r.code);
    if (command.empty())
      spdlog::info("reject: from {}: {}", who, r.to_string());
    else
      spdlog::info("reject: from {}: {}; command={}", who, r.to_string(), command.substr(0, 80));
  };
  options.starttls = tls != nullptr && kind != listener_kind::smtps;
  options.tls_active = kind == listener_kind::smtps;
  options.auth = users != nullptr;
  options.auth_without_tls = s.cfg.auth.allow_plaintext_loopback && is_loopback(c->ip);
  options.auth_required = kind == listener_kind::submission;
  options.max_auth_failures = max_auth_failures;
  smtp::server_session session(std::move(options), client);
  session.start();

  // The replies to one read are written before the next read, so a client that
  // pipelines without reading replies stops being read (its writes time out).
  // Input is fed in slices and the output written once it passes a high-water
  // mark: pipelined EHLOs answered with a long hostname are ~50 times their
  // size, and one whole read's worth of replies would be ~400 KiB.
  constexpr std::size_t feed_slice = 512;
  constexpr std::size_t output_high_water = 16 * 1024;
  std::array<char, 8192> buf;
  memory_share share{memory};
  // RFC 5321 4.5.3.2: a command line must be complete within idle_timeout of
  // its first byte, a DATA body within data_timeout of the 354, however
  // slowly the bytes trickle in.
  const auto data_limit = std::chrono::duration_cast<steady::duration>(s.cfg.smtp.data_timeout);
  std::uint64_t phase_generation = session.progress().generation;
  steady::time_point phase_start = steady::now();
  auto timeout_kind = smtp::server_session::timeout_kind::idle;
  bool closing = false;
  bool dead = false;  // the connection broke (write error, failed handshake)
  for (;;) {
    // The session may have closed outside feed() (the 421 after too many AUTH
    // failures): its last replies are written and nothing more is read.
    closing = closing || session.closed();
    if (!session.output().empty()) {
      if (auto ec = co_await c->write(session.output(), closing ? final_write_timeout : idle); ec)
        break;
      session.clear_output();
    }
    if (closing) break;
    if (c->stop_requested && !session.in_transaction()) {
      closing = session.shutdown();
      if (closing) continue;
    }
    auto limit = idle;
    {
      const auto now = steady::now();
      const auto p = session.progress();
      if (p.generation != phase_generation) {
        phase_generation = p.generation;
        phase_start = now;
      }
      timeout_kind = smtp::server_session::timeout_kind::idle;
      using pending = smtp::server_session::pending_input;
      if (p.what != pending::none) {
        const bool data = p.what == pending::data;
        const auto phase_left = phase_start + (data ? data_limit : idle) - now;
        if (phase_left < limit) {
          limit = std::max<steady::duration>(phase_left, steady::duration::zero());
          timeout_kind = data ? smtp::server_session::timeout_kind::data
                              : smtp::server_session::timeout_kind::command;
        }
      }
    }
    const auto r = co_await c->read_some(asio::buffer(buf), limit);
    if (r.timed_out) {
      spdlog::info("timeout: {}{}", who,
                   timeout_kind == smtp::server_session::timeout_kind::data ? " (DATA body)"
                   : timeout_kind == smtp::server_session::timeout_kind::command
                       ? " (command line)"
                       : "");
      session.timeout(timeout_kind);
      closing = true;
      continue;
    }
    if (r.interrupted) continue;  // a graceful stop: checked at the top
    if (r.ec) break;              // EOF, reset
    std::string_view in(buf.data(), r.bytes);
    while (!in.empty() && !closing && !dead) {
      auto st = session.feed(in.substr(0, feed_slice));
      in.remove_prefix(st.consumed);
      share.set(session.buffered());
      if (st.what == smtp::server_session::event::need_more && share.held > 0 &&
          memory->held > memory->limit) {
        // Over the budget: the body that is growing goes, whoever holds the rest.
        spdlog::warn(
            "{}: message content in memory is {} bytes, over smtp.max_data_memory "
            "({}): this message is refused",
            who, memory->held, memory->limit);
        session.refuse_message(smtp::replies::spool_full());
        share.set(session.buffered());
      }
      switch (st.what) {
        case smtp::server_session::event::need_more:
          break;
        case smtp::server_session::event::close:
          closing = true;
          break;
        case smtp::server_session::event::message:
          co_await spool_message(s, session, c->ip, addresses);
          share.set(session.buffered());  // the spool has answered: its copy is gone
          break;
        case smtp::server_session::event::auth:
          co_await check_credentials(s, session, users, who);
          break;
        case smtp::server_session::event::starttls:
          // Whatever came with STARTTLS is plaintext the client must not be able
          // to slip into the TLS session (CVE-2011-0411): dropped unread.
          if (!in.empty())
            spdlog::warn("starttls: from {}: {} bytes pipelined after STARTTLS discarded", who,
                         in.size());
          in = {};
          if (auto ec = co_await c->write(session.output(), final_write_timeout); ec) {
            dead = true;
            break;
          }
          session.clear_output();
          if (!co_await start_tls(*c, *tls, handshake_limit, who)) {
            dead = true;
            break;
          }
          session.tls_started();
          break;
      }
      if (!closing && !dead && session.output().size() >= output_high_water) {
        if (auto ec = co_await c->write(session.output(), idle); ec) {
          dead = true;
          break;
        }
        session.clear_output();
      }
    }
    if (dead) break;
  }
  if (session.authenticated_user().empty())
    spdlog::info("disconnect from {} messages={}", who, session.messages_accepted());
  else
    spdlog::info("disconnect from {} messages={} sasl_username={}", who,
                 session.messages_accepted(), printable(session.authenticated_user()));
}

}  // namespace relayd
