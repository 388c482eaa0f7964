// relayd/config.cpp: reads relayd.toml (DESIGN.md "Configuration") into relayd::config.
// Every table is walked against a fixed schema, so unknown keys, wrong types and bad
// values are all found; the first problem in file order is returned as
// "FILE: KEY: what is wrong" (TOML syntax errors as "FILE:LINE:COLUMN: ..."). Nothing throws.
//
// Decisions worth knowing:
// - Durations and sizes may also be TOML integers (seconds, bytes); negatives are rejected
//   and durations are capped at 36500d so that adding them to a clock cannot overflow.
// - Port 0 ("kernel picks") is accepted only for listeners (smtp.listen, smtp.submission,
//   smtp.smtps, metrics.listen); a listener without a port gets its service's port
//   (25, 587, 465, 9587), delivery.relayhost 25, delivery.dns_servers 53.
// - mynetworks entries with host bits set ("127.0.0.1/8") are accepted and masked
//   (127.0.0.0/8); "::ffff:a.b.c.d/N" with N >= 96 is stored as the IPv4 block a.b.c.d/N-96.
// - smtp.max_connections is at most 500000 (the daemon raises the open-file limit to twice
//   that plus 256) and queue.max_spool_size at most 1024T (the map's growth arithmetic).
// - An empty string means "unset" for hostname (system host name), tls.*, auth.users,
//   delivery.relayhost* and metrics.listen (disabled).
//
// The reader is split by part (config_loader.hpp names the files); this one holds
// the entry points, the walk over tables with its "did you mean" hints, the
// top-level schema with the small sections, and the checks between keys.
#include "relayd/config.hpp"

#include <toml++/toml.h>
#include <unistd.h>

#include <algorithm>
#include <utility>

#include "relayd/config_loader.hpp"
#include "relayd/duration_text.hpp"
#include "relayd/read_file.hpp"
#include "smtp/address.hpp"
#include "smtp/text.hpp"

namespace relayd {
namespace config_detail {
namespace {

std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diag = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

std::string system_host_name() {
  char buf[256] = {};
  if (gethostname(buf, sizeof buf - 1) != 0) return "localhost";
  return buf[0] != '\0' ? std::string(buf) : std::string("localhost");
}

}  // namespace

const char* type_name(toml::node_type t) {
  switch (t) {
    case toml::node_type::table:
      return "a table";
    case toml::node_type::array:
      return "an array";
    case toml::node_type::string:
      return "a string";
    case toml::node_type::integer:
      return "an integer";
    case toml::node_type::floating_point:
      return "a float";
    case toml::node_type::boolean:
      return "a boolean";
    case toml::node_type::date:
      return "a date";
    case toml::node_type::time:
      return "a time";
    case toml::node_type::date_time:
      return "a date-time";
    case toml::node_type::none:
      break;
  }
  return "nothing";
}

bool is_ip_literal(std::string_view s) {
  std::uint8_t buf[16];
  return parse_ipv4(s, buf) || parse_ipv6(s, buf);
}

// POSIX portable user and group names, plus what useradd allows in practice.
bool valid_user_name(std::string_view s) {
  return s.size() <= 32 && (s.empty() || s[0] != '-') && std::ranges::all_of(s, [](char c) {
           return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || smtp::text::is_digit(c) ||
                  c == '_' || c == '-' || c == '.';
         });
}

// "user@domain" as an SMTP mailbox (RFC 5321 4.1.2; UTF-8 allowed).
bool valid_address(std::string_view s) {
  return s.find('@') != std::string_view::npos && smtp::check_mailbox(s, true).has_value();
}

void loader::read_table(const toml::table& t, const std::string& prefix,
                        std::span<const field> fields) {
  for (auto&& [k, v] : t) {
    const std::string name(k.str());
    const std::string key = prefix.empty() ? name : prefix + "." + name;
    const auto it = std::ranges::find(fields, std::string_view(name), &field::name);
    if (it != fields.end()) {
      it->read(v, key);
      continue;
    }
    std::string what = prefix.empty() && v.is_table() ? "unknown table" : "unknown key";
    std::string_view best;
    std::size_t best_distance = 3;
    for (const field& f : fields) {
      const std::size_t d = edit_distance(name, f.name);
      if (d < best_distance && d < f.name.size()) best = f.name, best_distance = d;
    }
    if (!best.empty()) what += " (did you mean " + std::string(best) + "?)";
    fail(k.source(), key, std::move(what));
  }
}

field loader::section(std::string_view name, std::vector<field> fields) {
  return {name, [this, fields = std::move(fields)](const toml::node& n, const std::string& key) {
            if (const toml::table* t = n.as_table())
              read_table(*t, key, fields);
            else
              wrong_type(n, key, "a table");
          }};
}

std::vector<field> loader::schema() {
  auto& smtp = c_.smtp;
  auto& queue = c_.queue;
  return {
      {"hostname",
       [this](const toml::node& n, const std::string& key) {
         auto s = string(n, key);
         if (!s || s->empty()) return;
         if (!valid_domain(*s)) {
           fail(n, key, "bad host name " + quoted(*s) + " (use a domain like relay.example.org)");
           return;
         }
         c_.hostname = std::move(*s);
         hostname_set_ = true;
       }},
      {"spool", non_empty_path(c_.spool)},
      {"user",
       [this](const toml::node& n, const std::string& key) {
         auto s = string(n, key);
         if (!s) return;
         if (!valid_user_name(*s))
           fail(n, key, "bad user name " + quoted(*s));
         else
           c_.user = std::move(*s);
       }},
      section(
          "smtp",
          {
              {"listen", listeners(smtp.listen, 25)},
              {"submission", listeners(smtp.submission, 587)},
              {"smtps", listeners(smtp.smtps, 465)},
              {"mynetworks",
               [this](const toml::node& n, const std::string& key) {
                 set(c_.smtp.mynetworks, networks(n, key));
               }},
              {"max_message_size", positive_size(smtp.max_message_size)},
              {"max_recipients", count_at_least_1(smtp.max_recipients)},
              {"max_connections", count_at_least_1(smtp.max_connections, max_connections_cap)},
              {"max_connections_per_client", count_at_least_1(smtp.max_connections_per_client)},
              {"idle_timeout", positive_duration(smtp.idle_timeout)},
              {"data_timeout", positive_duration(smtp.data_timeout)},
              {"max_errors", count_at_least_1(smtp.max_errors)},
              {"max_header_size", positive_size(smtp.max_header_size)},
              {"max_connection_rate_per_client", any_count(smtp.max_connection_rate_per_client)},
              {"max_data_memory", any_size(smtp.max_data_memory)},
          }),
      section("tls",
              {
                  {"cert", optional_path(c_.tls.cert)},
                  {"key", optional_path(c_.tls.key)},
              }),
      section("auth",
              {
                  {"users", optional_path(c_.auth.users)},
                  {"allow_plaintext_loopback", flag(c_.auth.allow_plaintext_loopback)},
              }),
      delivery_section(),
      section("queue",
              {
                  {"min_backoff", positive_duration(queue.min_backoff)},
                  {"max_backoff", positive_duration(queue.max_backoff)},
                  {"max_lifetime", positive_duration(queue.max_lifetime)},
                  {"delay_warning", any_duration(queue.delay_warning)},
                  {"dead_retention", any_duration(queue.dead_retention)},
                  {"max_messages", any_count(queue.max_messages)},
                  {"min_free_disk", any_size(queue.min_free_disk)},
                  {"max_spool_size",
                   [this](const toml::node& n, const std::string& key) {
                     auto v = size(n, key);
                     if (v && *v > max_spool_size_cap)
                       fail(n, key, "must be at most 1024T, got " + std::to_string(*v) + " bytes");
                     else
                       set(c_.queue.max_spool_size, std::move(v));
                   }},
                  {"bounces", flag(c_.queue.bounces)},
              }),
      control_section(),
      local_section(),
      {"route", [this](const toml::node& n, const std::string& key) { read_routes(n, key); }},
      {"destination",
       [this](const toml::node& n, const std::string& key) { read_destinations(n, key); }},
      section("metrics",
              {
                  {"listen",
                   [this](const toml::node& n, const std::string& key) {
                     set(c_.metrics.listen, address(n, key, 9587, true));
                   }},
                  {"destinations_top",
                   [this](const toml::node& n, const std::string& key) {
                     auto v = count(n, key);
                     if (v && (*v < 1 || *v > 1000))
                       fail(n, key, "must be 1 to 1000");
                     else
                       set(c_.metrics.destinations_top, std::move(v));
                   }},
              }),
      section("events",
              {
                  {"file", [this](const toml::node& n,
                                  const std::string& key) { set(c_.events.file, path(n, key)); }},
                  {"webhook",
                   [this](const toml::node& n, const std::string& key) {
                     auto v = string(n, key);
                     if (!v) return;
                     const auto rest = v->starts_with("https://")  ? v->substr(8)
                                       : v->starts_with("http://") ? v->substr(7)
                                                                   : std::string();
                     if (!v->empty() &&
                         (rest.empty() || rest.front() == '/' || rest.front() == ':'))
                       fail(n, key,
                            "expected an http:// or https:// URL with a host, got " + quoted(*v));
                     else
                       c_.events.webhook = std::move(*v);
                   }},
              }),
      dkim_field(),
      {"dkim_check_interval", positive_duration(c_.dkim_check_interval)},
      section("log",
              {
                  {"level",
                   [this](const toml::node& n, const std::string& key) {
                     auto s = string(n, key);
                     if (!s) return;
                     constexpr std::pair<std::string_view, log_level> names[] = {
                         {"debug", log_level::debug},
                         {"info", log_level::info},
                         {"notice", log_level::notice},
                         {"warning", log_level::warning},
                         {"error", log_level::error}};
                     for (const auto& [name, level] : names)
                       if (*s == name) return void(c_.log.level = level);
                     fail(n, key,
                          "bad value " + quoted(*s) +
                              " (use debug, info, notice, warning or error)");
                   }},
              }),
  };
}

// Checks between keys, run once every key on its own is fine.
std::optional<std::string> loader::cross_checks() {
  const auto& smtp = c_.smtp;
  if (smtp.listen.empty() && smtp.submission.empty() && smtp.smtps.empty())
    return error("smtp", "no listener (smtp.listen, smtp.submission and smtp.smtps are all empty)");
  {
    std::vector<std::pair<std::string, std::string_view>> seen;
    auto check = [&](const std::vector<endpoint>& list,
                     std::string_view key) -> std::optional<std::string> {
      for (const endpoint& e : list) {
        if (e.port == 0) continue;
        const std::string text = e.to_string();
        const auto it = std::ranges::find(seen, text, &decltype(seen)::value_type::first);
        if (it != seen.end()) return error(key, text + " is also in " + std::string(it->second));
        seen.emplace_back(text, key);
      }
      return std::nullopt;
    };
    std::vector<endpoint> metrics;
    if (c_.metrics.listen) metrics.push_back(*c_.metrics.listen);
    for (auto r : {check(smtp.listen, "smtp.listen"), check(smtp.submission, "smtp.submission"),
                   check(smtp.smtps, "smtp.smtps"), check(metrics, "metrics.listen")})
      if (r) return r;
  }
  if (smtp.max_connections_per_client > smtp.max_connections)
    return error("smtp.max_connections_per_client",
                 std::to_string(smtp.max_connections_per_client) +
                     " is greater than smtp.max_connections (" +
                     std::to_string(smtp.max_connections) + ")");
  if (c_.tls.cert.empty() != c_.tls.key.empty())
    return c_.tls.cert.empty() ? error("tls.cert", "must be set when tls.key is set")
                               : error("tls.key", "must be set when tls.cert is set");
  const auto& d = c_.delivery;
  if (d.relayhost_oauth2 && !d.relayhost_password_file.empty())
    return error("delivery.relayhost_oauth2",
                 "excludes delivery.relayhost_password_file (set one of them)");
  if (d.relayhost_oauth2 && d.relayhost_user.empty())
    return error("delivery.relayhost_user",
                 "must be set with delivery.relayhost_oauth2 (the "
                 "user name sent with the token)");
  if (!d.relayhost_user.empty() && d.relayhost_password_file.empty() && !d.relayhost_oauth2)
    return error("delivery.relayhost_password_file",
                 "must be set when delivery.relayhost_user is set (or delivery.relayhost_oauth2)");
  if (!d.relayhost_user.empty() && !d.relayhost)
    return error("delivery.relayhost_user", "is set but delivery.relayhost is empty");
  // The AD bit is only worth what the resolver that sets it is worth.
  if (d.dane && d.dns_servers.empty())
    return error("delivery.dane",
                 "needs delivery.dns_servers naming a DNSSEC-validating "
                 "resolver relayd can trust (e.g. [\"127.0.0.1\"])");
  const auto& q = c_.queue;
  if (q.min_backoff > q.max_backoff)
    return error("queue.min_backoff", duration_text(q.min_backoff) +
                                          " is greater than queue.max_backoff (" +
                                          duration_text(q.max_backoff) + ")");
  return std::nullopt;
}

std::expected<config, std::string> loader::run(const toml::table& doc) {
  c_.smtp.listen = {endpoint{"127.0.0.1", 25}, endpoint{"::1", 25}};
  c_.smtp.mynetworks = {*parse_cidr("127.0.0.0/8"), *parse_cidr("::1/128")};

  const std::vector<field> top = schema();
  read_table(doc, "", top);
  if (!problems_.empty()) {
    const auto first = std::ranges::min_element(problems_, [](const problem& a, const problem& b) {
      return std::pair(a.line, a.column) < std::pair(b.line, b.column);
    });
    return std::unexpected(error(first->key, first->what));
  }
  if (!hostname_set_) {
    c_.hostname = system_host_name();
    if (!valid_domain(c_.hostname))
      return std::unexpected(error("hostname", "the system host name " + quoted(c_.hostname) +
                                                   " is not a valid domain; set hostname"));
  }
  // Bare names ("root", cron's "www-data") become user@hostname, as Postfix's
  // myorigin = $myhostname does: the host name is a local domain, so they reach
  // the aliases table instead of leaving for the parent domain's MX.
  if (c_.local.domain.empty()) c_.local.domain = smtp::text::lower(c_.hostname);
  if (c_.local.domains.empty()) c_.local.domains = {smtp::text::lower(c_.hostname), "localhost"};
  if (auto e = cross_checks()) return std::unexpected(std::move(*e));
  return std::move(c_);
}

}  // namespace config_detail

std::expected<config, std::string> parse_config(std::string_view text, std::string_view origin) {
  toml::table doc;
  try {
    doc = toml::parse(text, origin);
  } catch (const toml::parse_error& e) {
    const auto& at = e.source().begin;
    return std::unexpected(std::string(origin) + ":" + std::to_string(at.line) + ":" +
                           std::to_string(at.column) + ": " + std::string(e.description()));
  }
  return config_detail::loader(origin).run(doc);
}

std::string relay_host::to_string() const {
  const std::string text = endpoint{host, port}.to_string();
  return implicit_tls ? "smtps://" + text : text;
}

std::expected<config, std::string> load_config(const std::string& path) {
  auto text = read_file(path);
  if (!text) return std::unexpected(text.error());
  return parse_config(*text, path);
}

}  // namespace relayd
