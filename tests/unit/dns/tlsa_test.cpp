// TLSA RDATA (RFC 6698) and the RFC 7672 usability rule: DANE-TA(2) and
// DANE-EE(3), selector 0/1, matching type 0/1/2 with a digest of the right size.
#include "dns/tlsa.hpp"

#include <gtest/gtest.h>

#include <vector>

using dns::parse_tlsa_rdata;
using dns::tlsa_record;

namespace {

tlsa_record rec(std::uint8_t usage, std::uint8_t selector, std::uint8_t mtype, std::size_t len) {
  return tlsa_record{usage, selector, mtype, std::vector<unsigned char>(len, 0x5A)};
}

}  // namespace

TEST(tlsa, parses_usage_selector_type_and_data) {
  const std::vector<unsigned char> rdata = {3, 1, 1, 0xDE, 0xAD, 0xBE, 0xEF};
  auto r = parse_tlsa_rdata(rdata);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->usage, 3);
  EXPECT_EQ(r->selector, 1);
  EXPECT_EQ(r->mtype, 1);
  EXPECT_EQ(r->data, (std::vector<unsigned char>{0xDE, 0xAD, 0xBE, 0xEF}));
  EXPECT_EQ(dns::to_string(*r), "3 1 1 deadbeef");
}

TEST(tlsa, rdata_without_association_data_is_malformed) {
  for (std::size_t n = 0; n < 4; ++n) {
    std::vector<unsigned char> rdata(n, 3);
    EXPECT_FALSE(parse_tlsa_rdata(rdata)) << n << " bytes";
  }
  EXPECT_TRUE(parse_tlsa_rdata(std::vector<unsigned char>{2, 0, 0, 0x30}));
}

TEST(tlsa, dane_ta_and_dane_ee_with_known_digests_are_usable) {
  for (std::uint8_t usage : {2, 3})
    for (std::uint8_t selector : {0, 1}) {
      EXPECT_TRUE(usable(rec(usage, selector, 0, 300)));
      EXPECT_TRUE(usable(rec(usage, selector, 1, 32)));
      EXPECT_TRUE(usable(rec(usage, selector, 2, 64)));
    }
}

TEST(tlsa, pkix_usages_unknown_fields_and_bad_digest_sizes_are_unusable) {
  EXPECT_FALSE(usable(rec(0, 1, 1, 32)));   // PKIX-TA: not for SMTP (RFC 7672 3.1.3)
  EXPECT_FALSE(usable(rec(1, 1, 1, 32)));   // PKIX-EE
  EXPECT_FALSE(usable(rec(4, 1, 1, 32)));   // unknown usage
  EXPECT_FALSE(usable(rec(3, 2, 1, 32)));   // unknown selector
  EXPECT_FALSE(usable(rec(3, 1, 3, 32)));   // unknown matching type
  EXPECT_FALSE(usable(rec(3, 1, 1, 31)));   // SHA2-256 is 32 bytes
  EXPECT_FALSE(usable(rec(3, 1, 1, 64)));
  EXPECT_FALSE(usable(rec(3, 1, 2, 32)));   // SHA2-512 is 64 bytes
  EXPECT_FALSE(usable(rec(2, 0, 0, 0)));    // exact match of nothing
}
