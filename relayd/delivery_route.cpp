// Implements delivery_route.hpp. Header edits work on the raw header fields
// (RFC 5322 2.2: a field is a line not starting with blank space plus its folded
// continuation lines) and keep the message's own line endings.
#include "relayd/delivery_route.hpp"

#include <algorithm>
#include <numeric>

#include "smtp/text.hpp"

namespace relayd {
namespace {

std::string_view domain_of(std::string_view address) {
  const auto at = address.rfind('@');
  return at == std::string_view::npos ? std::string_view{} : address.substr(at + 1);
}

bool in_domain(std::string_view address, const std::string& domain) {
  const std::string d = smtp::text::lower(std::string(domain_of(address)));
  return !domain.empty() && (d == domain || d.ends_with("." + domain));
}

bool sender_matches(const route& r, std::string_view sender) {
  if (sender.empty()) return false;  // bounces (<>) take no sender route
  const std::string s = smtp::text::lower(std::string(sender));
  if (!r.rewrite_sender.empty() && s == smtp::text::lower(r.rewrite_sender)) return true;
  return (!r.sender.empty() && s == r.sender) || in_domain(sender, r.sender_domain);
}

// One header field: [begin, end) including its line ending(s).
struct field_span {
  std::size_t begin = 0, end = 0;
};

bool is_blank(char c) {
  return c == ' ' || c == '\t';
}

// The header's fields, up to the empty line (or the end of the message).
std::vector<field_span> header_fields(std::string_view m) {
  std::vector<field_span> out;
  std::size_t pos = 0;
  while (pos < m.size()) {
    const std::size_t nl = m.find('\n', pos);
    const std::size_t next = nl == std::string_view::npos ? m.size() : nl + 1;
    const std::string_view line = m.substr(pos, next - pos);
    if (line == "\r\n" || line == "\n") break;  // end of the header
    if (is_blank(line.front()) && !out.empty())
      out.back().end = next;  // folded continuation
    else
      out.push_back({pos, next});
    pos = next;
  }
  return out;
}

// The field's name if `f` is "Name:", lower-cased; "" otherwise.
std::string field_name(std::string_view f) {
  const auto colon = f.find(':');
  if (colon == std::string_view::npos) return {};
  return smtp::text::lower(std::string(smtp::text::trim(f.substr(0, colon))));
}

// The display name of a From: value ("Jane Doe" of `Jane Doe <j@x>`), unfolded;
// "" for a bare address. A '<' inside a quoted string does not count.
std::string display_name(std::string_view value) {
  std::string unfolded;
  for (char c : value)
    if (c != '\r' && c != '\n') unfolded += c;
  bool quoted = false;
  std::size_t lt = std::string::npos;
  for (std::size_t i = 0; i < unfolded.size(); ++i) {
    const char c = unfolded[i];
    if (c == '\\' && quoted) ++i;
    else if (c == '"') quoted = !quoted;
    else if (c == '<' && !quoted) lt = i;
  }
  if (lt == std::string::npos) return {};
  return std::string(smtp::text::trim(std::string_view(unfolded).substr(0, lt)));
}

}  // namespace

std::size_t route_for(std::span<const route> routes, std::string_view sender,
                      std::string_view recipient) {
  for (std::size_t i = 0; i < routes.size(); ++i) {
    const route& r = routes[i];
    if (!r.recipient_domain.empty() ? in_domain(recipient, r.recipient_domain)
                                    : sender_matches(r, sender))
      return i + 1;
  }
  return default_route;
}

std::string route_name(const config& cfg, std::size_t number) {
  return number == default_route || number > cfg.routes.size() ? "default"
                                                                : cfg.routes[number - 1].name;
}

route route_settings(const config& cfg, std::size_t number) {
  if (number != default_route && number <= cfg.routes.size()) return cfg.routes[number - 1];
  route r;
  r.name = "default";
  if (cfg.delivery.relayhost) r.relayhost.push_back(*cfg.delivery.relayhost);
  r.user = cfg.delivery.relayhost_user;
  r.password_file = cfg.delivery.relayhost_password_file;
  r.oauth2 = cfg.delivery.relayhost_oauth2;
  r.tls = cfg.delivery.tls;
  r.port = cfg.delivery.port;
  return r;
}

std::vector<std::size_t> attempt_order(std::span<const std::uint32_t> preference,
                                       std::uint64_t turn) {
  std::vector<std::size_t> order(preference.size());
  std::iota(order.begin(), order.end(), 0);
  std::ranges::stable_sort(order, {}, [&](std::size_t i) { return preference[i]; });
  for (auto first = order.begin(); first != order.end();) {
    auto last = std::find_if(first, order.end(),
                             [&](std::size_t i) { return preference[i] != preference[*first]; });
    const auto n = static_cast<std::size_t>(last - first);
    std::rotate(first, first + static_cast<std::ptrdiff_t>(turn % n), last);
    first = last;
  }
  return order;
}

const route* rewriting_route(std::span<const route> routes, std::string_view sender) {
  for (const route& r : routes) {
    if (!r.recipient_domain.empty() || !sender_matches(r, sender)) continue;
    return r.rewrite_sender.empty() && r.rewrite_from.empty() ? nullptr : &r;
  }
  return nullptr;
}

std::optional<std::string> rewrite_from_header(std::string_view message, std::string_view address) {
  const auto fields = header_fields(message);
  const auto from = std::ranges::find_if(
      fields, [&](const field_span& f) { return field_name(message.substr(f.begin, f.end - f.begin)) == "from"; });
  if (from == fields.end()) return std::nullopt;
  const bool has_reply_to = std::ranges::any_of(fields, [&](const field_span& f) {
    return field_name(message.substr(f.begin, f.end - f.begin)) == "reply-to";
  });
  const std::string_view field = message.substr(from->begin, from->end - from->begin);
  const std::string_view eol = field.ends_with("\r\n") ? "\r\n" : "\n";
  std::string_view value = field.substr(field.find(':') + 1);
  if (value.ends_with(eol)) value.remove_suffix(eol.size());  // the last line's end only

  const std::string name = display_name(value);
  std::string out(message.substr(0, from->begin));
  out += "From: ";
  if (!name.empty()) out += name + " ";
  out += "<" + std::string(address) + ">";
  out += eol;
  if (!has_reply_to) {
    out += "Reply-To:";
    out += value;
    out += eol;
  }
  out += message.substr(from->end);
  return out;
}

std::string rewrite_sender_identity(const config& cfg, std::string& sender, std::string& message) {
  const route* r = rewriting_route(cfg.routes, sender);
  if (r == nullptr) return {};
  if (!r->rewrite_from.empty())
    if (auto m = rewrite_from_header(message, r->rewrite_from)) message = std::move(*m);
  if (!r->rewrite_sender.empty()) sender = r->rewrite_sender;
  return r->name;
}

}  // namespace relayd
