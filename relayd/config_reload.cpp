// Implements config_reload.hpp.
#include "relayd/config_reload.hpp"

#include <algorithm>
#include <utility>

namespace relayd {
namespace {

std::vector<std::string> texts(const std::vector<endpoint>& v) {
  std::vector<std::string> out;
  for (const auto& e : v) out.push_back(e.to_string());
  return out;
}

bool same(const std::optional<endpoint>& a, const std::optional<endpoint>& b) {
  return a.has_value() == b.has_value() && (!a || a->to_string() == b->to_string());
}

bool same(const std::optional<oauth2_settings>& a, const std::optional<oauth2_settings>& b) {
  if (a.has_value() != b.has_value()) return false;
  if (!a) return true;
  return a->token_url == b->token_url && a->client_id == b->client_id &&
         a->client_secret_file == b->client_secret_file &&
         a->refresh_token_file == b->refresh_token_file && a->scope == b->scope &&
         a->mechanism == b->mechanism;
}

bool same_networks(const std::vector<cidr>& a, const std::vector<cidr>& b) {
  return std::ranges::equal(a, b, [](const cidr& x, const cidr& y) {
    return x.v6 == y.v6 && x.prefix == y.prefix && std::ranges::equal(x.addr, y.addr);
  });
}

bool same_dkim(const std::vector<config::dkim_entry>& a, const std::vector<config::dkim_entry>& b) {
  return std::ranges::equal(a, b, [](const auto& x, const auto& y) {
    return x.domain == y.domain && x.selector == y.selector && x.key == y.key &&
           x.match == y.match && x.subdomains == y.subdomains && x.require_dns == y.require_dns &&
           x.expire == y.expire;
  });
}

bool same_routes(const std::vector<route>& a, const std::vector<route>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const route& x = a[i];
    const route& y = b[i];
    std::vector<std::string> hx, hy;
    for (const auto& h : x.relayhost) hx.push_back(h.to_string());
    for (const auto& h : y.relayhost) hy.push_back(h.to_string());
    if (x.name != y.name || x.sender != y.sender || x.sender_domain != y.sender_domain ||
        x.recipient_domain != y.recipient_domain || hx != hy || x.user != y.user ||
        x.password_file != y.password_file || x.tls != y.tls || x.port != y.port ||
        x.rewrite_sender != y.rewrite_sender || x.rewrite_from != y.rewrite_from)
      return false;
  }
  return true;
}

// Keeps `running`'s value of one restart-only key in `next`, noting a change.
template <typename T, typename Same>
void keep(T& next, const T& running, const char* key, Same same_value,
          std::vector<std::string>& restart_needed) {
  if (!same_value(next, running)) restart_needed.emplace_back(key);
  next = running;
}

template <typename T>
void keep(T& next, const T& running, const char* key, std::vector<std::string>& restart_needed) {
  keep(next, running, key, [](const T& a, const T& b) { return a == b; }, restart_needed);
}

void keep_endpoints(std::vector<endpoint>& next, const std::vector<endpoint>& running,
                    const char* key, std::vector<std::string>& restart_needed) {
  keep(next, running, key,
       [](const auto& a, const auto& b) { return texts(a) == texts(b); }, restart_needed);
}

}  // namespace

std::expected<reload_plan, std::string> plan_reload(const config& running, config fresh) {
  reload_plan p;
  auto& r = p.restart_needed;
  // Bound or opened at start.
  keep(fresh.spool, running.spool, "spool", r);
  keep(fresh.user, running.user, "user", r);
  keep_endpoints(fresh.smtp.listen, running.smtp.listen, "smtp.listen", r);
  keep_endpoints(fresh.smtp.submission, running.smtp.submission, "smtp.submission", r);
  keep_endpoints(fresh.smtp.smtps, running.smtp.smtps, "smtp.smtps", r);
  keep(fresh.local.socket, running.local.socket, "local.socket", r);
  keep(fresh.local.maildrop, running.local.maildrop, "local.maildrop", r);
  keep(fresh.local.maildrop_group, running.local.maildrop_group, "local.maildrop_group", r);
  keep(fresh.control.socket, running.control.socket, "control.socket", r);
  keep(fresh.control.admin_group, running.control.admin_group, "control.admin_group", r);
  keep(fresh.metrics.listen, running.metrics.listen, "metrics.listen",
       [](const auto& a, const auto& b) { return same(a, b); }, r);
  // Built at start: the resolver, the token source, the spool's limits, the
  // dead-spool retention timer.
  keep_endpoints(fresh.delivery.dns_servers, running.delivery.dns_servers,
                 "delivery.dns_servers", r);
  keep(fresh.delivery.relayhost_oauth2, running.delivery.relayhost_oauth2,
       "delivery.relayhost_oauth2", [](const auto& a, const auto& b) { return same(a, b); }, r);
  keep(fresh.queue.max_messages, running.queue.max_messages, "queue.max_messages", r);
  keep(fresh.queue.min_free_disk, running.queue.min_free_disk, "queue.min_free_disk", r);
  keep(fresh.queue.max_spool_size, running.queue.max_spool_size, "queue.max_spool_size", r);
  keep(fresh.queue.dead_retention, running.queue.dead_retention, "queue.dead_retention", r);
  // The TLS report service is built at start with its addresses.
  keep(fresh.delivery.tls_rpt, running.delivery.tls_rpt, "delivery.tls_rpt", r);
  keep(fresh.delivery.tls_rpt_from, running.delivery.tls_rpt_from, "delivery.tls_rpt_from", r);
  keep(fresh.delivery.tls_rpt_organization, running.delivery.tls_rpt_organization,
       "delivery.tls_rpt_organization", r);

  if ((!fresh.smtp.submission.empty() || !fresh.smtp.smtps.empty()) && fresh.tls.cert.empty())
    return std::unexpected(std::string(
        "tls.cert: must stay set while smtp.submission or smtp.smtps listen"));
  if (!fresh.smtp.submission.empty() && fresh.auth.users.empty())
    return std::unexpected(std::string("auth.users: must stay set while smtp.submission listens"));

  const auto& a = running;
  const auto& b = fresh;
  p.retry_changed = a.queue.min_backoff != b.queue.min_backoff ||
                    a.queue.max_backoff != b.queue.max_backoff;
  if (p.retry_changed || a.queue.max_lifetime != b.queue.max_lifetime ||
      a.queue.delay_warning != b.queue.delay_warning || a.queue.bounces != b.queue.bounces)
    p.changed.emplace_back("queue");
  if (a.hostname != b.hostname) p.changed.emplace_back("hostname");
  if (!same_networks(a.smtp.mynetworks, b.smtp.mynetworks) ||
      a.smtp.max_message_size != b.smtp.max_message_size ||
      a.smtp.max_recipients != b.smtp.max_recipients ||
      a.smtp.max_connections != b.smtp.max_connections ||
      a.smtp.max_connections_per_client != b.smtp.max_connections_per_client ||
      a.smtp.idle_timeout != b.smtp.idle_timeout || a.smtp.data_timeout != b.smtp.data_timeout ||
      a.smtp.max_errors != b.smtp.max_errors || a.smtp.max_header_size != b.smtp.max_header_size ||
      a.smtp.max_connection_rate_per_client != b.smtp.max_connection_rate_per_client ||
      a.smtp.max_data_memory != b.smtp.max_data_memory)
    p.changed.emplace_back("smtp");
  if (a.tls.cert != b.tls.cert || a.tls.key != b.tls.key) p.changed.emplace_back("tls");
  if (a.auth.users != b.auth.users ||
      a.auth.allow_plaintext_loopback != b.auth.allow_plaintext_loopback)
    p.changed.emplace_back("auth");
  const auto host = [](const std::optional<relay_host>& h) { return h ? h->to_string() : ""; };
  if (host(a.delivery.relayhost) != host(b.delivery.relayhost) ||
      a.delivery.relayhost_user != b.delivery.relayhost_user ||
      a.delivery.relayhost_password_file != b.delivery.relayhost_password_file ||
      a.delivery.port != b.delivery.port || a.delivery.tls != b.delivery.tls ||
      a.delivery.concurrency_per_destination != b.delivery.concurrency_per_destination ||
      a.delivery.connect_timeout != b.delivery.connect_timeout ||
      a.delivery.command_timeout != b.delivery.command_timeout)
    p.changed.emplace_back("delivery");
  if (!same_routes(a.routes, b.routes)) p.changed.emplace_back("route");
  if (a.local.domain != b.local.domain || a.local.domains != b.local.domains ||
      a.local.aliases != b.local.aliases || a.local.fallback != b.local.fallback ||
      a.local.masquerade != b.local.masquerade || a.local.allowed_users != b.local.allowed_users ||
      a.local.senders != b.local.senders)
    p.changed.emplace_back("local");
  if (!same_dkim(a.dkim, b.dkim)) p.changed.emplace_back("dkim");
  if (a.log.level != b.log.level) p.changed.emplace_back("log");
  p.next = std::move(fresh);
  return p;
}

}  // namespace relayd
