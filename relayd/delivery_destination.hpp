// [[destination]] policies (DESIGN "Destinations, rules and events"): which
// policy a recipient domain falls under (by domain, domain suffix, or the suffix
// of its MX host name, like KumoMTA's provider grouping), its limits, and which
// reply rule a server's reply triggers. The built-in provider profiles (Gmail,
// Microsoft, Yahoo, from their published throttling replies) are policies too,
// after the configured ones. Pure: no I/O, no Asio, no clock. Bad match texts,
// rates and regexes are reported by the parse_* / check functions (the config
// loader calls them); a destination_policies built from a loaded config cannot fail.
#pragma once

#include <chrono>
#include <cstdint>
#include <expected>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "relayd/config.hpp"
#include "relayd/delivery_rate.hpp"

namespace relayd {

// "example.org" (that domain), "*.example.org" (its subdomains and itself),
// "mx:*.example.net" (domains whose MX host names end in .example.net).
struct destination_match {
  enum class kind { domain, suffix, mx_suffix } what = kind::domain;
  std::string value;  // lower case: "example.org", or "example.net" for a suffix
  // `domain`: the recipient domain; `mx_host`: its MX host name, "" if unknown.
  bool matches(std::string_view domain, std::string_view mx_host) const;
};
std::expected<destination_match, std::string> parse_destination_match(std::string_view text);
// Whether `pattern` is a regex relayd can use (ECMAScript); the error says why.
std::expected<void, std::string> check_reply_regex(std::string_view pattern);
// "suspend" | "slow" | "hold".
std::expected<destination_rule::action_kind, std::string> parse_rule_action(std::string_view s);
std::string_view to_string(destination_rule::action_kind a);

// The built-in profiles, as [[destination]] entries would write them.
std::vector<destination_settings> provider_profiles();

// One policy, ready to use.
struct destination_policy {
  std::string name;  // its match text: "mx:*.google.com"
  destination_match match;
  std::uint64_t max_connections = 0;              // 0: [delivery] concurrency_per_destination
  std::uint64_t max_messages_per_connection = 0;  // 0: no limit
  std::optional<rate> max_rate, connect_rate;
  std::vector<destination_rule> rules;
  bool builtin = false;  // a provider profile (its rules may add to a configured entry's)
};

// A rule that matched a reply: what to do, for how long, and why (for logs).
struct rule_hit {
  destination_rule rule;
  std::string policy;  // the policy's name
  bool builtin = false;
};

class destination_policies {
 public:
  destination_policies();
  // The config's [[destination]] entries in order, then (with [delivery]
  // provider_profiles) the built-in profiles; a configured entry with the same
  // match as a profile gets the profile's rules after its own.
  explicit destination_policies(const config& cfg);
  ~destination_policies();
  destination_policies(destination_policies&&) noexcept;
  destination_policies& operator=(destination_policies&&) noexcept;

  // The first policy matching; nullptr when none does.
  const destination_policy* find(std::string_view domain, std::string_view mx_host) const;
  // Whether some policy matches by MX host name (so knowing the MX matters).
  bool any_mx() const { return any_mx_; }
  const destination_policy* by_name(std::string_view name) const;
  std::span<const destination_policy> all() const { return policies_; }
  // The first rule of `p` whose regex is found in "code status text"
  // ("421 4.7.28 Our system has detected ..."); nullopt when none.
  std::optional<rule_hit> rule_for(const destination_policy& p, std::uint16_t code,
                                   std::string_view status, std::string_view text) const;

 private:
  struct compiled;
  std::vector<destination_policy> policies_;
  std::vector<std::vector<std::shared_ptr<const compiled>>> regexes_;  // per policy, per rule
  bool any_mx_ = false;
};

}  // namespace relayd
