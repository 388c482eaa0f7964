// Implements sendmail_args.hpp in the way getopt(3) reads sendmail's command
// line: single-letter flags may be grouped ("-ti"), an option's value may be
// attached ("-fuser") or the next argument ("-f user"), the first argument that
// is not an option (or "--") starts the recipients. Pure: no I/O, no exit.
#include "cli/sendmail_args.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>

#include "smtp/text.hpp"

namespace sendmail {
namespace {

std::string lower(std::string_view s) { return smtp::text::lower(std::string(s)); }

std::string_view base_name(std::string_view path) {
  auto slash = path.rfind('/');
  return slash == std::string_view::npos ? path : path.substr(slash + 1);
}

// Option letters that take a value (attached or the next argument).
bool takes_value(char c) {
  return std::string_view("BCFNORVbfhoqrLeXp").find(c) != std::string_view::npos;
}

std::expected<void, std::string> apply_b(options& o, std::string_view v) {
  if (v == "m") o.what = mode::deliver;
  else if (v == "p") o.what = mode::list_queue;
  else if (v == "s") o.what = mode::smtp_stdio;
  else if (v == "i") o.what = mode::new_aliases;
  else return std::unexpected("-b" + std::string(v) + " is not supported (use -bm, -bp, -bs or -bi)");
  return {};
}

// One option letter with its value (empty for a flag).
std::expected<void, std::string> apply(options& o, char c, std::string_view v) {
  switch (c) {
    case 'b': return apply_b(o, v);
    case 'C': o.config_path = std::string(v); return {};
    case 'f':
    case 'r': o.sender = std::string(v); return {};
    case 'F': o.full_name = std::string(v); return {};
    case 't': o.recipients_from_headers = true; return {};
    case 'i': o.ignore_dots = true; return {};
    case 'v': o.verbose = true; return {};
    case 'I': o.what = mode::new_aliases; return {};
    case 'q': o.what = mode::flush; return {};  // "-q1h" (a queue interval) flushes too
    case 'o':
      // -oi is the only -o option with a meaning; the others are ignored (Postfix).
      if (v == "i") o.ignore_dots = true;
      return {};
    case 'O': {
      // -O option=value: requiretls (RFC 8689) is read, the others ignored (Postfix).
      const auto eq = v.find('=');
      if (lower(v.substr(0, eq)) != "requiretls") return {};
      const std::string value = eq == std::string_view::npos ? "yes" : lower(v.substr(eq + 1));
      if (value == "yes" || value == "true" || value == "1") o.requiretls = true;
      else if (value == "no" || value == "false" || value == "0") o.requiretls = false;
      else return std::unexpected("-O requiretls wants yes or no, not '" + std::string(v) + "'");
      return {};
    }
    case 'N': {
      auto n = parse_notify(v);
      if (!n) return std::unexpected(n.error());
      o.notify = *n;
      return {};
    }
    case 'R': {
      auto r = lower(v);
      if (r == "full") o.ret = smtp::dsn_ret::full;
      else if (r == "hdrs") o.ret = smtp::dsn_ret::headers;
      else return std::unexpected("-R wants full or hdrs, not '" + std::string(v) + "'");
      return {};
    }
    case 'V':
      if (v.empty() || v.size() > 100)
        return std::unexpected("-V wants an envelope ID of 1 to 100 characters");
      for (unsigned char ch : v)
        if (ch < 0x21 || ch > 0x7e)
          return std::unexpected("-V: the envelope ID must be printable ASCII without spaces");
      o.envid = std::string(v);
      return {};
    case 'B': {
      auto b = lower(v);
      if (b == "7bit") o.body = smtp::body_type::seven_bit;
      else if (b == "8bitmime") o.body = smtp::body_type::eight_bit_mime;
      else return std::unexpected("-B wants 7BIT or 8BITMIME, not '" + std::string(v) + "'");
      return {};
    }
    // Accepted and ignored as Postfix does: hop count, log file, DSN/queue
    // labels, error mode, protocol, and the no-op flags.
    case 'h': case 'L': case 'X': case 'e': case 'p':
    case 'G': case 'U': case 'm': case 'n': case 'c': case 'x':
      return {};
    default:
      return std::unexpected(std::string("unknown option -") + c);
  }
}

}  // namespace

std::expected<std::uint8_t, std::string> parse_notify(std::string_view value) {
  std::string v = lower(value);
  if (v == "never") return smtp::notify_never;
  std::uint8_t bits = 0;
  std::string_view rest = v;
  while (true) {
    auto comma = rest.find(',');
    std::string_view word = rest.substr(0, comma);
    if (word == "success") bits |= smtp::notify_success;
    else if (word == "failure") bits |= smtp::notify_failure;
    else if (word == "delay") bits |= smtp::notify_delay;
    else
      return std::unexpected("-N wants never or a list of success,failure,delay, not '" +
                             std::string(value) + "'");
    if (comma == std::string_view::npos) break;
    rest.remove_prefix(comma + 1);
  }
  return bits;
}

std::expected<std::chrono::seconds, std::string> parse_timeout(std::string_view value) {
  auto bad = [&] {
    return std::unexpected("--wait wants a timeout like 300, 30s, 5m or 2h, not '" +
                           std::string(value) + "'");
  };
  std::int64_t n = 0;
  auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
  if (ec != std::errc{} || n < 1) return bad();
  std::string_view unit(end, value.data() + value.size() - end);
  std::int64_t scale = 1;
  if (unit.empty() || unit == "s") scale = 1;
  else if (unit == "m") scale = 60;
  else if (unit == "h") scale = 3600;
  else if (unit == "d") scale = 86400;
  else return bad();
  if (n > 365 * 86400 / scale) return bad();
  return std::chrono::seconds(n * scale);
}

std::expected<options, std::string> parse_args(std::string_view program,
                                               const std::vector<std::string>& args) {
  options o;
  const std::string_view name = base_name(program);
  if (name == "mailq") o.what = mode::list_queue;
  if (name == "newaliases") o.what = mode::new_aliases;

  std::size_t i = 0;
  for (; i < args.size(); ++i) {
    std::string_view a = args[i];
    if (a == "--") {
      ++i;
      break;
    }
    if (a.starts_with("--")) {
      if (a == "--wait") {
        o.wait = default_wait_timeout;
        continue;
      }
      if (a.starts_with("--wait=")) {
        auto t = parse_timeout(a.substr(7));
        if (!t) return std::unexpected(t.error());
        o.wait = *t;
        continue;
      }
      return std::unexpected("unknown option " + std::string(a));
    }
    if (a.size() < 2 || a[0] != '-') break;  // the first recipient
    for (std::size_t k = 1; k < a.size(); ++k) {
      const char c = a[k];
      if (!takes_value(c)) {
        if (auto r = apply(o, c, {}); !r) return std::unexpected(r.error());
        continue;
      }
      std::string_view value = a.substr(k + 1);
      if (value.empty() && c != 'q') {
        if (i + 1 >= args.size()) return std::unexpected(std::string("-") + c + " needs a value");
        value = args[++i];
      }
      if (auto r = apply(o, c, value); !r) return std::unexpected(r.error());
      break;  // the value used the rest of this argument
    }
  }
  for (; i < args.size(); ++i) o.recipients.push_back(args[i]);

  if (o.wait && o.what != mode::deliver)
    return std::unexpected("--wait goes with sending a message (-bm) only");
  return o;
}

}  // namespace sendmail
