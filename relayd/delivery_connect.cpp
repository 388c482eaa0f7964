// Implements delivery_connect.hpp: DNS, the host/address walk, the TLS `may`
// fallback and the session set-up. A 4xx greeting or EHLO (and every connect
// error) moves on to the next address; a refusal of our own configuration stops
// the walk (the next host would refuse it too).
#include "relayd/delivery_connect.hpp"

#include <openssl/crypto.h>
#include <openssl/ssl.h>
#include <spdlog/spdlog.h>

#include <boost/asio/ssl.hpp>
#include <chrono>
#include <map>
#include <stdexcept>

#include "dns/mx_resolver.hpp"
#include "relayd/async_call.hpp"
#include "relayd/config.hpp"
#include "relayd/delivery_mta_sts.hpp"
#include "relayd/delivery_dane.hpp"
#include "relayd/delivery_outcome.hpp"
#include "relayd/delivery_route.hpp"
#include "relayd/delivery_tls_report.hpp"
#include "relayd/delivery_tls_rpt.hpp"
#include "relayd/delivery_tls_status.hpp"
#include "relayd/oauth2_token.hpp"
#include "relayd/secret_file.hpp"

namespace relayd {
namespace {

namespace ssl = asio::ssl;
using steady = std::chrono::steady_clock;
using error_code = boost::system::error_code;

double seconds_since(steady::time_point t) {
  return std::chrono::duration<double>(steady::now() - t).count();
}

bool is_loopback_host(const std::string& host) {
  if (host == "localhost") return true;
  error_code ec;
  auto a = asio::ip::make_address(host, ec);
  return !ec && a.is_loopback();
}

void wipe(std::string& s) {
  OPENSSL_cleanse(s.data(), s.size());
  s.clear();
}

enum class setup_result { ready, failed, tls_failed };

// A host to try: one address of an MX host or of a relayhost.
struct candidate {
  std::string host_name, address;
  std::uint16_t port = 25;
  bool implicit_tls = false;
};

// The token endpoint failed: the mail waits (our credentials, never a bounce).
recipient_outcome token_failed(const oauth2_error& e) {
  recipient_outcome o;
  o.status = e.cause == queue::outcome_cause::auth ? "4.7.0" : "4.3.5";
  o.cause = e.cause;
  o.text = "OAuth2 " + e.text;
  o.description = describe(o);
  return o;
}

// What REQUIRETLS needs to know of a ready connection (delivery_requiretls.hpp).
// Here: TLS and WebPKI, and where the name came from; MTA-STS and DANE raise
// `verification` (DNSSEC: `name`) when their own checks passed.
// `dane`: the session was verified by usable TLSA records (so the MX answer
// was DNSSEC-validated); `sts`: an enforced MTA-STS policy named this MX host.
next_hop_facts hop_facts(const delivery_link& l, bool smarthost, const dns::mx_result& mx,
                         bool dane, bool sts) {
  next_hop_facts f;
  const bool verified = l.stream->verified();
  f.verification = !l.session->tls_active() ? tls_verification::none
                   : dane                   ? tls_verification::dane
                   : !verified              ? tls_verification::unauthenticated
                   : sts                    ? tls_verification::mta_sts
                                            : tls_verification::webpki;
  f.name = smarthost     ? next_hop_name::relayhost
           : dane        ? next_hop_name::mx_secure
           : mx.implicit ? next_hop_name::domain
                         : next_hop_name::mx_insecure;
  f.offers_requiretls = l.session->capabilities().requiretls;
  return f;
}

// The config key naming route `n`'s password file in messages.
std::string password_key(const route& r, std::size_t n) {
  return n == default_route ? "delivery.relayhost_password_file"
                            : "route " + r.name + ": password_file";
}

// The same for its OAuth2 settings.
std::string oauth2_key(const route& r, std::size_t n) {
  return n == default_route ? "delivery.relayhost_oauth2" : "route " + r.name + ": oauth2";
}

// The session is up: its TLS log line and the policy's result. Testing mode
// counts a certificate that would not have passed (or no TLS at all).
void report_session(metrics* stats, const delivery_link& l, tls_policy_kind policy,
                    const mta_sts_verdict& sts, bool already_failed) {
  const auto tls = l.stream->tls_session();
  if (tls)
    log_tls_session({l.relay, tls->version, tls->cipher, tls->verified, policy});
  if (policy == tls_policy_kind::none) {
    if (tls) count_tls_policy(stats, policy, tls_policy_result::success);
    return;
  }
  if (already_failed) return;  // counted when the MX host did not match
  if (tls && tls->verified) {
    count_tls_policy(stats, policy, tls_policy_result::success);
    return;
  }
  // Only testing mode gets here without verified TLS (enforce required it).
  spdlog::warn("MTA-STS policy of {} (testing mode) not met by {}: {}; delivered anyway",
               sts.domain, l.relay, tls ? "certificate: " + tls->problem : "no TLS");
  count_tls_policy(stats, policy, tls_policy_result::testing_failure);
}

// TLS failed (or was not offered) under a policy: counted; enforce names the
// policy in the deferral.
void sts_failure(metrics* stats, recipient_outcome& problem, const mta_sts_verdict& sts,
                 const std::string& what) {
  if (!sts.enforced()) return;  // testing: the plaintext retry or report_session counts it
  mta_sts_required(problem, sts);
  spdlog::warn("delivery to {}: {}", what, problem.description);
  count_tls_policy(stats, tls_policy_kind::mta_sts, tls_policy_result::failure);
}

// relayctl destinations: the policy in force for `d` and how TLS went (no table: nothing).
void note_tls(tls_status_table* table, const destination_key& d, tls_policy_kind k,
              const mta_sts_verdict& sts, std::string outcome) {
  if (!table) return;
  const auto now = std::chrono::system_clock::now().time_since_epoch();
  table->record(d.id(), {k == tls_policy_kind::mta_sts
                             ? "mta-sts " + std::string(mta_sts::to_string(sts.what))
                             : std::string(to_string(k)),
                         std::move(outcome),
                         std::chrono::duration_cast<std::chrono::seconds>(now).count()});
}

}  // namespace

struct connector::impl {
  impl(asio::io_context& io_, const config& cfg_, dns::mx_resolver& dns_, queue::spool* spool,
       metrics* stats_, tls_status_table* tls_status_)
      : io(io_),
        cfg(cfg_),
        dns(dns_),
        stats(stats_),
        tls_status(tls_status_),
        tls_any(ssl::context::tls_client),
        tls_verify(ssl::context::tls_client),
        tls_dane(ssl::context::tls_client) {
    for (auto* ctx : {&tls_any, &tls_verify, &tls_dane}) {
      SSL_CTX_set_min_proto_version(ctx->native_handle(), TLS1_2_VERSION);
      ctx->set_options(ssl::context::default_workarounds | ssl::context::no_compression);
    }
    tls_any.set_verify_mode(ssl::verify_none);
    // tls_any verifies too, without enforcing it: MTA-STS testing mode and
    // REQUIRETLS read the result.
    tls_any.set_default_verify_paths();
    if (spool && cfg.delivery.mta_sts) sts = std::make_unique<mta_sts_source>(io, cfg, dns, *spool);
    tls_verify.set_default_verify_paths();
    tls_verify.set_verify_mode(ssl::verify_peer);
    enable_dane(tls_dane);
    if (auto ok = use_routes(cfg); !ok) throw std::runtime_error(ok.error());
  }
  // Builds the routes of `c` and reads their password files (one already open
  // under the same path is reused: it may be one only root can open); on
  // success they replace the current ones, on failure nothing changes.
  std::expected<void, std::string> use_routes(const config& c);
  ~impl() {
    for (auto& p : passwords) wipe(p);
  }

  // The hosts to try for `d`, in order; `mx` is the last (or only) answer.
  awaitable<std::vector<candidate>> candidates(const destination_key& d, const route& r,
                                               dns::mx_result& mx);
  // `lost`: set when the stream failed. Awaited directly: the reference is the
  // caller's local.
  // `verify_name`: check the certificate's name (enforced when the context verifies).
  awaitable<setup_result> set_up(delivery_link& l, smtp::client_session& s, bool verify_name,
                                 std::optional<queue::outcome_cause>& lost);
  // `token`: the route's OAuth2 access token when it has oauth2 settings.
  smtp::client_options session_options(const std::string& host_name, bool try_tls,
                                       const candidate& c, std::size_t route_number,
                                       const std::string& token) const;

  asio::io_context& io;
  const config& cfg;
  dns::mx_resolver& dns;
  metrics* stats;                      // may be null (tests)
  tls_status_table* tls_status;        // may be null (tests)
  std::unique_ptr<mta_sts_source> sts;  // MX delivery with [delivery] mta_sts
  ssl::context tls_any;     // none/may/encrypt: encryption without authentication
  ssl::context tls_verify;  // verify: system CAs and the host name
  ssl::context tls_dane;    // [delivery] dane: hosts with usable TLSA records
  std::vector<route> routes;            // by route number
  std::vector<std::string> passwords;   // by route number
  std::vector<std::shared_ptr<secret_file>> password_files;  // by route number, kept for SIGHUP
  // By route number: the token cache of a route with oauth2 (route 0:
  // relayhost_oauth2), else null. A reload keeps the source of a route whose
  // key it already had (its secret files stay open after the privilege drop).
  std::vector<std::shared_ptr<oauth2_token_source>> oauth;
  std::uint64_t turn = 0;  // rotates equal relayhosts over connections
  tls_rpt_service* reports = nullptr;  // [delivery] tls_rpt: each MX session's outcome
};

connector::connector(asio::io_context& io, const config& cfg, dns::mx_resolver& dns,
                     queue::spool* spool, metrics* stats, tls_status_table* tls_status)
    : impl_(std::make_unique<impl>(io, cfg, dns, spool, stats, tls_status)) {}

connector::~connector() = default;

void connector::set_tls_reports(tls_rpt_service* reports) { impl_->reports = reports; }

std::expected<void, std::string> connector::impl::use_routes(const config& c) {
  std::vector<route> next_routes;
  for (std::size_t n = 0; n <= c.routes.size(); ++n) next_routes.push_back(route_settings(c, n));
  std::vector<std::string> next_passwords(next_routes.size());
  std::vector<std::shared_ptr<secret_file>> next_files(next_routes.size());
  std::vector<std::shared_ptr<oauth2_token_source>> next_oauth(next_routes.size());
  for (std::size_t n = 0; n < next_routes.size(); ++n) {
    const route& r = next_routes[n];
    if (r.oauth2) {
      const std::string key = oauth2_key(r, n);
      for (std::size_t k = 0; k < oauth.size() && k < routes.size(); ++k)
        if (oauth[k] && oauth2_key(routes[k], k) == key) next_oauth[n] = oauth[k];
      if (!next_oauth[n]) {
        try {
          next_oauth[n] = std::make_shared<oauth2_token_source>(io, *r.oauth2, key);
        } catch (const std::exception& e) {
          for (auto& p : next_passwords) wipe(p);
          return std::unexpected(key + ": " + e.what());
        }
      }
      continue;
    }
    if (r.user.empty()) continue;
    for (const auto& open : password_files)
      if (open && open->path() == r.password_file) next_files[n] = open;
    std::expected<std::string, std::string> v = std::unexpected(std::string());
    if (!next_files[n]) {
      auto f = secret_file::open(r.password_file);
      if (f) next_files[n] = std::make_shared<secret_file>(std::move(*f));
      else v = std::unexpected(f.error());
    }
    if (next_files[n]) v = next_files[n]->read_first_line();
    if (!v) {
      for (auto& p : next_passwords) wipe(p);
      return std::unexpected(password_key(r, n) + ": cannot read " + r.password_file + " (" +
                             v.error() + ")");
    }
    next_passwords[n] = std::move(*v);
  }
  for (auto& p : passwords) wipe(p);
  routes = std::move(next_routes);
  passwords = std::move(next_passwords);
  password_files = std::move(next_files);
  oauth = std::move(next_oauth);
  return {};
}

std::expected<void, std::string> connector::reconfigure(const config& next) {
  return impl_->use_routes(next);
}

void connector::reload_credentials() {
  auto& m = *impl_;
  for (auto& o : m.oauth)
    if (o) o->reload();
  for (std::size_t n = 0; n < m.routes.size(); ++n) {
    if (!m.password_files[n]) continue;
    const std::string key = password_key(m.routes[n], n);
    if (auto v = m.password_files[n]->read_first_line(); v) {
      wipe(m.passwords[n]);
      m.passwords[n] = std::move(*v);
      spdlog::info("SIGHUP: {} re-read", key);
    } else {
      spdlog::error("SIGHUP: {}: {} (the previous password stays)", key, v.error());
    }
  }
}

awaitable<std::vector<candidate>> connector::impl::candidates(const destination_key& d,
                                                               const route& r,
                                                               dns::mx_result& mx) {
  std::vector<candidate> all;
  std::vector<std::uint32_t> preference;
  // The lambdas run before the co_await returns: what they borrow outlives them.
  if (r.relayhost.empty()) {
    mx = co_await from_callback<void(dns::mx_result)>(
        [&](auto done) { dns.resolve_mx(d.name, std::move(done)); });
    for (const auto& host : mx.hosts)
      for (const auto& addr : host.addresses) {
        preference.push_back(static_cast<std::uint32_t>(all.size()));  // resolver's order
        all.push_back({host.name, addr, r.port, false});
      }
  } else {
    // A pool: every host in list order, the addresses of one host as equals.
    bool resolved = false;
    for (std::size_t i = 0; i < r.relayhost.size(); ++i) {
      const relay_host& h = r.relayhost[i];
      auto one = co_await from_callback<void(dns::mx_result)>(
          [&](auto done) { dns.resolve_host(h.host, std::move(done)); });
      if (one.what != dns::outcome::ok) {
        if (!resolved) mx = std::move(one);
        spdlog::warn("delivery: relayhost {} of route {}: {}", h.to_string(), r.name, one.detail);
        continue;
      }
      resolved = true;
      for (const auto& host : one.hosts)
        for (const auto& addr : host.addresses) {
          preference.push_back(static_cast<std::uint32_t>(i));
          all.push_back({host.name, addr, h.port, h.implicit_tls});
        }
      mx = std::move(one);
    }
  }
  std::vector<candidate> ordered;
  for (auto k : attempt_order(preference, turn++)) ordered.push_back(std::move(all[k]));
  co_return ordered;
}

smtp::client_options connector::impl::session_options(const std::string& host_name,
                                                      bool try_tls, const candidate& c,
                                                      std::size_t route_number,
                                                      const std::string& token) const {
  const route& r = routes[route_number < routes.size() ? route_number : default_route];
  smtp::client_options o;
  o.helo_name = cfg.hostname;
  o.implicit_tls = c.implicit_tls;
  o.want_tls = try_tls && r.tls != tls_policy::none;
  o.require_tls = r.tls == tls_policy::encrypt || r.tls == tls_policy::verify;
  if (!r.relayhost.empty() && !r.user.empty()) {
    o.auth_user = r.user;
    const std::size_t n = route_number < passwords.size() ? route_number : default_route;
    const bool use_token = n < oauth.size() && oauth[n] != nullptr;
    o.auth_password = use_token ? token : passwords[n];
    if (use_token) o.auth_mechanism = r.oauth2->mechanism;
    o.allow_plaintext_auth = is_loopback_host(host_name);
    if (!o.allow_plaintext_auth) {
      o.want_tls = true;
      o.require_tls = true;
    }
  }
  return o;
}

awaitable<setup_result> connector::impl::set_up(delivery_link& l, smtp::client_session& s,
                                                bool verify_name,
                                                std::optional<queue::outcome_cause>& lost) {
  for (;;) {
    auto step = co_await pump(*l.stream, s, l.in, cfg.delivery.command_timeout);
    switch (step.what) {
      case smtp::client_session::event::ready: co_return setup_result::ready;
      case smtp::client_session::event::start_tls: {
        if (auto ec = co_await l.stream->handshake(l.host_name, verify_name,
                                                   cfg.delivery.connect_timeout)) {
          spdlog::warn("TLS handshake with {} failed: {}", l.host_name, ec.message());
          co_return setup_result::tls_failed;
        }
        l.in.clear();
        s.tls_established();
        continue;
      }
      default:
        lost = step.lost;
        co_return setup_result::failed;
    }
  }
}

awaitable<connect_result> connector::open(const destination_key& destination,
                                          bool requiretls) {
  auto& m = *impl_;
  const auto& cfg = m.cfg;
  const std::size_t number = destination.route < m.routes.size() ? destination.route : 0;
  // A copy: a reload may replace m.routes while this connection is being set up.
  const route r = m.routes[number];
  const std::string what =
      number == default_route ? destination.name : "route " + r.name + " (" + destination.name + ")";
  connect_result out;
  const auto started = steady::now();
  const bool smarthost = !r.relayhost.empty();

  dns::mx_result mx;
  const auto hosts = co_await m.candidates(destination, r, mx);
  out.dns_seconds = seconds_since(started);
  if (hosts.empty() && mx.what != dns::outcome::ok) {
    // A relayhost that does not resolve is our configuration or our DNS, not
    // the recipient's domain: the mail waits for it instead of bouncing.
    const std::string relayhost = smarthost ? r.relayhost.front().to_string() : "";
    out.problem = dns_failed(mx, relayhost);
    if (smarthost) spdlog::error("delivery: {}; mail stays queued", out.problem.description);
    co_return out;
  }

  std::string token;  // OAuth2: fetched before connecting (the HTTPS request is async)
  // A copy: a reload may replace m.oauth while this attempt waits.
  const std::shared_ptr<oauth2_token_source> oauth =
      number < m.oauth.size() ? m.oauth[number] : nullptr;
  const bool uses_token = oauth && smarthost && !r.user.empty();
  if (uses_token) {
    auto t = co_await oauth->token();
    if (!t) {
      out.problem = token_failed(t.error());
      out.local_fault = true;
      co_return out;
    }
    token = std::move(*t);
  }
  // MTA-STS (MX delivery only): enforce refuses MX hosts outside the policy and
  // makes verified TLS mandatory; testing only reports.
  mta_sts_verdict sts{destination.name};
  if (!smarthost && m.sts) sts = co_await m.sts->policy_for(destination.name);
  const bool sts_tls = sts.enforced();
  const auto policy = sts.enforced() || sts.testing() ? tls_policy_kind::mta_sts : tls_policy_kind::none;
  const auto connect_started = steady::now();
  out.problem = no_host_answered();
  std::map<std::string, dane_decision> dane_of;  // by MX host: DANE (RFC 7672) first
  requiretls_walk walk;  // requiretls: the hosts that did not qualify
  std::size_t tried = 0, policy_failed = 0;  // hosts; of those, failed their TLS policy
  tls_policy_kind last_policy = policy;  // of the last host tried (relayctl destinations)
  for (const auto& host : hosts) {
    error_code aec;
    auto ip = asio::ip::make_address(host.address, aec);
    if (aec) continue;
    ++tried;
    const std::string relay = fmt::format("{}[{}]:{}", host.host_name, host.address, host.port);
    if (cfg.delivery.dane && !smarthost && !dane_of.contains(host.host_name))
      dane_of[host.host_name] = co_await dane_for_host(m.dns, mx, host.host_name, host.port);
    const dane_decision& dane = dane_of[host.host_name];
    tls_rpt_hop rpt(smarthost ? nullptr : m.reports, destination.name, sts, dane, host.host_name,
                    host.address);
    if (dane.mode == dane_mode::defer) {
      rpt.failed(tls_rpt::result_type::dnssec_invalid, nullptr, dane.why);
      out.problem = dane_failed(relay, dane.why, true);
      last_policy = tls_policy_kind::dane;
      spdlog::warn("delivery to {}: {}", relay, out.problem.text);
      count_tls_policy(m.stats, tls_policy_kind::dane, tls_policy_result::failure);
      ++policy_failed;
      if (requiretls) walk.unreachable();  // deferred, as for any host not reached
      continue;
    }
    // DANE takes precedence over MTA-STS (RFC 8461 2): a host with usable TLSA
    // records is checked against them, not against the STS policy.
    const bool dane_on = dane.mode == dane_mode::enforce;
    const auto host_policy = dane_on ? tls_policy_kind::dane : policy;
    const bool host_sts_tls = !dane_on && sts_tls;
    last_policy = host_policy;
    bool sts_problem = false;  // testing mode: a failure to report once the session is up
    if (host_policy == tls_policy_kind::mta_sts && !sts.allows(host.host_name)) {
      auto refused = mta_sts_mx_refused(sts, relay, host.host_name);
      spdlog::warn("delivery to {}: {}{}", what, refused.description,
                   host_sts_tls ? "" : " (testing mode: delivered anyway)");
      count_tls_policy(m.stats, host_policy,
                       host_sts_tls ? tls_policy_result::failure : tls_policy_result::testing_failure);
      rpt.failed(tls_rpt::result_type::validation_failure, nullptr,
                 "MX host not named by the MTA-STS policy");
      if (host_sts_tls) {
        out.problem = std::move(refused);
        ++policy_failed;
        if (requiretls) walk.unreachable();
        continue;
      }
      sts_problem = true;
    }
    bool try_tls = dane_on || r.tls != tls_policy::none || host_sts_tls || requiretls;
    const bool verify = r.tls == tls_policy::verify || host_sts_tls;
    bool refused_for_requiretls = false;  // requiretls: this host answered and did not qualify
    bool failed_policy = false;  // this host failed DANE or an enforced MTA-STS policy
    const auto not_qualified = [&](requiretls_check c) {
      walk.refused(c, relay);
      refused_for_requiretls = true;
    };
    for (int pass = 0; pass < 2; ++pass) {
      auto& ctx = dane_on ? m.tls_dane : verify ? m.tls_verify : m.tls_any;
      // The SNI: under DANE the TLSA base domain, i.e. the name a secure CNAME
      // led to when the records are there (RFC 7672 8.1, 2.2.2); else the MX host.
      const std::string& tls_name =
          dane_on && !dane.names.empty() ? dane.names.front() : host.host_name;
      delivery_link l{std::make_unique<outbound>(m.io, ctx), nullptr, {}, relay, tls_name};
      if (dane_on) {
        if (auto e = arm_dane(*l.stream, host.host_name, dane); !e.empty()) {
          rpt.failed(tls_rpt::result_type::tlsa_invalid, nullptr, e);
          out.problem = dane_failed(relay, e, false);
          failed_policy = true;
          break;
        }
      }
      if (auto ec = co_await l.stream->connect(tcp::endpoint(ip, host.port),
                                               cfg.delivery.connect_timeout)) {
        out.problem = connect_failed(relay, ec == asio::error::timed_out, ec.message());
        break;
      }
      // smtps://: TLS before the greeting, checked as for STARTTLS; no plaintext fallback.
      if (host.implicit_tls &&
          co_await l.stream->handshake(host.host_name, r.tls == tls_policy::verify,
                                       cfg.delivery.connect_timeout)) {
        out.problem = tls_failed(relay, l.stream->tls_error());
        spdlog::warn("TLS handshake with {} failed: {}", relay, l.stream->tls_error());
        if (requiretls) not_qualified({requiretls_verdict::no_tls});
        break;
      }
      auto options = m.session_options(host.host_name, try_tls, host, number, token);
      if (dane_on || host_sts_tls || requiretls)
        options.want_tls = options.require_tls = true;  // never in plaintext
      l.session = std::make_unique<smtp::client_session>(std::move(options));
      std::optional<queue::outcome_cause> lost;
      const auto res =
          co_await m.set_up(l, *l.session, verify || (!dane_on && sts.testing()), lost);
      if (res == setup_result::ready) {
        if (!sts_problem && pass == 0) rpt.ready(*l.stream, try_tls);  // else counted already
        if (dane_on) {
          spdlog::info("Verified TLS connection established to {}: {} policy=dane", relay,
                       dane_session_summary(*l.stream));
          count_tls_policy(m.stats, tls_policy_kind::dane, tls_policy_result::success);
        } else {
          report_session(m.stats, l, host_policy, sts, sts_problem);
        }
        l.hop = hop_facts(l, smarthost, mx, dane_on, host_sts_tls);
        if (requiretls) {
          // RFC 8689 4.2.1: a host that does not qualify gets QUIT; the next is tried.
          const auto check = check_next_hop(queue::flag_requiretls, l.hop);
          if (!check.may_send()) {
            spdlog::info("delivery to {}: {} does not qualify: {}", what, relay, check.text());
            not_qualified(check);
            l.session->quit();
            co_await pump(*l.stream, *l.session, l.in, cfg.delivery.command_timeout);
            l.stream->close();
            break;
          }
        }
        if (!smarthost) {
          const auto tls = l.stream->tls_session();
          note_tls(m.tls_status, destination, host_policy, sts,
                   tls ? tls_outcome_text(tls->version, dane_on || tls->verified) : "plaintext");
        }
        out.link = std::move(l);
        out.connect_seconds = seconds_since(connect_started);
        co_return out;
      }
      if (res == setup_result::tls_failed) rpt.tls_failed(*l.stream);
      if (res == setup_result::tls_failed && dane_on) {
        count_tls_policy(m.stats, tls_policy_kind::dane, tls_policy_result::failure);
        out.problem = dane_failed(relay, fmt::format("TLS not verified by the TLSA records ({}): {}",
                                                     dane.why, l.stream->tls_error()), false);
        failed_policy = true;
        break;
      }
      if (res == setup_result::tls_failed) {
        out.problem = tls_failed(relay, l.stream->tls_error());
        if (host_policy == tls_policy_kind::mta_sts) sts_failure(m.stats, out.problem, sts, what);
        if (requiretls) {
          not_qualified({requiretls_verdict::no_tls});
          break;
        }
        if (host_sts_tls) {
          failed_policy = true;
          break;  // never plaintext under an enforced policy
        }
        // tls = may: try the same host again in plaintext.
        if (r.tls == tls_policy::may && !l.session->authenticated() && pass == 0) {
          try_tls = false;
          continue;
        }
        break;
      }
      const auto& f = l.session->failure();
      if (f.cause == smtp::failure_cause::tls_unavailable)
        rpt.failed(tls_rpt::result_type::starttls_not_supported, l.stream.get(),
                   "STARTTLS not offered");
      if (requiretls && f.cause == smtp::failure_cause::tls_unavailable) {
        not_qualified({requiretls_verdict::no_tls});
        break;
      }
      out.problem = outcome_of(f, relay, lost);
      if (dane_on && f.cause == smtp::failure_cause::tls_unavailable) {
        count_tls_policy(m.stats, tls_policy_kind::dane, tls_policy_result::failure);
        out.problem = dane_failed(
            relay, fmt::format("{}: TLS is mandatory; {}", dane.why, out.problem.text), false);
        failed_policy = true;
      }
      out.local_fault = f.local_fault;
      if (host_sts_tls && f.cause == smtp::failure_cause::tls_unavailable) {
        sts_failure(m.stats, out.problem, sts, what);
        failed_policy = true;
      }
      if (uses_token && f.cause == smtp::failure_cause::auth_rejected) {
        oauth->refused(token);
        out.token_refused = true;
      }
      // A 421 greeting or EHLO: this host is busy; the next one may not be.
      out.throttled = out.throttled || f.destination_throttled;
      break;
    }
    if (requiretls && !refused_for_requiretls) walk.unreachable();
    if (failed_policy) ++policy_failed;
    if (out.local_fault) break;
  }
  out.tls_policy_failed = !requiretls && !out.local_fault && tried != 0 && policy_failed == tried;
  if (walk.any_refused() && !out.local_fault) out.problem = walk.outcome();
  const bool dane_lookup_failed =
      last_policy == tls_policy_kind::dane && out.problem.cause == queue::outcome_cause::dns;
  if (!smarthost && (out.problem.cause == queue::outcome_cause::tls || dane_lookup_failed))
    note_tls(m.tls_status, destination, last_policy, sts, "failed: " + out.problem.text);
  out.connect_seconds = seconds_since(connect_started);
  wipe(token);
  if (out.local_fault) {
    spdlog::error("delivery to {}: our own configuration is refused: {}", what,
                  out.problem.description);
  }
  co_return out;
}

}  // namespace relayd
