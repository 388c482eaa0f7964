// Fuzz target: DNS replies as c-ares hands them to the resolver (dns/wire.hpp).
// The input is the whole reply message. parse_mx, parse_addresses (A and AAAA)
// and negative_ttl never read outside it (ASan) and give sane values: TTLs
// within RFC 2181's 31 bits, addresses in canonical text without duplicates,
// no empty address list with a TTL. Each MX exchange then goes through the name
// checks mx_resolver applies to it (parse_ip, domain literal, normalize_name),
// whose results must be canonical: normalising twice changes nothing.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <string>
#include <string_view>

#include "dns/names.hpp"
#include "dns/wire.hpp"

namespace {

namespace d = dns::detail;

// An invariant that does not hold: say which, then crash for libFuzzer.
#define CHECK(ok) \
  ((ok) ? void() : (std::fprintf(stderr, "check failed, line %d: %s\n", __LINE__, #ok), std::abort()))

constexpr std::uint32_t max_ttl = 0x7FFFFFFF;

bool name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.';
}

// What the resolver does with an exchange or a host name it is given: results
// are canonical. (Not checked: that a name with a NUL is refused. parse_ip and
// parse_domain_literal accept "192.0.2.1\0junk" today, as inet_pton stops at the
// NUL; reported. Exchanges cannot carry one: c-ares escapes it as \000.)
void check_name(std::string_view name) {
  if (auto ip = d::parse_ip(name)) CHECK(d::parse_ip(*ip) == ip);
  const d::domain_literal lit = d::parse_domain_literal(name);
  CHECK(lit.is_literal == name.starts_with('['));
  if (lit.valid) CHECK(lit.is_literal && d::parse_ip(lit.address) == lit.address);
  if (auto n = d::normalize_name(name)) {
    CHECK(!n->empty() && n->size() <= 253 && n->back() != '.' && n->front() != '.');
    CHECK(std::all_of(n->begin(), n->end(), name_char));
    CHECK(n->find("..") == std::string::npos);
    CHECK(d::normalize_name(*n) == n);
  }
}

void check_addresses(const d::address_records& a, int family_bytes) {
  if (a.addresses.empty()) CHECK(a.ttl == 0);
  CHECK(a.ttl <= max_ttl);
  for (std::size_t i = 0; i < a.addresses.size(); ++i) {
    const std::string& text = a.addresses[i];
    CHECK(d::parse_ip(text) == text);
    CHECK((text.find(':') == std::string::npos) == (family_bytes == 4));
    for (std::size_t j = 0; j < i; ++j) CHECK(a.addresses[j] != text);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const d::message msg(data, size);

  if (auto mx = d::parse_mx(msg)) {
    for (const d::mx_record& r : *mx) {
      CHECK(r.ttl <= max_ttl);
      CHECK(r.exchange.find('\0') == std::string::npos);  // c-ares escapes it
      check_name(r.exchange);
    }
  }
  if (auto a = d::parse_addresses(msg, d::type_a)) check_addresses(*a, 4);
  if (auto aaaa = d::parse_addresses(msg, d::type_aaaa)) check_addresses(*aaaa, 16);
  if (auto ttl = d::negative_ttl(msg)) CHECK(*ttl <= max_ttl);

  // The same bytes as a name given to the resolver (a recipient's domain, a
  // configured smarthost or DNS server).
  if (size <= 300) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    check_name(text);
    if (auto entry = d::server_csv_entry(text)) CHECK(!entry->empty());
  }
  return 0;
}
