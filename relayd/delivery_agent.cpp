// Implements delivery_agent.hpp: one worker's job loop. Opens a connection
// (delivery_connect), delivers the destination's jobs on it, lingers for more, and
// hands every outcome to the scheduler. A reused connection the next hop closed
// before answering this transaction is not an attempt: a new one carries the job.
#include "relayd/delivery_agent.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <optional>

#include "dns/mx_resolver.hpp"
#include "relayd/config.hpp"
#include "relayd/delivery_connect.hpp"
#include "relayd/delivery_outcome.hpp"
#include "relayd/delivery_scheduler.hpp"

namespace relayd {
namespace {

using steady = std::chrono::steady_clock;
constexpr auto linger = std::chrono::seconds(2);
constexpr auto quit_timeout = std::chrono::seconds(10);

double seconds_since(steady::time_point t) {
  return std::chrono::duration<double>(steady::now() - t).count();
}

std::vector<recipient_outcome> for_each_recipient(const job& j, const recipient_outcome& o) {
  std::vector<recipient_outcome> outs;
  for (auto i : j.recipients) {
    outs.push_back(o);
    outs.back().index = i;
  }
  return outs;
}

}  // namespace

struct delivery_agent::impl {
  impl(asio::io_context& io_, const config& cfg_, scheduler& sched_, dns::mx_resolver& dns_)
      : io(io_), cfg(cfg_), sched(sched_), connect(io_, cfg_, dns_, &sched_.spool(), sched_.stats(),
                                                 &sched_.tls_status()) {}

  // `d` lives while d.active counts this worker: the scheduler forgets a
  // destination only when no connection is active (scheduler::maybe_forget).
  awaitable<void> run(destination& d);
  // A connection for `d` (counted in d.connecting by the caller). On failure the
  // scheduler hears why, `held` (a job already taken) is deferred with it, the
  // worker is done (connection_done) and the result is empty.
  awaitable<std::optional<delivery_link>> open(destination& d, attempt_timing& timing,
                                               std::optional<job>& held);
  // Gives up `old` (the next hop closed it) and opens a new connection for `held`;
  // on failure as open().
  awaitable<std::optional<delivery_link>> reopen(destination& d, attempt_timing& timing,
                                                 std::optional<job>& held, delivery_link old);
  // RFC 8689: `old` cannot carry `held`, a REQUIRETLS message. Says QUIT on it
  // and opens a connection to a host that qualifies. When none does, only
  // `held` hears why (failed: 5.7.10/5.7.30 and a DSN; or deferred), the
  // destination stays as it was, and the worker is done: result empty.
  awaitable<std::optional<delivery_link>> reopen_requiretls(destination& d, attempt_timing& timing,
                                                            std::optional<job>& held,
                                                            delivery_link old);
  // The next job, lingering for one until the linger deadline.
  awaitable<std::optional<job>> next_job(destination& d);

  asio::io_context& io;
  const config& cfg;
  scheduler& sched;
  connector connect;
};

delivery_agent::delivery_agent(asio::io_context& io, const config& cfg, scheduler& sched,
                               dns::mx_resolver& dns)
    : impl_(std::make_unique<impl>(io, cfg, sched, dns)) {}

delivery_agent::~delivery_agent() = default;

std::expected<void, std::string> delivery_agent::reconfigure(const config& next) {
  return impl_->connect.reconfigure(next);
}

void delivery_agent::set_tls_reports(tls_rpt_service* reports) {
  impl_->connect.set_tls_reports(reports);
}

void delivery_agent::reload_credentials() {
  impl_->connect.reload_credentials();
}

void delivery_agent::start_connection(destination& d) {
  asio::co_spawn(impl_->io, impl_->run(d), [](std::exception_ptr e) {
    if (!e) return;
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& ex) {
      spdlog::critical("delivery worker died: {}", ex.what());
    }
  });
}

awaitable<std::optional<delivery_link>> delivery_agent::impl::open(destination& d,
                                                                   attempt_timing& timing,
                                                                   std::optional<job>& held) {
  auto r = co_await connect.open(d.key);
  if (r.token_refused) r = co_await connect.open(d.key);  // once, with a new OAuth2 token
  timing.dns = r.dns_seconds;
  timing.connect = r.connect_seconds;
  if (r.link) co_return std::move(r.link);

  const auto& why = r.problem;
  if (held) {
    const std::string relay = why.remote_host.empty() ? "none" : why.remote_host;
    sched.complete(d, std::move(*held), for_each_recipient(*held, why), relay, timing);
    held.reset();
  }
  if (why.what == outcome_kind::failed)
    sched.no_route(d, why);
  else if (r.local_fault)
    sched.systemic_failure(d, why);  // the circuit breaker: our credentials were refused
  else if (r.tls_policy_failed)
    sched.systemic_failure(d, why, suspend_cause::tls_policy);  // every MX failed its policy
  else if (r.throttled)
    sched.throttle(d, why);
  else
    sched.unreachable(d, why);
  --d.connecting;
  sched.connection_done(d);
  co_return std::nullopt;
}

awaitable<std::optional<delivery_link>> delivery_agent::impl::reopen(destination& d,
                                                                     attempt_timing& timing,
                                                                     std::optional<job>& held,
                                                                     delivery_link old) {
  spdlog::info("{}: connection to {} was closed by the next hop; sending over a new one",
               held->message->id, old.relay);
  old.stream->close();
  ++d.connecting;
  timing = attempt_timing{};
  auto link = co_await open(d, timing, held);
  if (link) {
    --d.connecting;
    sched.learned_mx(d, link->host_name);
    sched.connection_ready(d);
  }
  co_return link;
}

awaitable<std::optional<delivery_link>> delivery_agent::impl::reopen_requiretls(
    destination& d, attempt_timing& timing, std::optional<job>& held, delivery_link old) {
  spdlog::info("{}: REQUIRETLS, and {} does not qualify ({}); looking for a host that does",
               held->message->id, old.relay, check_next_hop(held->message->flags, old.hop).text());
  old.session->quit();
  co_await pump(*old.stream, *old.session, old.in, quit_timeout);
  old.stream->close();
  ++d.connecting;
  timing = attempt_timing{};
  auto r = co_await connect.open(d.key, true);
  timing.dns = r.dns_seconds;
  timing.connect = r.connect_seconds;
  --d.connecting;
  if (r.link) co_return std::move(r.link);
  const std::string relay = r.problem.remote_host.empty() ? "none" : r.problem.remote_host;
  sched.complete(d, std::move(*held), for_each_recipient(*held, r.problem), relay, timing);
  held.reset();
  sched.connection_done(d);
  co_return std::nullopt;
}

awaitable<std::optional<job>> delivery_agent::impl::next_job(destination& d) {
  auto j = sched.next_job(d);
  if (j) co_return j;
  // Linger for more jobs. A connection woken for a job that another one took
  // meanwhile lingers on (until the same deadline) instead of closing.
  asio::steady_timer idle(io);
  idle.expires_after(linger);
  while (!j && !sched.stopping() && steady::now() < idle.expiry()) {
    d.idle.push_back(&idle);  // removed below, before `idle` goes
    co_await idle.async_wait(use_tuple);
    if (auto it = std::find(d.idle.begin(), d.idle.end(), &idle); it != d.idle.end())
      d.idle.erase(it);  // the deadline passed
    else
      --d.waking;  // woken by the scheduler
    j = sched.next_job(d);
  }
  co_return j;
}

awaitable<void> delivery_agent::impl::run(destination& d) {
  attempt_timing timing;
  std::optional<job> held;  // a job to send again after a reused connection closed
  auto link = co_await open(d, timing, held);
  if (!link) co_return;
  --d.connecting;
  sched.learned_mx(d, link->host_name);
  sched.connection_ready(d);
  bool reused = false;  // the connection has carried a transaction
  // [[destination]] max_messages_per_connection (0: no limit).
  const std::size_t per_connection = sched.messages_per_connection(d);
  std::size_t carried = 0;

  while (link->session->phase() == smtp::client_phase::ready) {
    auto& s = *link->session;
    std::optional<job> j = std::move(held);
    held.reset();
    if (!j && per_connection != 0 && carried >= per_connection) break;
    if (!j) j = co_await next_job(d);
    if (!j) break;
    if (reused && (!link->in.empty() || link->stream->peer_spoke_while_idle())) {
      // Closed (restart, idle timeout) while it lingered: the job has not been
      // tried; it goes over a new connection at once.
      held = std::move(j);
      link = co_await reopen(d, timing, held, std::move(*link));
      if (!link) co_return;
      reused = false;
      continue;
    }
    const auto& msg = *j->message;
    const auto tls_check = check_next_hop(msg.flags, link->hop);
    if (!tls_check.may_send()) {
      held = std::move(j);
      link = co_await reopen_requiretls(d, timing, held, std::move(*link));
      if (!link) co_return;
      reused = false;
      continue;
    }
    auto body = sched.spool().body(msg.id);
    if (!body) {  // deleted (relayctl -d) since it was dispatched
      sched.complete(d, std::move(*j), {}, link->relay, timing);
      continue;
    }
    smtp::outgoing_message m;
    m.sender = msg.sender;
    for (auto i : j->recipients) m.recipients.push_back(msg.recipients[i].address);
    m.body = *body;
    m.size = body->size();
    m.body_8bit = msg.flags & queue::flag_eight_bit;
    m.smtputf8 = msg.flags & queue::flag_smtputf8;
    m.ret = msg.ret;  // the DSN request goes on only if the next hop offers DSN
    m.envid = msg.envid;
    m.requiretls = tls_check.verdict == requiretls_verdict::send_with_requiretls;
    for (auto i : j->recipients)
      m.dsn.push_back({msg.recipients[i].notify, msg.recipients[i].orcpt});

    const auto transfer_started = steady::now();
    pump_step step{s.send(m), std::nullopt};
    if (step.what == smtp::client_session::event::need_more)
      step = co_await pump(*link->stream, s, link->in, cfg.delivery.command_timeout);
    timing.transfer = seconds_since(transfer_started);
    if (step.what != smtp::client_session::event::transaction_done) {
      // The session failed without a transaction result (should not happen):
      // everything stays pending and is retried.
      recipient_outcome o;
      o.status = "4.4.2";
      o.cause = queue::outcome_cause::protocol;
      o.remote_host = link->relay;
      o.text = "lost connection";
      o.description = describe(o);
      sched.complete(d, std::move(*j), for_each_recipient(*j, o), link->relay, timing);
      break;
    }
    auto result = s.take_result();
    if (reused && step.lost && server_heard_nothing(result)) {
      // The next hop closed the cached connection as the transaction began:
      // nothing of it was answered, so nothing was accepted. Not an attempt.
      held = std::move(j);
      link = co_await reopen(d, timing, held, std::move(*link));
      if (!link) co_return;
      reused = false;
      continue;
    }
    std::vector<recipient_outcome> outs;
    recipient_outcome throttle_reason;
    for (std::size_t k = 0; k < result.recipients.size() && k < j->recipients.size(); ++k) {
      auto o = outcome_of(result.recipients[k], link->relay, step.lost);
      o.index = j->recipients[k];
      o.next_hop_dsn = s.capabilities().dsn;
      if (result.destination_throttled && o.what == outcome_kind::deferred) throttle_reason = o;
      outs.push_back(std::move(o));
    }
    sched.complete(d, std::move(*j), std::move(outs), link->relay, timing);
    ++carried;
    if (result.destination_throttled) {
      sched.throttle(d, throttle_reason);
      break;
    }
    if (result.connection_closed) break;
    reused = true;
    timing.dns = timing.connect = 0;  // reused connection: no set-up cost
  }

  auto& s = *link->session;
  if (s.phase() == smtp::client_phase::ready) {
    s.quit();
    co_await pump(*link->stream, s, link->in, quit_timeout);
  }
  link->stream->close();
  sched.connection_done(d);
}

}  // namespace relayd
