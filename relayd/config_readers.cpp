// relayd/config_readers.cpp: the value readers of relayd.toml's loader (config_loader.hpp):
// each checks a node's type and value and either returns it or records one problem that
// names the key and quotes the text; and the field readers built on them, which store a
// checked value into its place in the config. Syntax of the values themselves
// (durations, sizes, endpoints): config_values.hpp.
#include <sys/un.h>
#include <toml++/toml.h>

#include <string>
#include <utility>

#include "relayd/config_loader.hpp"
#include "relayd/net_cidr.hpp"
#include "smtp/text.hpp"

namespace relayd::config_detail {
namespace {

constexpr std::size_t max_socket_path = sizeof(sockaddr_un{}.sun_path) - 1;

}  // namespace

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

loader::reader loader::non_empty_path(std::string& target) {
  return [this, &target](const toml::node& n, const std::string& key) {
    auto s = path(n, key);
    if (s && s->empty())
      fail(n, key, "must not be empty");
    else
      set(target, std::move(s));
  };
}

loader::reader loader::optional_path(std::string& target) {
  return
      [this, &target](const toml::node& n, const std::string& key) { set(target, path(n, key)); };
}

loader::reader loader::count_at_least_1(std::uint64_t& target, std::uint64_t at_most) {
  return [this, &target, at_most](const toml::node& n, const std::string& key) {
    auto v = count(n, key);
    if (v && *v == 0)
      fail(n, key, "must be at least 1");
    else if (v && *v > at_most)
      fail(n, key, "must be at most " + std::to_string(at_most) + ", got " + std::to_string(*v));
    else
      set(target, std::move(v));
  };
}

loader::reader loader::positive_size(std::uint64_t& target) {
  return [this, &target](const toml::node& n, const std::string& key) {
    auto v = size(n, key);
    if (v && *v == 0)
      fail(n, key, "must be greater than 0");
    else
      set(target, std::move(v));
  };
}

loader::reader loader::any_count(std::uint64_t& target) {
  return
      [this, &target](const toml::node& n, const std::string& key) { set(target, count(n, key)); };
}

loader::reader loader::any_size(std::uint64_t& target) {
  return
      [this, &target](const toml::node& n, const std::string& key) { set(target, size(n, key)); };
}

loader::reader loader::any_duration(std::chrono::seconds& target) {
  return [this, &target](const toml::node& n, const std::string& key) {
    set(target, duration(n, key));
  };
}

loader::reader loader::positive_duration(std::chrono::seconds& target) {
  return [this, &target](const toml::node& n, const std::string& key) {
    auto v = duration(n, key);
    if (v && v->count() == 0)
      fail(n, key, "must be at least 1s");
    else
      set(target, std::move(v));
  };
}

loader::reader loader::socket_path(std::string& target, bool may_be_empty) {
  return [this, &target, may_be_empty](const toml::node& n, const std::string& key) {
    auto s = path(n, key);
    if (!s) return;
    if (s->empty() && !may_be_empty)
      fail(n, key, "must not be empty");
    else if (s->size() > max_socket_path)
      fail(n, key,
           "path is " + std::to_string(s->size()) + " bytes; a Unix socket path may have at most " +
               std::to_string(max_socket_path));
    else
      target = std::move(*s);
  };
}

loader::reader loader::domain(std::string& target) {
  return [this, &target](const toml::node& n, const std::string& key) {
    auto s = string(n, key);
    if (s && !s->empty() && !valid_domain(*s))
      fail(n, key, "bad domain " + quoted(*s));
    else
      set(target, std::move(s));
  };
}

loader::reader loader::optional_address(std::string& target) {
  return [this, &target](const toml::node& n, const std::string& key) {
    auto s = string(n, key);
    if (s && !s->empty() && !valid_address(*s))
      fail(n, key, "bad address " + quoted(*s) + " (use user@domain)");
    else
      set(target, std::move(s));
  };
}

loader::reader loader::group_name(std::string& target) {
  return [this, &target](const toml::node& n, const std::string& key) {
    auto s = string(n, key);
    if (s && !valid_user_name(*s))
      fail(n, key, "bad group name " + quoted(*s));
    else
      set(target, std::move(s));
  };
}

loader::reader loader::listeners(std::vector<endpoint>& target, std::uint16_t default_port) {
  return [this, &target, default_port](const toml::node& n, const std::string& key) {
    set(target, addresses(n, key, default_port, true));
  };
}

loader::reader loader::flag(bool& target) {
  return [this, &target](const toml::node& n, const std::string& key) {
    set(target, boolean(n, key));
  };
}

}  // namespace relayd::config_detail
