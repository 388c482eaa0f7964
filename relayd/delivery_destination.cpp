// Implements delivery_destination.hpp. The regexes are compiled once, when the
// policies are built; a reply is searched with regex_search (so "^421" anchors
// at the code).
#include "relayd/delivery_destination.hpp"

#include <algorithm>
#include <regex>

#include "smtp/text.hpp"

namespace relayd {

struct destination_policies::compiled {
  std::regex re;
};

namespace {

bool ends_with_label(std::string_view name, std::string_view suffix) {
  if (name == suffix) return true;
  return name.size() > suffix.size() && name.ends_with(suffix) &&
         name[name.size() - suffix.size() - 1] == '.';
}

std::string strip_dot(std::string_view s) {
  while (!s.empty() && s.back() == '.') s.remove_suffix(1);
  return smtp::text::lower(std::string(s));
}

}  // namespace

bool destination_match::matches(std::string_view domain, std::string_view mx_host) const {
  switch (what) {
    case kind::domain: return strip_dot(domain) == value;
    case kind::suffix: return ends_with_label(strip_dot(domain), value);
    case kind::mx_suffix: {
      if (mx_host.empty()) return false;
      const std::string host = strip_dot(mx_host);
      return host != value && ends_with_label(host, value);
    }
  }
  return false;
}

std::expected<destination_match, std::string> parse_destination_match(std::string_view text) {
  destination_match m;
  std::string_view rest = text;
  const std::string shown = "\"" + std::string(text) + "\"";
  if (rest.starts_with("mx:")) {
    rest.remove_prefix(3);
    if (!rest.starts_with("*."))
      return std::unexpected("bad match " + shown + " (an MX match is \"mx:*.suffix\")");
    m.what = destination_match::kind::mx_suffix;
    rest.remove_prefix(2);
  } else if (rest.starts_with("*.")) {
    m.what = destination_match::kind::suffix;
    rest.remove_prefix(2);
  }
  if (!valid_domain(rest))
    return std::unexpected("bad match " + shown +
                           " (use a domain, \"*.domain\" or \"mx:*.domain\")");
  m.value = smtp::text::lower(std::string(rest));
  return m;
}

std::expected<void, std::string> check_reply_regex(std::string_view pattern) {
  try {
    std::regex re(pattern.begin(), pattern.end(), std::regex::ECMAScript);
  } catch (const std::regex_error& e) {
    return std::unexpected("bad regex \"" + std::string(pattern) + "\": " + e.what());
  }
  return {};
}

std::expected<destination_rule::action_kind, std::string> parse_rule_action(std::string_view s) {
  using a = destination_rule::action_kind;
  if (s == "suspend") return a::suspend;
  if (s == "slow") return a::slow;
  if (s == "hold") return a::hold;
  return std::unexpected("bad action \"" + std::string(s) + "\" (use suspend, slow or hold)");
}

std::string_view to_string(destination_rule::action_kind a) {
  switch (a) {
    case destination_rule::action_kind::suspend: return "suspend";
    case destination_rule::action_kind::slow: return "slow";
    case destination_rule::action_kind::hold: return "hold";
  }
  return "suspend";
}

// From the providers' published deferral replies:
// - Gmail (support.google.com/a/answer/3726730): 421 4.7.28 "Our system has
//   detected an unusual rate of unsolicited mail originating from your IP
//   address ... temporarily rate limited"; 421 4.7.0 "... unusual rate ..." /
//   "... rate limited ...".
// - Microsoft (learn.microsoft.com, Exchange Online NDR codes): 451 4.7.650
//   "The mail server [IP] has been temporarily rate limited due to IP
//   reputation"; 451 4.7.500 "Server busy. Please try again later"; 421 4.3.2
//   "The maximum number of concurrent server connections has exceeded a limit".
// - Yahoo (senders.yahooinc.com/smtp-error-codes): 421 4.7.0 [TSS04] "Messages
//   from IP temporarily deferred due to unexpected volume or user complaints".
std::vector<destination_settings> provider_profiles() {
  using a = destination_rule::action_kind;
  using std::chrono::minutes;
  auto m = [](int n) { return std::chrono::duration_cast<std::chrono::seconds>(minutes(n)); };
  destination_settings gmail{.match = "mx:*.google.com"};
  gmail.rules = {{"^421 4\\.7\\.28( |$)", a::suspend, m(30)},
                 {"^4[0-9][0-9] 4\\.7\\.0 .*(unusual rate|rate limit)", a::suspend, m(15)}};
  destination_settings microsoft{.match = "mx:*.outlook.com"};
  microsoft.rules = {{"^4[0-9][0-9] 4\\.7\\.650( |$)", a::suspend, m(60)},
                     {"^451 4\\.7\\.500( |$)", a::suspend, m(15)},
                     {"^421 4\\.3\\.2 .*concurrent", a::slow, m(15)}};
  destination_settings yahoo{.match = "mx:*.yahoodns.net"};
  yahoo.rules = {{"^421 4\\.7\\.0 \\[TSS04\\]", a::suspend, m(60)}};
  return {gmail, microsoft, yahoo};
}

destination_policies::destination_policies() = default;
destination_policies::~destination_policies() = default;
destination_policies::destination_policies(destination_policies&&) noexcept = default;
destination_policies& destination_policies::operator=(destination_policies&&) noexcept = default;

destination_policies::destination_policies(const config& cfg) {
  auto add = [this](const destination_settings& s, bool builtin) {
    auto m = parse_destination_match(s.match);
    if (!m) return;  // the loader refused it already; profiles are valid
    auto same = std::ranges::find(policies_, s.match, &destination_policy::name);
    if (builtin && same != policies_.end()) {
      same->rules.insert(same->rules.end(), s.rules.begin(), s.rules.end());
      return;
    }
    destination_policy p{.name = s.match, .match = std::move(*m)};
    p.max_connections = s.max_connections;
    p.max_messages_per_connection = s.max_messages_per_connection;
    if (auto r = parse_rate(s.max_rate); !s.max_rate.empty() && r) p.max_rate = *r;
    if (auto r = parse_rate(s.connect_rate); !s.connect_rate.empty() && r) p.connect_rate = *r;
    p.rules = s.rules;
    p.builtin = builtin;
    policies_.push_back(std::move(p));
  };
  for (const auto& s : cfg.destinations) add(s, false);
  if (cfg.delivery.provider_profiles)
    for (const auto& s : provider_profiles()) add(s, true);
  for (const auto& p : policies_) {
    any_mx_ = any_mx_ || p.match.what == destination_match::kind::mx_suffix;
    auto& list = regexes_.emplace_back();
    for (const auto& r : p.rules) {
      auto c = std::make_shared<compiled>();
      try {
        c->re = std::regex(r.reply, std::regex::ECMAScript | std::regex::optimize);
      } catch (const std::regex_error&) {
        c.reset();  // refused by the loader; never matches
      }
      list.push_back(std::move(c));
    }
  }
}

const destination_policy* destination_policies::find(std::string_view domain,
                                                     std::string_view mx_host) const {
  for (const auto& p : policies_)
    if (p.match.matches(domain, mx_host)) return &p;
  return nullptr;
}

const destination_policy* destination_policies::by_name(std::string_view name) const {
  auto it = std::ranges::find(policies_, name, &destination_policy::name);
  return it == policies_.end() ? nullptr : &*it;
}

std::optional<rule_hit> destination_policies::rule_for(const destination_policy& p,
                                                       std::uint16_t code, std::string_view status,
                                                       std::string_view text) const {
  if (p.rules.empty() || code == 0) return std::nullopt;
  const auto index = static_cast<std::size_t>(&p - policies_.data());
  if (index >= regexes_.size()) return std::nullopt;
  std::string line = std::to_string(code);
  if (!status.empty()) line += " " + std::string(status);
  if (!text.empty()) line += " " + std::string(text);
  for (std::size_t i = 0; i < p.rules.size(); ++i) {
    const auto& c = regexes_[index][i];
    if (c && std::regex_search(line, c->re)) return rule_hit{p.rules[i], p.name, p.builtin};
  }
  return std::nullopt;
}

}  // namespace relayd
