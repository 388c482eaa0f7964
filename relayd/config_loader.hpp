// relayd/config_loader.hpp: the reader behind parse_config(), shared by the files
// that hold its parts: config.cpp (entry points, the top-level schema, checks between
// keys), config_readers.cpp (value readers: strings, paths, sizes, durations,
// addresses), config_delivery.cpp ([delivery], [[route]], [[destination]], [[dkim]]) and
// config_local.cpp ([local], [control]). Internal: it includes toml++, so only those
// files include it. Nothing here throws; problems are collected and the first one in
// file order is reported by run().
#pragma once

#include <toml++/toml.h>

#include <chrono>
#include <cstdint>
#include <expected>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "relayd/config.hpp"

namespace relayd::config_detail {

// Upper bounds for values whose derived use would otherwise be unbounded.
// smtp.max_connections: the daemon asks for max_connections * 2 + 256 open files,
// which must stay below the kernel's ceiling (fs.nr_open, 1048576 by default).
constexpr std::uint64_t max_connections_cap = 500'000;
// queue.max_spool_size: the spool's map grows to it plus a reserve, rounded up to
// pages; 1024T (2^50 bytes) keeps that arithmetic far from overflowing.
constexpr std::uint64_t max_spool_size_cap = 1ull << 50;

bool is_ip_literal(std::string_view s);
// POSIX portable user and group names, plus what useradd allows in practice.
bool valid_user_name(std::string_view s);
// "user@domain" as an SMTP mailbox (RFC 5321 4.1.2; UTF-8 allowed).
bool valid_address(std::string_view s);
const char* type_name(toml::node_type t);

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

template <class T>
void set(T& target, std::optional<T>&& value) {
  if (value) target = std::move(*value);
}

// Walks the document into a config, collecting problems; run() picks the one to report.
class loader {
 public:
  explicit loader(std::string_view origin) : origin_(origin) {}

  std::expected<config, std::string> run(const toml::table& doc);

 private:
  using reader = std::function<void(const toml::node&, const std::string& key)>;

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

  // Value readers (config_readers.cpp): nullopt after a fail().
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

  // Field readers storing into a target (config_readers.cpp).
  reader non_empty_path(std::string& target);
  reader optional_path(std::string& target);
  reader count_at_least_1(std::uint64_t& target, std::uint64_t at_most = UINT64_MAX);
  reader positive_size(std::uint64_t& target);
  reader any_count(std::uint64_t& target);
  reader any_size(std::uint64_t& target);
  reader any_duration(std::chrono::seconds& target);
  reader positive_duration(std::chrono::seconds& target);
  reader flag(bool& target);
  reader socket_path(std::string& target, bool may_be_empty);
  reader domain(std::string& target);
  reader optional_address(std::string& target);  // "" or user@domain
  reader group_name(std::string& target);
  reader listeners(std::vector<endpoint>& target, std::uint16_t default_port);

  std::vector<field> schema();
  std::optional<std::string> cross_checks();

  // config_delivery.cpp
  field delivery_section();
  field dkim_field();
  // An inline table of oauth2_settings ([delivery] relayhost_oauth2, [[route]] oauth2).
  std::optional<oauth2_settings> oauth2(const toml::node& n, const std::string& key);
  // Value readers shared by [delivery] and [[route]].
  std::optional<relay_host> relay(const toml::node& n, const std::string& key);
  std::optional<tls_policy> tls_value(const toml::node& n, const std::string& key);
  std::optional<std::uint16_t> port_value(const toml::node& n, const std::string& key);
  void read_routes(const toml::node& n, const std::string& key);
  void read_destinations(const toml::node& n, const std::string& key);

  // config_local.cpp
  field local_section();
  field control_section();

  std::string origin_;
  config c_;
  bool hostname_set_ = false;
  std::vector<problem> problems_;
};

}  // namespace relayd::config_detail
