// Reading DNS replies (see wire.hpp). Names are skipped by hand (labels up to a
// zero byte or a compression pointer) and expanded with ares_expand_name, which
// validates pointers and loops.
#include "dns/wire.hpp"

#include <ares.h>
#include <arpa/inet.h>

#include <algorithm>

namespace dns::detail {

namespace {

constexpr std::uint16_t class_in = 1;
constexpr std::size_t header_size = 12;

struct rr_view {
  int section = 0;  // 0 answer, 1 authority
  std::uint16_t type = 0;
  std::uint16_t cls = 0;
  std::uint32_t ttl = 0;
  std::size_t rdata = 0;  // offset in the message
  std::uint16_t rdlen = 0;
  std::size_t owner = 0;  // offset of its (encoded) owner name
};

std::uint16_t get16(message m, std::size_t at) {
  return static_cast<std::uint16_t>((m[at] << 8) | m[at + 1]);
}
std::uint32_t get32(message m, std::size_t at) {
  return (std::uint32_t{m[at]} << 24) | (std::uint32_t{m[at + 1]} << 16) |
         (std::uint32_t{m[at + 2]} << 8) | std::uint32_t{m[at + 3]};
}

// Advances `at` past an encoded name; false if it runs off the message.
bool skip_name(message m, std::size_t& at) {
  while (true) {
    if (at >= m.size()) return false;
    unsigned char len = m[at];
    if ((len & 0xC0) == 0xC0) {
      if (at + 2 > m.size()) return false;
      at += 2;
      return true;
    }
    if ((len & 0xC0) != 0) return false;  // reserved label types
    at += 1;
    if (len == 0) return true;
    at += len;
  }
}

// Answer and authority records, or nullopt if the message is malformed.
std::optional<std::vector<rr_view>> walk(message m) {
  if (m.size() < header_size) return std::nullopt;
  const std::uint16_t qd = get16(m, 4), an = get16(m, 6), ns = get16(m, 8);
  std::size_t at = header_size;
  for (std::uint16_t i = 0; i < qd; ++i) {
    if (!skip_name(m, at) || at + 4 > m.size()) return std::nullopt;
    at += 4;
  }
  std::vector<rr_view> out;
  const std::uint32_t total = std::uint32_t{an} + ns;
  for (std::uint32_t i = 0; i < total; ++i) {
    const std::size_t owner = at;
    if (!skip_name(m, at) || at + 10 > m.size()) return std::nullopt;
    rr_view rr;
    rr.owner = owner;
    rr.section = i < an ? 0 : 1;
    rr.type = get16(m, at);
    rr.cls = get16(m, at + 2);
    rr.ttl = get32(m, at + 4);
    if (rr.ttl > 0x7FFFFFFFu) rr.ttl = 0;  // RFC 2181 8: the top bit set means zero
    rr.rdlen = get16(m, at + 8);
    rr.rdata = at + 10;
    if (rr.rdata + rr.rdlen > m.size()) return std::nullopt;
    at = rr.rdata + rr.rdlen;
    out.push_back(rr);
  }
  return out;
}

std::optional<std::string> expand_name(message m, std::size_t at, std::size_t limit) {
  if (at >= limit || m.size() > 0x7FFFFFFF) return std::nullopt;
  char* name = nullptr;
  long used = 0;
  if (ares_expand_name(m.data() + at, m.data(), static_cast<int>(m.size()), &name, &used) !=
      ARES_SUCCESS)
    return std::nullopt;
  std::string out(name);
  ares_free_string(name);
  if (used <= 0 || at + static_cast<std::size_t>(used) > limit) return std::nullopt;
  return out;
}

std::uint32_t min_cname_ttl(const std::vector<rr_view>& rrs, std::uint32_t ttl) {
  for (const auto& rr : rrs)
    if (rr.section == 0 && rr.type == type_cname) ttl = std::min(ttl, rr.ttl);
  return ttl;
}

}  // namespace

std::optional<std::vector<mx_record>> parse_mx(message msg) {
  auto rrs = walk(msg);
  if (!rrs) return std::nullopt;
  std::vector<mx_record> out;
  for (const auto& rr : *rrs) {
    if (rr.section != 0 || rr.type != type_mx || rr.cls != class_in) continue;
    if (rr.rdlen < 3) return std::nullopt;
    auto exchange = expand_name(msg, rr.rdata + 2, rr.rdata + rr.rdlen);
    if (!exchange) return std::nullopt;
    out.push_back({get16(msg, rr.rdata), std::move(*exchange), rr.ttl});
  }
  for (auto& mx : out) mx.ttl = min_cname_ttl(*rrs, mx.ttl);
  return out;
}

std::optional<address_records> parse_addresses(message msg, std::uint16_t type) {
  auto rrs = walk(msg);
  if (!rrs) return std::nullopt;
  const int family = type == type_aaaa ? AF_INET6 : AF_INET;
  const std::uint16_t size = type == type_aaaa ? 16 : 4;
  address_records out;
  bool any = false;
  for (const auto& rr : *rrs) {
    if (rr.section != 0 || rr.type != type || rr.cls != class_in) continue;
    if (rr.rdlen != size) return std::nullopt;
    char text[INET6_ADDRSTRLEN];
    if (inet_ntop(family, msg.data() + rr.rdata, text, sizeof text) == nullptr) return std::nullopt;
    if (std::find(out.addresses.begin(), out.addresses.end(), text) == out.addresses.end())
      out.addresses.emplace_back(text);
    if (!any) {
      auto owner = expand_name(msg, rr.owner, msg.size());
      if (!owner) return std::nullopt;
      out.owner = std::move(*owner);
    }
    out.ttl = any ? std::min(out.ttl, rr.ttl) : rr.ttl;
    any = true;
  }
  if (any) out.ttl = min_cname_ttl(*rrs, out.ttl);
  return out;
}

std::optional<std::vector<std::string>> parse_txt(message msg) {
  auto rrs = walk(msg);
  if (!rrs) return std::nullopt;
  std::vector<std::string> out;
  for (const auto& rr : *rrs) {
    if (rr.section != 0 || rr.type != type_txt || rr.cls != class_in) continue;
    std::string text;
    for (std::size_t at = rr.rdata, end = rr.rdata + rr.rdlen; at < end;) {
      const std::size_t len = msg[at];
      if (at + 1 + len > end) return std::nullopt;
      text.append(reinterpret_cast<const char*>(msg.data() + at + 1), len);
      at += 1 + len;
    }
    out.push_back(std::move(text));
  }
  return out;
}

std::optional<std::uint32_t> answer_ttl(message msg, std::uint16_t type) {
  auto rrs = walk(msg);
  if (!rrs) return std::nullopt;
  std::optional<std::uint32_t> ttl;
  for (const auto& rr : *rrs)
    if (rr.section == 0 && rr.type == type && rr.cls == class_in)
      ttl = ttl ? std::min(*ttl, rr.ttl) : rr.ttl;
  if (ttl) ttl = min_cname_ttl(*rrs, *ttl);
  return ttl;
}

std::optional<std::vector<std::vector<unsigned char>>> parse_rdata(message msg,
                                                                   std::uint16_t type) {
  auto rrs = walk(msg);
  if (!rrs) return std::nullopt;
  std::vector<std::vector<unsigned char>> out;
  for (const auto& rr : *rrs)
    if (rr.section == 0 && rr.type == type && rr.cls == class_in)
      out.emplace_back(msg.begin() + rr.rdata, msg.begin() + rr.rdata + rr.rdlen);
  return out;
}

bool authenticated_data(message msg) {
  return msg.size() >= header_size && (msg[3] & 0x20) != 0;
}

std::optional<std::uint32_t> negative_ttl(message msg) {
  auto rrs = walk(msg);
  if (!rrs) return std::nullopt;
  for (const auto& rr : *rrs) {
    if (rr.section != 1 || rr.type != type_soa) continue;
    // MNAME, RNAME, then SERIAL REFRESH RETRY EXPIRE MINIMUM (5 x 32 bits).
    std::size_t at = rr.rdata;
    const std::size_t end = rr.rdata + rr.rdlen;
    if (!skip_name(msg, at) || at > end || !skip_name(msg, at) || at + 20 != end)
      return std::nullopt;
    return std::min(rr.ttl, get32(msg, at + 16));
  }
  return std::nullopt;
}

}  // namespace dns::detail
