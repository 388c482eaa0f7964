// Implements delivery_mta_sts_policy.hpp: line and field splitting by hand (no
// regex), every error naming the line or field; the cache record is "1\n" (its
// version), the id, the fetch time, then the policy text as served.
#include "relayd/delivery_mta_sts_policy.hpp"
#include "smtp/text.hpp"

#include <algorithm>
#include <charconv>
#include <cctype>

namespace relayd::mta_sts {
namespace {

bool is_wsp(char c) {
  return c == ' ' || c == '\t';
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_wsp(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_wsp(s.back())) s.remove_suffix(1);
  return s;
}

// A host name of letters, digits and hyphens in labels of 1-63 octets.
bool valid_host(std::string_view s) {
  if (s.empty() || s.size() > 253) return false;
  std::size_t label = 0;
  for (std::size_t i = 0; i < s.size(); ++i) {
    const unsigned char c = s[i];
    if (c == '.') {
      if (label == 0 || s[i - 1] == '-') return false;
      label = 0;
      continue;
    }
    if (!std::isalnum(c) && c != '-' && c != '_') return false;
    if (label == 0 && c == '-') return false;
    if (++label > 63) return false;
  }
  return label != 0 && s.back() != '-';
}

bool valid_pattern(std::string_view p) {
  if (p.starts_with("*.")) p.remove_prefix(2);
  return valid_host(p);
}

}  // namespace

std::string_view to_string(mode m) {
  switch (m) {
    case mode::enforce: return "enforce";
    case mode::testing: return "testing";
    case mode::none: break;
  }
  return "none";
}

std::expected<policy, std::string> parse_policy(std::string_view text) {
  using std::unexpected;
  if (text.size() > max_policy_size)
    return unexpected("the policy is larger than " + std::to_string(max_policy_size) + " octets");
  policy p;
  bool have_version = false, have_mode = false, have_max_age = false;
  std::size_t line_no = 0;
  while (!text.empty()) {
    const auto nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
    ++line_no;
    if (line.ends_with('\r')) line.remove_suffix(1);
    const std::string where = "line " + std::to_string(line_no);
    if (line.find('\r') != std::string_view::npos) return unexpected(where + ": a bare CR");
    if (trim(line).empty()) continue;
    const auto colon = line.find(':');
    if (colon == std::string_view::npos) return unexpected(where + ": no \"key: value\"");
    const std::string_view key = line.substr(0, colon);
    const std::string_view value = trim(line.substr(colon + 1));
    if (key.empty() || trim(key) != key) return unexpected(where + ": bad key");
    if (value.empty()) return unexpected(where + ": " + std::string(key) + " has no value");
    for (unsigned char c : value)
      if (c < 0x20 || c == 0x7f) return unexpected(where + ": a control character");
    if (key == "version") {
      if (have_version) return unexpected(where + ": version given twice");
      have_version = true;
      if (value != "STSv1")
        return unexpected(where + ": version " + std::string(value) + " is not STSv1");
    } else if (key == "mode") {
      if (have_mode) return unexpected(where + ": mode given twice");
      have_mode = true;
      if (value == "enforce") p.what = mode::enforce;
      else if (value == "testing") p.what = mode::testing;
      else if (value == "none") p.what = mode::none;
      else return unexpected(where + ": mode " + std::string(value) + " is not enforce, testing or none");
    } else if (key == "max_age") {
      if (have_max_age) return unexpected(where + ": max_age given twice");
      have_max_age = true;
      std::int64_t v = -1;
      const auto* end = value.data() + value.size();
      auto [ptr, ec] = std::from_chars(value.data(), end, v);
      if (value.size() > 10 || ec != std::errc{} || ptr != end || v < 0 || value[0] == '+')
        return unexpected(where + ": max_age " + std::string(value) + " is not 1-10 digits");
      if (v > max_max_age)
        return unexpected(where + ": max_age " + std::string(value) + " is more than " +
                          std::to_string(max_max_age));
      p.max_age = v;
    } else if (key == "mx") {
      std::string pattern = smtp::text::lower(std::string(value));
      if (!valid_pattern(pattern))
        return unexpected(where + ": mx " + std::string(value) + " is not a host name or *.name");
      p.mx.push_back(std::move(pattern));
    }
    // Other keys: ignored (RFC 8461 3.2).
  }
  if (!have_version) return unexpected("no version field");
  if (!have_mode) return unexpected("no mode field");
  if (!have_max_age) return unexpected("no max_age field");
  if (p.mx.empty() && p.what != mode::none) return unexpected("no mx field");
  return p;
}

bool mx_pattern_matches(std::string_view pattern, std::string_view host) {
  if (host.ends_with('.')) host.remove_suffix(1);
  const std::string h = smtp::text::lower(std::string(host));
  if (!pattern.starts_with("*.")) return h == smtp::text::lower(std::string(pattern));
  const std::string suffix = smtp::text::lower(std::string(pattern.substr(1)));  // ".example.net"
  if (h.size() <= suffix.size() || !h.ends_with(suffix)) return false;
  const std::string_view first(h.data(), h.size() - suffix.size());
  return first.find('.') == std::string_view::npos;  // exactly one label
}

bool mx_allowed(const policy& p, std::string_view host) {
  return std::ranges::any_of(p.mx, [&](const std::string& pat) { return mx_pattern_matches(pat, host); });
}

std::expected<std::string, std::string> policy_id(const std::vector<std::string>& records) {
  std::optional<std::string> found;
  std::string problem;
  int count = 0;
  for (const std::string& rec : records) {
    std::string_view r = rec;
    if (!r.starts_with("v=STSv1")) continue;
    ++count;
    r.remove_prefix(7);
    std::optional<std::string> id;
    bool bad = false;
    // 1*(*WSP ";" *WSP field) [";"]
    while (!bad && !trim(r).empty()) {
      r = trim(r);
      if (r.front() != ';') { bad = true; problem = "fields must be separated by \";\""; break; }
      r.remove_prefix(1);
      r = trim(r);
      if (r.empty()) break;  // a trailing ";"
      const auto end = std::min(r.find(';'), r.size());
      std::string_view field = r.substr(0, end);
      while (!field.empty() && is_wsp(field.back())) field.remove_suffix(1);
      r.remove_prefix(field.size());
      const auto eq = field.find('=');
      if (eq == 0 || eq == std::string_view::npos || eq + 1 == field.size()) {
        bad = true;
        problem = "malformed field \"" + std::string(field) + "\"";
        break;
      }
      const std::string_view name = field.substr(0, eq), value = field.substr(eq + 1);
      if (name != "id") continue;  // other fields are ignored
      const bool ok = value.size() <= 32 &&
                      std::ranges::all_of(value, [](unsigned char c) { return std::isalnum(c) != 0; });
      if (!ok || id) {
        bad = true;
        problem = id ? "id given twice" : "id \"" + std::string(value) + "\" is not 1-32 letters or digits";
        break;
      }
      id = std::string(value);
    }
    if (!bad && !id) problem = "no id field";
    if (!bad && id) found = std::move(id);
  }
  if (count == 0) return std::unexpected("no v=STSv1 record");
  if (count > 1) return std::unexpected(std::to_string(count) + " v=STSv1 records");
  if (!found) return std::unexpected(problem);
  return *found;
}

std::string encode(const cached_policy& c) {
  return "1\n" + c.id + "\n" + std::to_string(c.fetched_at) + "\n" + c.text;
}

std::optional<cached_policy> decode(std::string_view record) {
  if (!record.starts_with("1\n")) return std::nullopt;
  record.remove_prefix(2);
  cached_policy c;
  const auto nl1 = record.find('\n');
  if (nl1 == std::string_view::npos) return std::nullopt;
  c.id = std::string(record.substr(0, nl1));
  record.remove_prefix(nl1 + 1);
  const auto nl2 = record.find('\n');
  if (nl2 == std::string_view::npos) return std::nullopt;
  const std::string_view t = record.substr(0, nl2);
  auto [ptr, ec] = std::from_chars(t.data(), t.data() + t.size(), c.fetched_at);
  if (ec != std::errc{} || ptr != t.data() + t.size()) return std::nullopt;
  c.text = std::string(record.substr(nl2 + 1));
  auto p = parse_policy(c.text);
  if (!p || c.id.empty()) return std::nullopt;
  c.parsed = std::move(*p);
  return c;
}

step next_step(const std::optional<cached_policy>& cached, const std::optional<std::string>& txt_id,
               std::int64_t now) {
  const bool fresh = cached && cached->fresh(now);
  if (txt_id) return fresh && cached->id == *txt_id ? step::use_cached : step::fetch;
  return fresh ? step::keep_cached : step::none;
}

}  // namespace relayd::mta_sts
