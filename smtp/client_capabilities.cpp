// EHLO capability parsing for the SMTP client (see client_capabilities.hpp). The
// reply text is walked line by line; only the keywords relayd knows set a flag,
// and a SIZE argument that is not a decimal number reads as "no limit given".
#include "smtp/client_capabilities.hpp"

#include <string_view>

#include "smtp/text.hpp"

namespace smtp {
namespace {

using text::iequals;

// Blanks and a stray CR removed at both ends.
std::string_view trim_line(std::string_view s) {
  s = text::trim(s);
  while (!s.empty() && s.back() == '\r') s = text::trim(s.substr(0, s.size() - 1));
  return s;
}

// Sets the flags of the AUTH mechanisms listed in `mechs` (space-separated).
void parse_auth_mechanisms(std::string_view mechs, server_capabilities& caps) {
  while (!mechs.empty()) {
    const std::size_t sp = mechs.find(' ');
    const std::string_view mech = mechs.substr(0, sp);
    if (iequals(mech, "PLAIN")) caps.auth_plain = true;
    if (iequals(mech, "LOGIN")) caps.auth_login = true;
    if (iequals(mech, "XOAUTH2")) caps.auth_xoauth2 = true;
    if (iequals(mech, "OAUTHBEARER")) caps.auth_oauthbearer = true;
    mechs = sp == std::string_view::npos ? std::string_view{} : trim_line(mechs.substr(sp + 1));
  }
}

void parse_extension(std::string_view line, server_capabilities& caps) {
  const std::size_t sep = line.find_first_of(" =");
  const std::string_view keyword = line.substr(0, sep);
  const std::string_view args =
      sep == std::string_view::npos ? std::string_view{} : trim_line(line.substr(sep + 1));
  if (iequals(keyword, "PIPELINING")) {
    caps.pipelining = true;
  } else if (iequals(keyword, "SIZE")) {
    caps.size = true;
    // At most 19 digits, so that any limit read fits without overflow.
    caps.max_size = args.size() <= 19 ? text::parse_decimal(args).value_or(0) : 0;
  } else if (iequals(keyword, "8BITMIME")) {
    caps.eight_bit_mime = true;
  } else if (iequals(keyword, "SMTPUTF8")) {
    caps.smtputf8 = true;
  } else if (iequals(keyword, "STARTTLS")) {
    caps.starttls = true;
  } else if (iequals(keyword, "ENHANCEDSTATUSCODES")) {
    caps.enhanced_status_codes = true;
  } else if (iequals(keyword, "CHUNKING")) {
    caps.chunking = true;
  } else if (iequals(keyword, "DSN")) {
    caps.dsn = true;
  } else if (iequals(keyword, "REQUIRETLS")) {
    caps.requiretls = true;
  } else if (iequals(keyword, "AUTH")) {
    parse_auth_mechanisms(args, caps);
  }
}

}  // namespace

server_capabilities parse_capabilities(const reply& r) {
  server_capabilities caps;
  caps.esmtp = true;
  std::string_view text = r.text;
  bool first = true;
  while (true) {
    const std::size_t nl = text.find('\n');
    const std::string_view line = trim_line(text.substr(0, nl));
    if (!first && !line.empty()) parse_extension(line, caps);
    first = false;
    if (nl == std::string_view::npos) break;
    text.remove_prefix(nl + 1);
  }
  return caps;
}

}  // namespace smtp
