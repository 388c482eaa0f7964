// Reading DNS replies (RFC 1035 wire format) for what the resolver needs that
// c-ares' parsers do not give: MX records with their TTLs, A/AAAA with TTLs, TXT
// records (for DKIM key records), raw RDATA (TLSA), the AD bit, and the negative-caching TTL from the SOA in the authority section (RFC 2308).
// Every read is bounds-checked; a malformed message yields nullopt, never a crash.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace dns::detail {

using message = std::span<const unsigned char>;

inline constexpr std::uint16_t type_a = 1;
inline constexpr std::uint16_t type_cname = 5;
inline constexpr std::uint16_t type_soa = 6;
inline constexpr std::uint16_t type_mx = 15;
inline constexpr std::uint16_t type_txt = 16;
inline constexpr std::uint16_t type_aaaa = 28;

struct mx_record {
  std::uint16_t preference = 0;
  std::string exchange;  // as c-ares expands it; "" for the root (a null MX)
  std::uint32_t ttl = 0;
};

// MX records of the answer section (any owner: a CNAME chain is followed by the
// server). ttl is each record's own, lowered to any CNAME TTL in the answer.
std::optional<std::vector<mx_record>> parse_mx(message msg);

struct address_records {
  std::vector<std::string> addresses;  // canonical text, in answer order, no duplicates
  std::uint32_t ttl = 0;               // minimum over the A/AAAA and CNAME records used
  std::string owner;                   // the name the records are at (after any CNAME)
};
// type_a or type_aaaa records of the answer section.
std::optional<address_records> parse_addresses(message msg, std::uint16_t type);

// TXT records of the answer section, each one's character-strings joined
// without separators (RFC 6376 3.6.2.2 reads a DKIM key record that way).
std::optional<std::vector<std::string>> parse_txt(message msg);
// The lowest TTL of the answer's records of `type` (class IN), lowered to any
// CNAME TTL in the answer; nullopt when there is none (or the message is malformed).
std::optional<std::uint32_t> answer_ttl(message msg, std::uint16_t type);

// RDATA of each answer record of `type` (class IN), e.g. TLSA (dns/tlsa.hpp parses it).
std::optional<std::vector<std::vector<unsigned char>>> parse_rdata(message msg, std::uint16_t type);

// The header's AD bit (RFC 4035 3.2.3): the resolver validated the answer. Only
// meaningful from a validating resolver relayd was configured to trust.
bool authenticated_data(message msg);

// RFC 2308: min(SOA TTL, SOA MINIMUM) of the SOA in the authority section;
// nullopt when there is none (or the message is malformed).
std::optional<std::uint32_t> negative_ttl(message msg);

}  // namespace dns::detail
