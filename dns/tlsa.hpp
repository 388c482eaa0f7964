// TLSA records (RFC 6698) as DANE for SMTP uses them (RFC 7672): the RDATA
// parser and the usability rule. Pure functions, no I/O: a malformed RDATA is
// nullopt, and a record relayd cannot use is "unusable", never an error.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace dns {

inline constexpr std::uint16_t type_tlsa = 52;

struct tlsa_record {
  std::uint8_t usage = 0;     // 0 PKIX-TA, 1 PKIX-EE, 2 DANE-TA, 3 DANE-EE
  std::uint8_t selector = 0;  // 0 full certificate, 1 SubjectPublicKeyInfo
  std::uint8_t mtype = 0;     // 0 exact, 1 SHA2-256, 2 SHA2-512
  std::vector<unsigned char> data;
};

// One record's RDATA: usage, selector, matching type, then at least one byte of
// association data. nullopt when shorter than 4 bytes.
std::optional<tlsa_record> parse_tlsa_rdata(std::span<const unsigned char> rdata);

// RFC 7672 3.1: SMTP clients use DANE-TA(2) and DANE-EE(3) only, selector 0 or 1,
// matching type 0, 1 (32-byte digest) or 2 (64-byte digest). A digest of the
// wrong length is unusable (it could never match).
bool usable(const tlsa_record& r);

// "3 1 1 2c4f..." (presentation format, data in lower-case hex) for logs.
std::string to_string(const tlsa_record& r);

}  // namespace dns
