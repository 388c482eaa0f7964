// TLSA RDATA (see tlsa.hpp).
#include "dns/tlsa.hpp"

namespace dns {

std::optional<tlsa_record> parse_tlsa_rdata(std::span<const unsigned char> rdata) {
  if (rdata.size() < 4) return std::nullopt;
  tlsa_record r;
  r.usage = rdata[0];
  r.selector = rdata[1];
  r.mtype = rdata[2];
  r.data.assign(rdata.begin() + 3, rdata.end());
  return r;
}

bool usable(const tlsa_record& r) {
  if (r.usage != 2 && r.usage != 3) return false;
  if (r.selector > 1) return false;
  switch (r.mtype) {
    case 0: return !r.data.empty();
    case 1: return r.data.size() == 32;
    case 2: return r.data.size() == 64;
    default: return false;
  }
}

std::string to_string(const tlsa_record& r) {
  static constexpr char hex[] = "0123456789abcdef";
  std::string out = std::to_string(r.usage) + " " + std::to_string(r.selector) + " " +
                    std::to_string(r.mtype) + " ";
  for (unsigned char c : r.data) {
    out += hex[c >> 4];
    out += hex[c & 15];
  }
  return out;
}

}  // namespace dns
