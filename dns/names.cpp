// Name and address syntax for the resolver (see names.hpp).
#include "dns/names.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <charconv>
#include <cstdint>

#include "smtp/text.hpp"

namespace dns::detail {

namespace {

bool name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

std::optional<std::string> parse_family(int family, std::string_view text) {
  // inet_pton stops at a NUL: "192.0.2.1\0junk" (possible in a DNS name) is
  // not an address.
  if (text.empty() || text.size() > INET6_ADDRSTRLEN ||
      text.find('\0') != std::string_view::npos)
    return std::nullopt;
  std::string copy(text);
  unsigned char buf[sizeof(in6_addr)];
  if (inet_pton(family, copy.c_str(), buf) != 1) return std::nullopt;
  char out[INET6_ADDRSTRLEN];
  if (inet_ntop(family, buf, out, sizeof out) == nullptr) return std::nullopt;
  return std::string(out);
}

}  // namespace

std::optional<std::string> normalize_name(std::string_view name) {
  if (!name.empty() && name.back() == '.') name.remove_suffix(1);
  if (name.empty() || name.size() > 253) return std::nullopt;
  std::string out;
  out.reserve(name.size());
  std::size_t label = 0;
  for (char c : name) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (c == '.') {
      if (label == 0) return std::nullopt;
      label = 0;
    } else {
      if (!name_char(c) || ++label > 63) return std::nullopt;
    }
    out.push_back(c);
  }
  if (label == 0) return std::nullopt;  // "a.." : an empty last label
  return out;
}

std::optional<std::string> parse_ip(std::string_view text) {
  if (auto v4 = parse_family(AF_INET, text)) return v4;
  return parse_family(AF_INET6, text);
}

domain_literal parse_domain_literal(std::string_view text) {
  domain_literal out;
  if (text.empty() || text.front() != '[') return out;
  out.is_literal = true;
  if (text.size() < 3 || text.back() != ']') return out;
  std::string_view inner = text.substr(1, text.size() - 2);
  std::optional<std::string> address;
  if (smtp::text::istarts_with(inner, "ipv6:"))
    address = parse_family(AF_INET6, inner.substr(5));
  else
    address = parse_family(AF_INET, inner);
  if (address) {
    out.valid = true;
    out.address = std::move(*address);
  }
  return out;
}

std::optional<std::string> server_csv_entry(std::string_view server) {
  std::string_view host = server;
  std::string_view port;
  if (!server.empty() && server.front() == '[') {
    auto close = server.find(']');
    if (close == std::string_view::npos) return std::nullopt;
    host = server.substr(1, close - 1);
    std::string_view rest = server.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return std::nullopt;
      port = rest.substr(1);
      if (port.empty()) return std::nullopt;
    }
  } else if (server.find(':') == server.rfind(':') && server.find(':') != std::string_view::npos) {
    // Exactly one colon: IPv4 with a port. More than one: a bare IPv6 address.
    auto colon = server.find(':');
    host = server.substr(0, colon);
    port = server.substr(colon + 1);
    if (port.empty()) return std::nullopt;
  }
  if (!port.empty()) {
    unsigned value = 0;
    auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
    if (ec != std::errc() || end != port.data() + port.size() || value == 0 || value > 65535)
      return std::nullopt;
  }
  // Always with a port: c-ares 1.18 misreads "[::1]" without one.
  const std::string p = port.empty() ? std::string("53") : std::string(port);
  if (auto v4 = parse_family(AF_INET, host)) return *v4 + ":" + p;
  if (auto v6 = parse_family(AF_INET6, host)) return "[" + *v6 + "]:" + p;
  return std::nullopt;
}

}  // namespace dns::detail
