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
#include "relayd/config.hpp"

#include <sys/un.h>
#include <toml++/toml.h>
#include <unistd.h>

#include <algorithm>
#include <cassert>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <memory>
#include <span>
#include <utility>

#include "relayd/delivery_destination.hpp"
#include "relayd/duration_text.hpp"
#include "relayd/read_file.hpp"
#include "smtp/address.hpp"
#include "smtp/text.hpp"

namespace relayd {
namespace {

constexpr std::size_t max_socket_path = sizeof(sockaddr_un{}.sun_path) - 1;

// Upper bounds for values whose derived use would otherwise be unbounded.
// smtp.max_connections: the daemon asks for max_connections * 2 + 256 open files,
// which must stay below the kernel's ceiling (fs.nr_open, 1048576 by default).
constexpr std::uint64_t max_connections_cap = 500'000;
// queue.max_spool_size: the spool's map grows to it plus a reserve, rounded up to
// pages; 1024T (2^50 bytes) keeps that arithmetic far from overflowing.
constexpr std::uint64_t max_spool_size_cap = 1ull << 50;

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

std::string system_host_name() {
  char buf[256] = {};
  if (gethostname(buf, sizeof buf - 1) != 0) return "localhost";
  return buf[0] != '\0' ? std::string(buf) : std::string("localhost");
}

struct problem {
  std::uint32_t line = 0;
  std::uint32_t column = 0;
  std::string key;
  std::string what;
};

// One key of a table: its name and what to do with its value.
struct field {
  std::string_view name;
  std::function<void(const toml::node&, const std::string& key)> read;
};

// Walks the document into a config, collecting problems; finish() picks the one to report.
class loader {
 public:
  explicit loader(std::string_view origin) : origin_(origin) {}

  std::expected<config, std::string> run(const toml::table& doc);

 private:
  void fail(const toml::source_region& at, std::string key, std::string what) {
    problems_.push_back({at.begin.line, at.begin.column, std::move(key), std::move(what)});
  }
  void fail(const toml::node& at, std::string key, std::string what) {
    fail(at.source(), std::move(key), std::move(what));
  }
  void wrong_type(const toml::node& n, const std::string& key, std::string_view expected) {
    fail(n, key, "expected " + std::string(expected) + ", got " + type_name(n.type()));
  }
  std::string error(std::string_view key, std::string_view what) const {
    return origin_ + ": " + std::string(key) + ": " + std::string(what);
  }

  void read_table(const toml::table& t, const std::string& prefix, std::span<const field> fields);
  field section(std::string_view name, std::vector<field> fields);

  std::optional<std::string> string(const toml::node& n, const std::string& key);
  std::optional<std::string> path(const toml::node& n, const std::string& key);
  std::optional<bool> boolean(const toml::node& n, const std::string& key);
  std::optional<std::uint64_t> count(const toml::node& n, const std::string& key);
  std::optional<std::uint64_t> size(const toml::node& n, const std::string& key);
  std::optional<std::chrono::seconds> duration(const toml::node& n, const std::string& key);
  std::optional<std::vector<std::pair<std::string, const toml::node*>>> strings(
      const toml::node& n, const std::string& key);
  // "" -> nullopt inside the optional; default_port as parse_endpoint's.
  std::optional<std::optional<endpoint>> address(const toml::node& n, const std::string& key,
                                                 std::uint16_t default_port, bool listener);
  std::optional<std::vector<endpoint>> addresses(const toml::node& n, const std::string& key,
                                                 std::uint16_t default_port, bool listener);
  std::optional<std::vector<cidr>> networks(const toml::node& n, const std::string& key);
  // An inline table of oauth2_settings ([delivery] relayhost_oauth2).
  std::optional<oauth2_settings> oauth2(const toml::node& n, const std::string& key);

  std::vector<field> schema();
  field dkim_field();
  std::optional<std::string> cross_checks();
  // Value readers shared by [delivery] and [[route]].
  std::optional<relay_host> relay(const toml::node& n, const std::string& key);
  std::optional<tls_policy> tls_value(const toml::node& n, const std::string& key);
  std::optional<std::uint16_t> port_value(const toml::node& n, const std::string& key);
  void read_routes(const toml::node& n, const std::string& key);
  void read_destinations(const toml::node& n, const std::string& key);

  std::string origin_;
  config c_;
  bool hostname_set_ = false;
  std::vector<problem> problems_;
};

template <class T>
void set(T& target, std::optional<T>&& value) {
  if (value) target = std::move(*value);
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

std::optional<std::string> loader::string(const toml::node& n, const std::string& key) {
  if (const auto* s = n.as_string()) return s->get();
  wrong_type(n, key, "a string");
  return std::nullopt;
}

std::optional<std::string> loader::path(const toml::node& n, const std::string& key) {
  auto s = string(n, key);
  if (s && s->find('\0') != std::string::npos) {
    fail(n, key, "a path cannot contain a NUL character");
    return std::nullopt;
  }
  return s;
}

std::optional<bool> loader::boolean(const toml::node& n, const std::string& key) {
  if (const auto* b = n.as_boolean()) return b->get();
  wrong_type(n, key, "a boolean (true or false)");
  return std::nullopt;
}

std::optional<std::uint64_t> loader::count(const toml::node& n, const std::string& key) {
  if (const auto* i = n.as_integer()) {
    if (i->get() >= 0) return static_cast<std::uint64_t>(i->get());
    fail(n, key, "must not be negative, got " + std::to_string(i->get()));
    return std::nullopt;
  }
  wrong_type(n, key, "an integer");
  return std::nullopt;
}

std::optional<std::uint64_t> loader::size(const toml::node& n, const std::string& key) {
  if (const auto* s = n.as_string()) {
    auto v = parse_size(s->get());
    if (v) return *v;
    fail(n, key, v.error());
    return std::nullopt;
  }
  if (n.is_integer()) return count(n, key);
  wrong_type(n, key, "a size (a string like \"35M\", or a number of bytes)");
  return std::nullopt;
}

std::optional<std::chrono::seconds> loader::duration(const toml::node& n, const std::string& key) {
  if (const auto* s = n.as_string()) {
    auto v = parse_duration(s->get());
    if (v) return *v;
    fail(n, key, v.error());
    return std::nullopt;
  }
  if (const auto* i = n.as_integer()) {
    auto v = parse_duration(std::to_string(i->get()));
    if (v) return *v;
    fail(n, key, v.error());
    return std::nullopt;
  }
  wrong_type(n, key, "a duration (a string like \"5m\", or a number of seconds)");
  return std::nullopt;
}

std::optional<std::vector<std::pair<std::string, const toml::node*>>> loader::strings(
    const toml::node& n, const std::string& key) {
  const toml::array* a = n.as_array();
  if (a == nullptr) {
    wrong_type(n, key, "an array of strings");
    return std::nullopt;
  }
  std::vector<std::pair<std::string, const toml::node*>> out;
  bool ok = true;
  for (std::size_t i = 0; i < a->size(); ++i) {
    const toml::node& item = *a->get(i);
    if (const auto* s = item.as_string()) {
      out.emplace_back(s->get(), &item);
    } else {
      fail(item, key,
           "item " + std::to_string(i + 1) + ": expected a string, got " + type_name(item.type()));
      ok = false;
    }
  }
  if (!ok) return std::nullopt;
  return out;
}

std::optional<std::optional<endpoint>> loader::address(const toml::node& n, const std::string& key,
                                                       std::uint16_t default_port, bool listener) {
  auto s = string(n, key);
  if (!s) return std::nullopt;
  if (s->empty()) return std::optional<endpoint>{};
  auto e = parse_endpoint(*s, default_port);
  if (!e) {
    fail(n, key, e.error());
    return std::nullopt;
  }
  if (!listener && e->port == 0) {
    fail(n, key, "port 0 in " + quoted(*s) + " (0 is only allowed for listeners)");
    return std::nullopt;
  }
  return std::optional<endpoint>{std::move(*e)};
}

std::optional<std::vector<endpoint>> loader::addresses(const toml::node& n, const std::string& key,
                                                       std::uint16_t default_port, bool listener) {
  auto items = strings(n, key);
  if (!items) return std::nullopt;
  std::vector<endpoint> out;
  bool ok = true;
  for (const auto& [text, node] : *items) {
    auto e = parse_endpoint(text, default_port);
    if (!e) {
      fail(*node, key, e.error());
      ok = false;
    } else if (!listener && e->port == 0) {
      fail(*node, key, "port 0 in " + quoted(text) + " (0 is only allowed for listeners)");
      ok = false;
    } else {
      out.push_back(std::move(*e));
    }
  }
  if (!ok) return std::nullopt;
  return out;
}

std::optional<std::vector<cidr>> loader::networks(const toml::node& n, const std::string& key) {
  auto items = strings(n, key);
  if (!items) return std::nullopt;
  std::vector<cidr> out;
  bool ok = true;
  for (const auto& [text, node] : *items) {
    auto c = parse_cidr(text);
    if (!c) {
      fail(*node, key, c.error());
      ok = false;
    } else {
      out.push_back(*c);
    }
  }
  if (!ok) return std::nullopt;
  return out;
}

std::optional<oauth2_settings> loader::oauth2(const toml::node& n, const std::string& key) {
  const toml::table* t = n.as_table();
  if (t == nullptr) {
    wrong_type(n, key, "a table { token_url = \"https://...\", client_id = ..., ... }");
    return std::nullopt;
  }
  oauth2_settings o;
  auto text = [this](std::string& target) {
    return [this, &target](const toml::node& v, const std::string& k) { set(target, string(v, k)); };
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
                  {"subdomains",
                   [&](const toml::node& v, const std::string& k) {
                     set(e.subdomains, boolean(v, k));
                   }},
                  {"require_dns",
                   [&](const toml::node& v, const std::string& k) {
                     set(e.require_dns, boolean(v, k));
                   }},
                  {"expire",
                   [&](const toml::node& v, const std::string& k) {
                     auto d = duration(v, k);
                     if (d && d->count() == 0) return fail(v, k, "must be at least 1s");
                     if (d) e.expire = *d;
                   }},
              };
              read_table(t, prefix, fields);
              // A key that is present but bad has been reported by read_table.
              if (!t.contains("domain")) fail(t, prefix + ".domain", "is required");
              else if (!t.contains("selector")) fail(t, prefix + ".selector", "is required");
              else if (!t.contains("key")) fail(t, prefix + ".key", "is required");
              else if (has_domain && has_selector && has_key) c_.dkim.push_back(std::move(e));
            }
          }};
}

std::vector<field> loader::schema() {
  auto non_empty_path = [this](std::string& target) {
    return [this, &target](const toml::node& n, const std::string& key) {
      auto s = path(n, key);
      if (s && s->empty())
        fail(n, key, "must not be empty");
      else
        set(target, std::move(s));
    };
  };
  auto optional_path = [this](std::string& target) {
    return
        [this, &target](const toml::node& n, const std::string& key) { set(target, path(n, key)); };
  };
  auto count_at_least_1 = [this](std::uint64_t& target, std::uint64_t at_most = UINT64_MAX) {
    return [this, &target, at_most](const toml::node& n, const std::string& key) {
      auto v = count(n, key);
      if (v && *v == 0)
        fail(n, key, "must be at least 1");
      else if (v && *v > at_most)
        fail(n, key, "must be at most " + std::to_string(at_most) + ", got " + std::to_string(*v));
      else
        set(target, std::move(v));
    };
  };
  auto positive_size = [this](std::uint64_t& target) {
    return [this, &target](const toml::node& n, const std::string& key) {
      auto v = size(n, key);
      if (v && *v == 0)
        fail(n, key, "must be greater than 0");
      else
        set(target, std::move(v));
    };
  };
  auto any_count = [this](std::uint64_t& target) {
    return [this, &target](const toml::node& n, const std::string& key) {
      set(target, count(n, key));
    };
  };
  auto any_size = [this](std::uint64_t& target) {
    return
        [this, &target](const toml::node& n, const std::string& key) { set(target, size(n, key)); };
  };
  auto any_duration = [this](std::chrono::seconds& target) {
    return [this, &target](const toml::node& n, const std::string& key) {
      set(target, duration(n, key));
    };
  };
  auto positive_duration = [this](std::chrono::seconds& target) {
    return [this, &target](const toml::node& n, const std::string& key) {
      auto v = duration(n, key);
      if (v && v->count() == 0)
        fail(n, key, "must be at least 1s");
      else
        set(target, std::move(v));
    };
  };
  auto socket_path = [this](std::string& target, bool may_be_empty) {
    return [this, &target, may_be_empty](const toml::node& n, const std::string& key) {
      auto s = path(n, key);
      if (!s) return;
      if (s->empty() && !may_be_empty)
        fail(n, key, "must not be empty");
      else if (s->size() > max_socket_path)
        fail(n, key,
             "path is " + std::to_string(s->size()) +
                 " bytes; a Unix socket path may have at most " + std::to_string(max_socket_path));
      else
        target = std::move(*s);
    };
  };
  auto domain = [this](std::string& target) {
    return [this, &target](const toml::node& n, const std::string& key) {
      auto s = string(n, key);
      if (s && !s->empty() && !valid_domain(*s))
        fail(n, key, "bad domain " + quoted(*s));
      else
        set(target, std::move(s));
    };
  };
  auto group_name = [this](std::string& target) {
    return [this, &target](const toml::node& n, const std::string& key) {
      auto s = string(n, key);
      if (s && !valid_user_name(*s))
        fail(n, key, "bad group name " + quoted(*s));
      else
        set(target, std::move(s));
    };
  };
  auto listeners = [this](std::vector<endpoint>& target, std::uint16_t default_port) {
    return [this, &target, default_port](const toml::node& n, const std::string& key) {
      set(target, addresses(n, key, default_port, true));
    };
  };

  auto& smtp = c_.smtp;
  auto& delivery = c_.delivery;
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
                  {"allow_plaintext_loopback",
                   [this](const toml::node& n, const std::string& key) {
                     set(c_.auth.allow_plaintext_loopback, boolean(n, key));
                   }},
              }),
      section("delivery",
              {
                  {"relayhost",
                   [this](const toml::node& n, const std::string& key) {
                     auto s = string(n, key);
                     if (s && s->empty()) c_.delivery.relayhost.reset();
                     else if (auto h = s ? relay(n, key) : std::nullopt) c_.delivery.relayhost = std::move(*h);
                   }},
                  {"relayhost_user",
                   [this](const toml::node& n, const std::string& key) {
                     set(c_.delivery.relayhost_user, string(n, key));
                   }},
                  {"relayhost_password_file", optional_path(delivery.relayhost_password_file)},
                  {"relayhost_oauth2",
                   [this](const toml::node& n, const std::string& key) {
                     if (auto o = oauth2(n, key)) c_.delivery.relayhost_oauth2 = std::move(*o);
                   }},
                  {"port",
                   [this](const toml::node& n, const std::string& key) {
                     set(c_.delivery.port, port_value(n, key));
                   }},
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
                  {"tls",
                   [this](const toml::node& n, const std::string& key) {
                     set(c_.delivery.tls, tls_value(n, key));
                   }},
                  {"dane",
                   [this](const toml::node& n, const std::string& key) {
                     set(c_.delivery.dane, boolean(n, key));
                   }},
                  {"concurrency_per_destination",
                   count_at_least_1(delivery.concurrency_per_destination)},
                  {"connect_timeout", positive_duration(delivery.connect_timeout)},
                  {"command_timeout", positive_duration(delivery.command_timeout)},
                  {"mta_sts",
                   [this](const toml::node& n, const std::string& key) {
                     set(c_.delivery.mta_sts, boolean(n, key));
                   }},
                  {"mta_sts_port",
                   [this](const toml::node& n, const std::string& key) {
                     set(c_.delivery.mta_sts_port, port_value(n, key));
                   }},
                  {"provider_profiles",
                   [this](const toml::node& n, const std::string& key) {
                     set(c_.delivery.provider_profiles, boolean(n, key));
                   }},
                  {"tls_rpt",
                   [this](const toml::node& n, const std::string& key) {
                     set(c_.delivery.tls_rpt, boolean(n, key));
                   }},
                  {"tls_rpt_from",
                   [this](const toml::node& n, const std::string& key) {
                     auto s = string(n, key);
                     if (s && !s->empty() && !valid_address(*s))
                       fail(n, key, "bad address " + quoted(*s) + " (use user@domain)");
                     else
                       set(c_.delivery.tls_rpt_from, std::move(s));
                   }},
                  {"tls_rpt_organization",
                   [this](const toml::node& n, const std::string& key) {
                     set(c_.delivery.tls_rpt_organization, string(n, key));
                   }},
              }),
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
                  {"bounces",
                   [this](const toml::node& n, const std::string& key) {
                     set(c_.queue.bounces, boolean(n, key));
                   }},
              }),
      section("control",
              {
                  {"socket", socket_path(c_.control.socket, false)},
                  {"admin_group", group_name(c_.control.admin_group)},
              }),
      section("local",
              {
                  {"socket", socket_path(c_.local.socket, true)},
                  {"maildrop", non_empty_path(c_.local.maildrop)},
                  {"maildrop_group", group_name(c_.local.maildrop_group)},
                  {"domain", domain(c_.local.domain)},
                  {"domains",
                   [this](const toml::node& n, const std::string& key) {
                     auto items = strings(n, key);
                     if (!items) return;
                     std::vector<std::string> out;
                     for (const auto& [text, node] : *items) {
                       if (!valid_domain(text)) return fail(*node, key, "bad domain " + quoted(text));
                       out.push_back(smtp::text::lower(text));
                     }
                     c_.local.domains = std::move(out);
                   }},
                  {"aliases", optional_path(c_.local.aliases)},
                  {"fallback",
                   [this](const toml::node& n, const std::string& key) {
                     auto s = string(n, key);
                     if (s && !s->empty() && !valid_address(*s))
                       fail(n, key, "bad address " + quoted(*s) + " (use user@domain)");
                     else
                       set(c_.local.fallback, std::move(s));
                   }},
                  {"masquerade", domain(c_.local.masquerade)},
                  {"allowed_users",
                   [this](const toml::node& n, const std::string& key) {
                     auto items = strings(n, key);
                     if (!items) return;
                     std::vector<std::string> out;
                     for (const auto& [text, node] : *items) {
                       if (text.empty() || !valid_user_name(text))
                         return fail(*node, key, "bad user name " + quoted(text));
                       out.push_back(text);
                     }
                     c_.local.allowed_users = std::move(out);
                   }},
                  {"senders",
                   [this](const toml::node& n, const std::string& key) {
                     const toml::table* t = n.as_table();
                     if (t == nullptr) return wrong_type(n, key, "a table of user = [senders]");
                     for (auto&& [user, v] : *t) {
                       const std::string name(user.str()), item_key = key + "." + name;
                       if (name.empty() || !valid_user_name(name))
                         return fail(user.source(), item_key, "bad user name " + quoted(name));
                       auto items = strings(v, item_key);
                       if (!items) return;
                       std::vector<std::string> patterns;
                       for (const auto& [text, node] : *items) {
                         const bool ok = text.starts_with("*@") ? valid_domain(text.substr(2))
                                                                : valid_address(text);
                         if (!ok)
                           return fail(*node, item_key,
                                       "bad sender " + quoted(text) +
                                           " (use user@domain or *@domain)");
                         patterns.push_back(text);
                       }
                       c_.local.senders.emplace_back(name, std::move(patterns));
                     }
                   }},
              }),
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
                  {"file",
                   [this](const toml::node& n, const std::string& key) {
                     set(c_.events.file, path(n, key));
                   }},
                  {"webhook",
                   [this](const toml::node& n, const std::string& key) {
                     auto v = string(n, key);
                     if (!v) return;
                     const auto rest = v->starts_with("https://") ? v->substr(8)
                                       : v->starts_with("http://") ? v->substr(7)
                                                                   : std::string();
                     if (!v->empty() && (rest.empty() || rest.front() == '/' || rest.front() == ':'))
                       fail(n, key, "expected an http:// or https:// URL with a host, got " +
                                        quoted(*v));
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
                         {"debug", log_level::debug},     {"info", log_level::info},
                         {"notice", log_level::notice},   {"warning", log_level::warning},
                         {"error", log_level::error}};
                     for (const auto& [name, level] : names)
                       if (*s == name) return void(c_.log.level = level);
                     fail(n, key, "bad value " + quoted(*s) +
                                      " (use debug, info, notice, warning or error)");
                   }},
              }),
  };
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

// [[route]]: an array of tables; each entry is checked on its own here.
void loader::read_routes(const toml::node& n, const std::string& key) {
  const toml::array* a = n.as_array();
  if (a == nullptr || !a->is_array_of_tables()) return wrong_type(n, key, "an array of tables ([[route]])");
  for (std::size_t i = 0; i < a->size(); ++i) {
    const toml::node& entry = *a->get(i);
    const std::string k = key + "[" + std::to_string(i + 1) + "]";
    route r;
    r.name = "route" + std::to_string(i + 1);
    r.tls = c_.delivery.tls;  // toml++ walks keys in order: [delivery] came first
    auto text = [this](std::string& target) {
      return [this, &target](const toml::node& v, const std::string& kk) { set(target, string(v, kk)); };
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
        if (s && !valid_address(*s)) return fail(v, kk, "bad address " + quoted(*s) + " (use user@domain)");
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
        {"password_file",
         [this, &r](const toml::node& v, const std::string& kk) { set(r.password_file, path(v, kk)); }},
        {"oauth2",
         [this, &r](const toml::node& v, const std::string& kk) {
           if (auto o = oauth2(v, kk)) r.oauth2 = std::move(*o);
         }},
        {"tls", [this, &r](const toml::node& v, const std::string& kk) { set(r.tls, tls_value(v, kk)); }},
        {"port", [this, &r](const toml::node& v, const std::string& kk) { set(r.port, port_value(v, kk)); }},
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
                    if (auto act = parse_rule_action(*s); act) r.action = *act;
                    else fail(x, xk, act.error());
                  }},
                 {"for", [&](const toml::node& x, const std::string& xk) {
                    set(r.duration, duration(x, xk));
                  }},
             };
             const std::size_t before = problems_.size();
             read_table(rt, rk, rule_fields);
             if (problems_.size() != before) continue;  // a key of its own was wrong
             if (!rt.contains("reply")) fail(rt, rk + ".reply", "is required");
             else if (r.action != destination_rule::action_kind::hold && r.duration.count() == 0)
               fail(rt, rk + ".for", "is required for " + std::string(to_string(r.action)) +
                                         " (e.g. \"30m\")");
             d.rules.push_back(std::move(r));
           }
         }},
    };
    read_table(t, k, fields);
    if (!t.contains("match")) fail(t, k + ".match", "is required");
    else if (std::ranges::find(c_.destinations, d.match, &destination_settings::match) !=
             c_.destinations.end())
      fail(t, k + ".match", quoted(d.match) + " is used by another [[destination]]");
    c_.destinations.push_back(std::move(d));
  }
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
    return error("delivery.relayhost_user", "must be set with delivery.relayhost_oauth2 (the "
                                            "user name sent with the token)");
  if (!d.relayhost_user.empty() && d.relayhost_password_file.empty() && !d.relayhost_oauth2)
    return error("delivery.relayhost_password_file",
                 "must be set when delivery.relayhost_user is set (or delivery.relayhost_oauth2)");
  if (!d.relayhost_user.empty() && !d.relayhost)
    return error("delivery.relayhost_user", "is set but delivery.relayhost is empty");
  // The AD bit is only worth what the resolver that sets it is worth.
  if (d.dane && d.dns_servers.empty())
    return error("delivery.dane", "needs delivery.dns_servers naming a DNSSEC-validating "
                                  "resolver relayd can trust (e.g. [\"127.0.0.1\"])");
  if (d.tls_rpt && d.tls_rpt_from.empty())
    return error("delivery.tls_rpt_from", "must be set when delivery.tls_rpt is on (the address "
                                          "TLS reports come from, e.g. \"tls-reports@example.org\")");
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
  if (c_.local.domains.empty())
    c_.local.domains = {smtp::text::lower(c_.hostname), "localhost"};
  if (auto e = cross_checks()) return std::unexpected(std::move(*e));
  return std::move(c_);
}

}  // namespace

std::expected<config, std::string> parse_config(std::string_view text, std::string_view origin) {
  toml::table doc;
  try {
    doc = toml::parse(text, origin);
  } catch (const toml::parse_error& e) {
    const auto& at = e.source().begin;
    return std::unexpected(std::string(origin) + ":" + std::to_string(at.line) + ":" +
                           std::to_string(at.column) + ": " + std::string(e.description()));
  }
  return loader(origin).run(doc);
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
