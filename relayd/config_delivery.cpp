// relayd/config_delivery.cpp: the delivery side of relayd.toml (config_loader.hpp):
// [delivery], the [[route]] entries with their relayhosts, credentials and TLS
// policies, [[destination]] with its reply rules, and [[dkim]] keys. Each value is
// checked by the same parser the daemon uses (delivery_destination.hpp,
// delivery_rate.hpp), so what --check-config accepts is what runs.
#include <toml++/toml.h>

#include <algorithm>
#include <utility>

#include "relayd/config_loader.hpp"
#include "relayd/delivery_destination.hpp"
#include "smtp/address.hpp"
#include "smtp/text.hpp"

namespace relayd::config_detail {
namespace {

// "smtp://[host]:port", "smtps://[host]:port" (465 by default) or the bare
// "[host]:port" (smtp). A bare port 465 is refused: that port speaks TLS first,
// and an smtp:// client would wait for a greeting that never comes.
std::expected<relay_host, std::string> parse_relay_host(std::string_view s) {
  relay_host r;
  std::string_view rest = s;
  const bool bare = !rest.starts_with("smtp://") && !rest.starts_with("smtps://");
  if (rest.starts_with("smtps://")) r.implicit_tls = true;
  if (!bare) rest.remove_prefix(rest.find("://") + 3);
  if (bare && rest.find("://") != std::string_view::npos)
    return std::unexpected("unknown scheme in " + quoted(s) + " (use smtp:// or smtps://)");
  auto e = parse_endpoint(rest, r.implicit_tls ? 465 : 25);
  if (!e) return std::unexpected(e.error());
  if (e->port == 0)
    return std::unexpected("port 0 in " + quoted(s) + " (0 is only allowed for listeners)");
  if (bare && e->port == 465)
    return std::unexpected("port 465 is implicit TLS: write smtps://[" + e->host + "]:465");
  r.host = std::move(e->host);
  r.port = e->port;
  return r;
}

}  // namespace

field loader::delivery_section() {
  return section(
      "delivery",
      {
          {"relayhost",
           [this](const toml::node& n, const std::string& key) {
             auto s = string(n, key);
             if (s && s->empty())
               c_.delivery.relayhost.reset();
             else if (auto h = s ? relay(n, key) : std::nullopt)
               c_.delivery.relayhost = std::move(*h);
           }},
          {"relayhost_user",
           [this](const toml::node& n, const std::string& key) {
             set(c_.delivery.relayhost_user, string(n, key));
           }},
          {"relayhost_password_file", optional_path(c_.delivery.relayhost_password_file)},
          {"relayhost_oauth2",
           [this](const toml::node& n, const std::string& key) {
             if (auto o = oauth2(n, key)) c_.delivery.relayhost_oauth2 = std::move(*o);
           }},
          {"port", [this](const toml::node& n,
                          const std::string& key) { set(c_.delivery.port, port_value(n, key)); }},
          {"dns_servers",
           [this](const toml::node& n, const std::string& key) {
             auto v = addresses(n, key, 53, false);
             if (!v) return;
             for (const endpoint& e : *v) {
               if (!is_ip_literal(e.host)) {
                 fail(n, key, quoted(e.host) + " is not an IP address");
                 return;
               }
             }
             c_.delivery.dns_servers = std::move(*v);
           }},
          {"tls", [this](const toml::node& n,
                         const std::string& key) { set(c_.delivery.tls, tls_value(n, key)); }},
          {"dane", flag(c_.delivery.dane)},
          {"concurrency_per_destination",
           count_at_least_1(c_.delivery.concurrency_per_destination)},
          {"connect_timeout", positive_duration(c_.delivery.connect_timeout)},
          {"command_timeout", positive_duration(c_.delivery.command_timeout)},
          {"mta_sts", flag(c_.delivery.mta_sts)},
          {"mta_sts_port",
           [this](const toml::node& n, const std::string& key) {
             set(c_.delivery.mta_sts_port, port_value(n, key));
           }},
          {"provider_profiles", flag(c_.delivery.provider_profiles)},
          {"tls_rpt", flag(c_.delivery.tls_rpt)},
          {"tls_rpt_from", optional_address(c_.delivery.tls_rpt_from)},
          {"tls_rpt_organization",
           [this](const toml::node& n, const std::string& key) {
             set(c_.delivery.tls_rpt_organization, string(n, key));
           }},
      });
}

std::optional<relay_host> loader::relay(const toml::node& n, const std::string& key) {
  auto s = string(n, key);
  if (!s) return std::nullopt;
  auto r = parse_relay_host(*s);
  if (!r) fail(n, key, r.error());
  return r ? std::optional<relay_host>(std::move(*r)) : std::nullopt;
}

std::optional<tls_policy> loader::tls_value(const toml::node& n, const std::string& key) {
  auto s = string(n, key);
  if (!s) return std::nullopt;
  constexpr std::pair<std::string_view, tls_policy> names[] = {{"none", tls_policy::none},
                                                               {"may", tls_policy::may},
                                                               {"encrypt", tls_policy::encrypt},
                                                               {"verify", tls_policy::verify}};
  for (const auto& [name, policy] : names)
    if (*s == name) return policy;
  fail(n, key, "bad value " + quoted(*s) + " (use none, may, encrypt or verify)");
  return std::nullopt;
}

std::optional<std::uint16_t> loader::port_value(const toml::node& n, const std::string& key) {
  auto v = count(n, key);
  if (v && (*v == 0 || *v > 65535)) {
    fail(n, key, "port " + std::to_string(*v) + " out of range (1-65535)");
    return std::nullopt;
  }
  return v ? std::optional<std::uint16_t>(static_cast<std::uint16_t>(*v)) : std::nullopt;
}

std::optional<oauth2_settings> loader::oauth2(const toml::node& n, const std::string& key) {
  const toml::table* t = n.as_table();
  if (t == nullptr) {
    wrong_type(n, key, "a table { token_url = \"https://...\", client_id = ..., ... }");
    return std::nullopt;
  }
  oauth2_settings o;
  auto text = [this](std::string& target) {
    return
        [this, &target](const toml::node& v, const std::string& k) { set(target, string(v, k)); };
  };
  auto file = [this](std::string& target) {
    return [this, &target](const toml::node& v, const std::string& k) { set(target, path(v, k)); };
  };
  const std::size_t before = problems_.size();
  const field fields[] = {
      {"token_url", text(o.token_url)},
      {"client_id", text(o.client_id)},
      {"client_secret_file", file(o.client_secret_file)},
      {"refresh_token_file", file(o.refresh_token_file)},
      {"scope", text(o.scope)},
      {"mechanism",
       [&](const toml::node& v, const std::string& k) {
         auto s = string(v, k);
         if (s && *s == "xoauth2")
           o.mechanism = smtp::sasl_mechanism::xoauth2;
         else if (s && *s == "oauthbearer")
           o.mechanism = smtp::sasl_mechanism::oauthbearer;
         else if (s)
           fail(v, k, "expected \"xoauth2\" or \"oauthbearer\", got " + quoted(*s));
       }},
  };
  read_table(*t, key, fields);
  if (!o.token_url.starts_with("https://") || o.token_url.size() <= 8)
    fail(n, key + ".token_url", "must be an https:// URL, got " + quoted(o.token_url));
  if (o.client_id.empty()) fail(n, key + ".client_id", "must be set");
  if (o.refresh_token_file.empty()) fail(n, key + ".refresh_token_file", "must be set");
  if (problems_.size() != before) return std::nullopt;
  return o;
}

// [[route]]: an array of tables; each entry is checked on its own here.
void loader::read_routes(const toml::node& n, const std::string& key) {
  const toml::array* a = n.as_array();
  if (a == nullptr || !a->is_array_of_tables())
    return wrong_type(n, key, "an array of tables ([[route]])");
  for (std::size_t i = 0; i < a->size(); ++i) {
    const toml::node& entry = *a->get(i);
    const std::string k = key + "[" + std::to_string(i + 1) + "]";
    route r;
    r.name = "route" + std::to_string(i + 1);
    r.tls = c_.delivery.tls;  // toml++ walks keys in order: [delivery] came first
    auto text = [this](std::string& target) {
      return [this, &target](const toml::node& v, const std::string& kk) {
        set(target, string(v, kk));
      };
    };
    auto domain = [this](std::string& target) {
      return [this, &target](const toml::node& v, const std::string& kk) {
        auto s = string(v, kk);
        if (s && !valid_domain(*s)) return fail(v, kk, "bad domain " + quoted(*s));
        if (s) target = smtp::text::lower(*s);
      };
    };
    auto mailbox = [this](std::string& target) {
      return [this, &target](const toml::node& v, const std::string& kk) {
        auto s = string(v, kk);
        if (s && !valid_address(*s))
          return fail(v, kk, "bad address " + quoted(*s) + " (use user@domain)");
        if (s) target = *s;
      };
    };
    const std::vector<field> fields = {
        {"name", text(r.name)},
        {"sender",
         [&](const toml::node& v, const std::string& kk) {
           mailbox(r.sender)(v, kk);
           r.sender = smtp::text::lower(r.sender);  // matched case-insensitively
         }},
        {"sender_domain", domain(r.sender_domain)},
        {"recipient_domain", domain(r.recipient_domain)},
        {"relayhost",
         [this, &r](const toml::node& v, const std::string& kk) {
           if (const auto* s = v.as_string(); s && s->get().empty()) return;
           if (v.is_string()) {
             if (auto h = relay(v, kk)) r.relayhost.push_back(std::move(*h));
             return;
           }
           if (auto items = strings(v, kk))
             for (const auto& [t, item] : *items)
               if (auto h = relay(*item, kk)) r.relayhost.push_back(std::move(*h));
         }},
        {"user", text(r.user)},
        {"password_file", [this, &r](const toml::node& v,
                                     const std::string& kk) { set(r.password_file, path(v, kk)); }},
        {"oauth2",
         [this, &r](const toml::node& v, const std::string& kk) {
           if (auto o = oauth2(v, kk)) r.oauth2 = std::move(*o);
         }},
        {"tls",
         [this, &r](const toml::node& v, const std::string& kk) { set(r.tls, tls_value(v, kk)); }},
        {"port", [this, &r](const toml::node& v,
                            const std::string& kk) { set(r.port, port_value(v, kk)); }},
        {"rewrite_sender", mailbox(r.rewrite_sender)},
        {"rewrite_from", mailbox(r.rewrite_from)},
    };
    const std::size_t problems_before = problems_.size();
    read_table(*entry.as_table(), k, fields);
    if (problems_.size() != problems_before) continue;  // a key of its own was wrong
    const int matches = !r.sender.empty() + !r.sender_domain.empty() + !r.recipient_domain.empty();
    if (matches != 1)
      fail(entry, k, "needs exactly one of sender, sender_domain or recipient_domain");
    else if (!r.recipient_domain.empty() && (!r.rewrite_sender.empty() || !r.rewrite_from.empty()))
      fail(entry, k + (r.rewrite_sender.empty() ? ".rewrite_from" : ".rewrite_sender"),
           "is not supported on a recipient_domain route (mail is rewritten when accepted, "
           "for the sender's route only; use sender or sender_domain)");
    else if (r.oauth2 && !r.password_file.empty())
      fail(entry, k + ".oauth2", "excludes password_file (set one of them)");
    else if (r.oauth2 && r.user.empty())
      fail(entry, k + ".user", "must be set with oauth2 (the user name sent with the token)");
    else if (!r.user.empty() && r.password_file.empty() && !r.oauth2)
      fail(entry, k + ".password_file", "must be set when user is set (or oauth2)");
    else if (!r.user.empty() && r.relayhost.empty())
      fail(entry, k + ".user", "is set but relayhost is empty (MX delivery does not log in)");
    else if (std::ranges::find(c_.routes, r.name, &route::name) != c_.routes.end())
      fail(entry, k + ".name", quoted(r.name) + " is used by another [[route]]");
    c_.routes.push_back(std::move(r));
  }
}

// [[destination]] with its [[destination.rule]]s: each value is checked by the
// parser of delivery_destination.hpp / delivery_rate.hpp that the daemon uses.
void loader::read_destinations(const toml::node& n, const std::string& key) {
  const toml::array* a = n.as_array();
  if (a == nullptr || !a->is_array_of_tables())
    return wrong_type(n, key, "an array of tables ([[destination]])");
  for (std::size_t i = 0; i < a->size(); ++i) {
    const toml::table& t = *a->get(i)->as_table();
    const std::string k = key + "[" + std::to_string(i + 1) + "]";
    destination_settings d;
    auto checked = [this](auto parse) {
      return [this, parse](std::string& target) {
        return [this, parse, &target](const toml::node& v, const std::string& kk) {
          auto s = string(v, kk);
          if (!s) return;
          if (auto r = parse(*s); !r) return fail(v, kk, r.error());
          target = *s;
        };
      };
    };
    auto rate_text = checked([](const std::string& s) { return parse_rate(s); });
    const std::vector<field> fields = {
        {"match",
         [&](const toml::node& v, const std::string& kk) {
           auto s = string(v, kk);
           if (!s) return;
           if (auto m = parse_destination_match(*s); !m) return fail(v, kk, m.error());
           d.match = smtp::text::lower(*s);
         }},
        {"max_connections",
         [&](const toml::node& v, const std::string& kk) { set(d.max_connections, count(v, kk)); }},
        {"max_messages_per_connection",
         [&](const toml::node& v, const std::string& kk) {
           set(d.max_messages_per_connection, count(v, kk));
         }},
        {"max_rate", rate_text(d.max_rate)},
        {"connect_rate", rate_text(d.connect_rate)},
        {"rule",
         [&](const toml::node& v, const std::string& kk) {
           const toml::array* rules = v.as_array();
           if (rules == nullptr || !rules->is_array_of_tables())
             return wrong_type(v, kk, "an array of tables ([[destination.rule]])");
           for (std::size_t j = 0; j < rules->size(); ++j) {
             const toml::table& rt = *rules->get(j)->as_table();
             const std::string rk = kk + "[" + std::to_string(j + 1) + "]";
             destination_rule r;
             const std::vector<field> rule_fields = {
                 {"reply",
                  [&](const toml::node& x, const std::string& xk) {
                    auto s = string(x, xk);
                    if (!s) return;
                    if (auto ok = check_reply_regex(*s); !ok) return fail(x, xk, ok.error());
                    r.reply = *s;
                  }},
                 {"action",
                  [&](const toml::node& x, const std::string& xk) {
                    auto s = string(x, xk);
                    if (!s) return;
                    if (auto act = parse_rule_action(*s); act)
                      r.action = *act;
                    else
                      fail(x, xk, act.error());
                  }},
                 {"for", [&](const toml::node& x,
                             const std::string& xk) { set(r.duration, duration(x, xk)); }},
             };
             const std::size_t before = problems_.size();
             read_table(rt, rk, rule_fields);
             if (problems_.size() != before) continue;  // a key of its own was wrong
             if (!rt.contains("reply"))
               fail(rt, rk + ".reply", "is required");
             else if (r.action != destination_rule::action_kind::hold && r.duration.count() == 0)
               fail(rt, rk + ".for",
                    "is required for " + std::string(to_string(r.action)) + " (e.g. \"30m\")");
             d.rules.push_back(std::move(r));
           }
         }},
    };
    read_table(t, k, fields);
    if (!t.contains("match"))
      fail(t, k + ".match", "is required");
    else if (std::ranges::find(c_.destinations, d.match, &destination_settings::match) !=
             c_.destinations.end())
      fail(t, k + ".match", quoted(d.match) + " is used by another [[destination]]");
    c_.destinations.push_back(std::move(d));
  }
}

// [[dkim]] (an array of tables): domain, selector and key are required; the
// key file itself is read by the signer at start, which names it on failure.
field loader::dkim_field() {
  // RFC 6376 3.1: selector = sub-domain *("." sub-domain), labels of letters,
  // digits and inner hyphens.
  auto valid_selector = [](std::string_view s) {
    if (s.empty() || s.size() > 253) return false;
    for (std::size_t start = 0; start <= s.size();) {
      std::size_t dot = s.find('.', start);
      if (dot == std::string_view::npos) dot = s.size();
      const std::string_view label = s.substr(start, dot - start);
      if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-')
        return false;
      if (!std::ranges::all_of(label, [](char c) {
            return smtp::text::is_digit(c) || c == '-' || (c >= 'a' && c <= 'z') ||
                   (c >= 'A' && c <= 'Z');
          }))
        return false;
      start = dot + 1;
    }
    return true;
  };
  return {"dkim", [this, valid_selector](const toml::node& n, const std::string& key) {
            const toml::array* a = n.as_array();
            if (a == nullptr || !a->is_array_of_tables())
              return wrong_type(n, key, "an array of tables ([[dkim]])");
            for (std::size_t i = 0; i < a->size(); ++i) {
              const toml::table& t = *a->get(i)->as_table();
              const std::string prefix = key + "[" + std::to_string(i + 1) + "]";
              config::dkim_entry e;
              bool has_domain = false, has_selector = false, has_key = false;
              const std::vector<field> fields = {
                  {"domain",
                   [&](const toml::node& v, const std::string& k) {
                     auto s = string(v, k);
                     if (s && !valid_domain(*s)) return fail(v, k, "bad domain " + quoted(*s));
                     if (s) e.domain = smtp::text::lower(*s), has_domain = true;
                   }},
                  {"selector",
                   [&](const toml::node& v, const std::string& k) {
                     auto s = string(v, k);
                     if (s && !valid_selector(*s))
                       return fail(v, k,
                                   "bad selector " + quoted(*s) +
                                       " (letters, digits and hyphens, labels separated by dots)");
                     if (s) e.selector = std::move(*s), has_selector = true;
                   }},
                  {"key",
                   [&](const toml::node& v, const std::string& k) {
                     auto s = path(v, k);
                     if (s && s->empty()) return fail(v, k, "must not be empty");
                     if (s) e.key = std::move(*s), has_key = true;
                   }},
                  {"match",
                   [&](const toml::node& v, const std::string& k) {
                     auto s = string(v, k);
                     if (!s) return;
                     if (*s == "from")
                       e.match = config::dkim_entry::match_kind::from;
                     else if (*s == "sender")
                       e.match = config::dkim_entry::match_kind::sender;
                     else
                       fail(v, k, "bad value " + quoted(*s) + " (use from or sender)");
                   }},
                  {"subdomains", [&](const toml::node& v,
                                     const std::string& k) { set(e.subdomains, boolean(v, k)); }},
                  {"require_dns", [&](const toml::node& v,
                                      const std::string& k) { set(e.require_dns, boolean(v, k)); }},
                  {"expire",
                   [&](const toml::node& v, const std::string& k) {
                     auto d = duration(v, k);
                     if (d && d->count() == 0) return fail(v, k, "must be at least 1s");
                     if (d) e.expire = *d;
                   }},
              };
              read_table(t, prefix, fields);
              // A key that is present but bad has been reported by read_table.
              if (!t.contains("domain"))
                fail(t, prefix + ".domain", "is required");
              else if (!t.contains("selector"))
                fail(t, prefix + ".selector", "is required");
              else if (!t.contains("key"))
                fail(t, prefix + ".key", "is required");
              else if (has_domain && has_selector && has_key)
                c_.dkim.push_back(std::move(e));
            }
          }};
}

}  // namespace relayd::config_detail
