// Implements events_report.hpp.
#include "relayd/events_report.hpp"

#include <algorithm>
#include <array>
#include <boost/json.hpp>
#include <cctype>
#include <charconv>
#include <utility>
#include <vector>

#include "smtp/text.hpp"

namespace relayd {
namespace {

namespace json = boost::json;

constexpr std::size_t max_reply = 300;
constexpr std::size_t max_reason = 160;

constexpr std::array<event_type, 8> all_types{
    event_type::received, event_type::deferred, event_type::delivered, event_type::bounced,
    event_type::dead,     event_type::expired,  event_type::suspended, event_type::resumed};

std::optional<event_type> type_named(std::string_view name) {
  for (auto t : all_types)
    if (to_string(t) == name) return t;
  return std::nullopt;
}

// `s` cut to at most `limit` octets, not inside a UTF-8 sequence.
std::string_view cut(std::string_view s, std::size_t limit) {
  if (s.size() <= limit) return s;
  while (limit > 0 && (static_cast<unsigned char>(s[limit]) & 0xC0) == 0x80) --limit;
  return s.substr(0, limit);
}

bool valid_utf8(std::string_view s) {
  for (std::size_t i = 0; i < s.size();) {
    const std::size_t n = utf8_length_at(s, i);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

// A field as stored: tabs and line ends become spaces.
std::string field(std::string_view s, std::size_t limit = std::string_view::npos) {
  std::string out(cut(s, limit));
  for (auto& c : out)
    if (c == '\t' || c == '\n' || c == '\r') c = ' ';
  return out;
}

bool has_digit(std::string_view w) {
  return std::ranges::any_of(w, [](char c) { return c >= '0' && c <= '9'; });
}

bool is_code(std::string_view w) {
  return w.size() == 3 && std::ranges::all_of(w, [](char c) { return c >= '0' && c <= '9'; });
}

bool is_enhanced(std::string_view w) {  // 4.7.28
  int dots = 0;
  for (char c : w) {
    if (c == '.') ++dots;
    else if (c < '0' || c > '9') return false;
  }
  return dots == 2 && w.size() >= 5 && w.front() != '.' && w.back() != '.';
}

bool word_char(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }

// Words holding a digit become '#'; the rest stays.
std::string collapse_digits(std::string_view token) {
  std::string out;
  for (std::size_t i = 0; i < token.size();) {
    if (!word_char(token[i])) {
      out += token[i++];
      continue;
    }
    std::size_t j = i;
    while (j < token.size() && word_char(token[j])) ++j;
    const auto w = token.substr(i, j - i);
    out += has_digit(w) ? std::string_view("#") : w;
    i = j;
  }
  return out;
}

template <typename Map>
json::array top_rows(const Map& counts, std::size_t top, std::string_view name_key) {
  std::vector<std::pair<std::string, std::uint64_t>> rows(counts.begin(), counts.end());
  std::ranges::sort(rows, [](const auto& a, const auto& b) {
    return a.second != b.second ? a.second > b.second : a.first < b.first;
  });
  json::array out;
  for (std::size_t i = 0; i < rows.size() && i < top; ++i)
    out.push_back(json::object{{name_key, rows[i].first}, {"count", rows[i].second}});
  return out;
}

}  // namespace

report_record record_of(const event& e) {
  // Unix seconds, rounded down (also before 1970).
  const std::int64_t secs =
      e.time_us >= 0 ? e.time_us / 1'000'000 : (e.time_us - 999'999) / 1'000'000;
  report_record r{.time = secs, .type = e.type};
  r.destination = utf8_or_replaced(e.destination);
  if (auto at = e.recipient.rfind('@'); at != std::string::npos)
    r.domain = smtp::text::lower(utf8_or_replaced(std::string_view(e.recipient).substr(at + 1)));
  else if (e.type == event_type::suspended || e.type == event_type::resumed)
    r.domain = smtp::text::lower(r.destination);
  r.status = utf8_or_replaced(e.status);
  r.submitter = utf8_or_replaced(e.submitter);
  r.reply = utf8_or_replaced(e.reply);
  return r;
}

std::string to_line(const report_record& r) {
  std::string out = std::to_string(r.time);
  for (std::string_view f : {to_string(r.type), std::string_view(r.domain),
                             std::string_view(r.destination), std::string_view(r.status),
                             std::string_view(r.submitter)}) {
    out += '\t';
    out += field(f);
  }
  out += '\t';
  out += field(r.reply, max_reply);
  out += '\n';
  return out;
}

std::optional<report_record> parse_record_line(std::string_view line) {
  std::array<std::string_view, 7> f;
  std::size_t n = 0;
  for (std::size_t start = 0;;) {
    const auto tab = line.find('\t', start);
    if (n == f.size()) return std::nullopt;  // more fields than a record has
    f[n++] = line.substr(start, tab == std::string_view::npos ? std::string_view::npos : tab - start);
    if (tab == std::string_view::npos) break;
    start = tab + 1;
  }
  if (n != f.size() || line.find('\n') != std::string_view::npos || !valid_utf8(line))
    return std::nullopt;
  std::int64_t time = 0;
  auto [end, ec] = std::from_chars(f[0].data(), f[0].data() + f[0].size(), time);
  if (ec != std::errc() || end != f[0].data() + f[0].size() || f[0].empty()) return std::nullopt;
  auto type = type_named(f[1]);
  if (!type) return std::nullopt;
  return report_record{.time = time,
                       .type = *type,
                       .domain = std::string(f[2]),
                       .destination = std::string(f[3]),
                       .status = std::string(f[4]),
                       .submitter = std::string(f[5]),
                       .reply = std::string(f[6])};
}

std::string normalise_reply(std::string_view reply) {
  std::vector<std::string_view> words;
  for (std::size_t i = 0; i < reply.size();) {
    while (i < reply.size() && std::isspace(static_cast<unsigned char>(reply[i]))) ++i;
    std::size_t j = i;
    while (j < reply.size() && !std::isspace(static_cast<unsigned char>(reply[j]))) ++j;
    if (j > i) words.push_back(reply.substr(i, j - i));
    i = j;
  }
  // The reply code: the first word of three digits 2xx-5xx ("host mx[..] said: 421 4.7.28 ...").
  std::size_t code_at = words.size();
  for (std::size_t k = 0; k < words.size() && code_at == words.size(); ++k)
    if (is_code(words[k]) && words[k][0] >= '2' && words[k][0] <= '5') code_at = k;
  std::string out;
  for (std::size_t k = 0; k < words.size(); ++k) {
    const auto w = words[k];
    if (!out.empty()) out += ' ';
    if (k == code_at || (k == code_at + 1 && is_enhanced(w))) {
      out += w;
    } else if (w.find('@') != std::string_view::npos) {
      // <bob@example.org>: or bob@example.org, keeping what surrounds it
      const auto open = w.find('<'), close = w.rfind('>');
      if (open != std::string_view::npos && close != std::string_view::npos && close > open)
        out += std::string(w.substr(0, open)) + "<address>" + std::string(w.substr(close + 1));
      else
        out += "address";
    } else {
      out += collapse_digits(w);
    }
    if (out.size() >= max_reason) break;
  }
  return std::string(cut(out, max_reason));
}

std::string submitter_key(std::string_view s) {
  auto value = [&](std::string_view name) -> std::string_view {
    std::size_t at = 0;
    while ((at = s.find(name, at)) != std::string_view::npos) {
      if (at == 0 || s[at - 1] == ' ') {
        auto v = s.substr(at + name.size());
        return v.substr(0, v.find(' '));
      }
      at += name.size();
    }
    return {};
  };
  if (s.starts_with("local ")) {
    if (auto user = value("user="); !user.empty() && user != "-")
      return "local user=" + std::string(user);
    return "local uid=" + std::string(value("uid="));
  }
  if (s.starts_with("smtp ")) {
    if (auto sasl = value("sasl="); !sasl.empty()) return "sasl=" + std::string(sasl);
    return std::string(s.substr(0, s.find(' ', 5)));
  }
  return s.empty() ? "-" : std::string(s);
}

void report_summary::add(const report_record& r) {
  if (r.time < since_ || r.time >= until_) return;
  ++totals_[static_cast<std::size_t>(r.type)];
  switch (r.type) {
    case event_type::received:
      ++submitters_[submitter_key(r.submitter)];
      return;
    case event_type::suspended:
    case event_type::resumed:
      return;
    case event_type::delivered: ++domains_[r.domain].delivered; return;
    case event_type::deferred:
      ++domains_[r.domain].deferred;
      ++deferral_reasons_[normalise_reply(r.reply)];
      return;
    case event_type::bounced:
      ++domains_[r.domain].bounced;
      ++bounce_reasons_[normalise_reply(r.reply)];
      return;
    case event_type::dead:
      ++domains_[r.domain].dead;
      ++bounce_reasons_[normalise_reply(r.reply)];
      return;
    case event_type::expired: ++domains_[r.domain].expired; return;
  }
}

bool report_summary::add_line(std::string_view line) {
  auto r = parse_record_line(line);
  if (!r) {
    ++damaged_;
    return false;
  }
  add(*r);
  return true;
}

json::object report_summary::to_json(std::size_t top) const {
  json::object out{{"since", since_}, {"until", until_}};
  for (auto t : all_types) out[to_string(t)] = totals_[static_cast<std::size_t>(t)];
  std::vector<std::pair<std::string, domain_counts>> rows(domains_.begin(), domains_.end());
  std::ranges::stable_sort(rows, [](const auto& a, const auto& b) { return a.second.all() > b.second.all(); });
  json::array domains;
  for (std::size_t i = 0; i < rows.size() && i < top; ++i) {
    const auto& [name, c] = rows[i];
    domains.push_back(json::object{{"domain", name},
                                   {"delivered", c.delivered},
                                   {"deferred", c.deferred},
                                   {"bounced", c.bounced},
                                   {"expired", c.expired},
                                   {"dead", c.dead}});
  }
  out["domains"] = std::move(domains);
  out["domain_count"] = rows.size();
  out["deferral_reasons"] = top_rows(deferral_reasons_, top, "reason");
  out["bounce_reasons"] = top_rows(bounce_reasons_, top, "reason");
  out["submitters"] = top_rows(submitters_, top, "submitter");
  out["damaged_lines"] = damaged_;
  return out;
}

}  // namespace relayd
