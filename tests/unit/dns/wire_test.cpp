// DNS reply parsing: MX with TTLs, A/AAAA, the SOA negative TTL, compression,
// and every truncation of a valid reply rejected without reading out of bounds.
#include "dns/wire.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

using namespace dns::detail;

namespace {

// Builds replies by hand: one question, then answer and authority records.
class reply_builder {
 public:
  explicit reply_builder(const std::string& qname, std::uint16_t qtype) {
    bytes_ = {0x12, 0x34, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0};
    name(qname);
    u16(qtype);
    u16(1);
  }
  void name(const std::string& n) {
    labels(n);
    bytes_.push_back(0);
  }
  // Labels without the terminating root, to be followed by a pointer.
  void labels(const std::string& n) {
    std::size_t start = 0;
    while (start < n.size()) {
      auto dot = n.find('.', start);
      if (dot == std::string::npos) dot = n.size();
      bytes_.push_back(static_cast<unsigned char>(dot - start));
      bytes_.insert(bytes_.end(), n.begin() + start, n.begin() + dot);
      start = dot + 1;
    }
  }
  void pointer(std::uint16_t at) { u16(static_cast<std::uint16_t>(0xC000 | at)); }
  void u16(std::uint16_t v) {
    bytes_.push_back(static_cast<unsigned char>(v >> 8));
    bytes_.push_back(static_cast<unsigned char>(v));
  }
  void u32(std::uint32_t v) {
    u16(static_cast<std::uint16_t>(v >> 16));
    u16(static_cast<std::uint16_t>(v));
  }
  // Owner is the question name (pointer to offset 12); rdata written by `fill`.
  template <typename F>
  void record(bool authority, std::uint16_t type, std::uint32_t ttl, F fill) {
    ++bytes_[authority ? 9 : 7];
    pointer(12);
    type_onwards(type, ttl, fill);
  }
  // An answer record with its own owner name (e.g. a CNAME's target).
  template <typename F>
  void record_at(const std::string& owner, std::uint16_t type, std::uint32_t ttl, F fill) {
    ++bytes_[7];
    name(owner);
    type_onwards(type, ttl, fill);
  }
  const std::vector<unsigned char>& bytes() const { return bytes_; }

 private:
  // A record after its owner name: type, class IN, TTL, then RDATA and its length.
  template <typename F>
  void type_onwards(std::uint16_t type, std::uint32_t ttl, F fill) {
    u16(type);
    u16(1);
    u32(ttl);
    std::size_t len_at = bytes_.size();
    u16(0);
    fill(*this);
    std::size_t len = bytes_.size() - len_at - 2;
    bytes_[len_at] = static_cast<unsigned char>(len >> 8);
    bytes_[len_at + 1] = static_cast<unsigned char>(len);
  }
  std::vector<unsigned char> bytes_;
};

reply_builder mx_reply() {
  reply_builder b("example.org", type_mx);
  b.record(false, type_mx, 300, [](reply_builder& r) {
    r.u16(20);
    r.name("mx2.example.org");
  });
  b.record(false, type_mx, 100, [](reply_builder& r) {
    r.u16(10);
    r.labels("mx1");
    r.pointer(12);  // "mx1" + compressed "example.org"
  });
  return b;
}

}  // namespace

TEST(wire, parses_mx_records_with_ttls) {
  auto b = mx_reply();
  auto mx = parse_mx(b.bytes());
  ASSERT_TRUE(mx);
  ASSERT_EQ(mx->size(), 2u);
  EXPECT_EQ((*mx)[0].preference, 20);
  EXPECT_EQ((*mx)[0].exchange, "mx2.example.org");
  EXPECT_EQ((*mx)[0].ttl, 300u);
  EXPECT_EQ((*mx)[1].preference, 10);
  EXPECT_EQ((*mx)[1].exchange, "mx1.example.org");
  EXPECT_EQ((*mx)[1].ttl, 100u);
}

TEST(wire, null_mx_has_an_empty_exchange) {
  reply_builder b("example.org", type_mx);
  b.record(false, type_mx, 3600, [](reply_builder& r) {
    r.u16(0);
    r.name("");
  });
  auto mx = parse_mx(b.bytes());
  ASSERT_TRUE(mx);
  ASSERT_EQ(mx->size(), 1u);
  EXPECT_EQ((*mx)[0].exchange, "");
}

TEST(wire, cname_ttl_lowers_the_answer_ttl) {
  reply_builder b("www.example.org", type_a);
  b.record(false, type_cname, 30, [](reply_builder& r) { r.name("host.example.org"); });
  b.record(false, type_a, 600, [](reply_builder& r) { r.u32(0xC0000201); });
  b.record(false, type_a, 600, [](reply_builder& r) { r.u32(0xC0000201); });  // duplicate
  auto a = parse_addresses(b.bytes(), type_a);
  ASSERT_TRUE(a);
  EXPECT_EQ(a->addresses, std::vector<std::string>{"192.0.2.1"});
  EXPECT_EQ(a->ttl, 30u);
}

TEST(wire, aaaa) {
  reply_builder b("host.example.org", type_aaaa);
  b.record(false, type_aaaa, 60, [](reply_builder& r) {
    r.u32(0x20010db8);
    r.u32(0);
    r.u32(0);
    r.u32(1);
  });
  auto a = parse_addresses(b.bytes(), type_aaaa);
  ASSERT_TRUE(a);
  EXPECT_EQ(a->addresses, std::vector<std::string>{"2001:db8::1"});
  EXPECT_EQ(a->ttl, 60u);
  EXPECT_TRUE(parse_addresses(b.bytes(), type_a)->addresses.empty());
}

TEST(wire, ttl_with_top_bit_set_is_zero) {
  reply_builder b("host.example.org", type_a);
  b.record(false, type_a, 0x80000000u, [](reply_builder& r) { r.u32(0x7F000001); });
  EXPECT_EQ(parse_addresses(b.bytes(), type_a)->ttl, 0u);
}

TEST(wire, negative_ttl_is_the_soa_minimum_or_its_ttl) {
  auto soa = [](std::uint32_t ttl, std::uint32_t minimum) {
    reply_builder b("nx.example.org", type_mx);
    b.record(true, type_soa, ttl, [&](reply_builder& r) {
      r.name("ns.example.org");
      r.name("hostmaster.example.org");
      for (std::uint32_t v : {1u, 7200u, 900u, 1209600u}) r.u32(v);
      r.u32(minimum);
    });
    return b;
  };
  EXPECT_EQ(negative_ttl(soa(3600, 120).bytes()), 120u);
  EXPECT_EQ(negative_ttl(soa(60, 900).bytes()), 60u);
  EXPECT_FALSE(negative_ttl(mx_reply().bytes()));
}

TEST(wire, every_truncation_is_rejected_safely) {
  auto full = mx_reply().bytes();
  for (std::size_t n = 0; n < full.size(); ++n) {
    std::vector<unsigned char> cut(full.begin(), full.begin() + static_cast<long>(n));
    EXPECT_FALSE(parse_mx(cut)) << "length " << n;
    (void)negative_ttl(cut);
    (void)parse_addresses(cut, type_a);
  }
}

TEST(wire, compression_loop_is_rejected) {
  reply_builder b("example.org", type_mx);
  auto bytes = b.bytes();
  bytes[7] = 1;  // one answer whose owner and exchange point at themselves
  std::size_t at = bytes.size();
  const unsigned char rr[] = {
      0xC0, static_cast<unsigned char>(at),     0, 15, 0, 1, 0, 0, 0, 60, 0, 4, 0, 10,
      0xC0, static_cast<unsigned char>(at + 14)};
  bytes.insert(bytes.end(), std::begin(rr), std::end(rr));
  EXPECT_FALSE(parse_mx(bytes));
}

// TXT (DKIM key records): one record's strings are joined; every record is kept;
// a string running past its record is malformed.
TEST(wire, txt_joins_character_strings_per_record) {
  // By hand: the builder above writes names, not character-strings.
  std::vector<unsigned char> m = {0x12, 0x34, 0x81, 0x80, 0, 1, 0, 2, 0, 0, 0, 0};
  auto push_name = [&](std::string_view label) {
    m.push_back(static_cast<unsigned char>(label.size()));
    m.insert(m.end(), label.begin(), label.end());
  };
  push_name("s1");
  push_name("example");
  m.push_back(0);
  m.insert(m.end(), {0, 16, 0, 1});
  auto push_txt = [&](std::vector<std::string> strings) {
    m.insert(m.end(), {0xC0, 12, 0, 16, 0, 1, 0, 0, 0, 60});
    std::size_t len = 0;
    for (const auto& s : strings) len += 1 + s.size();
    m.push_back(static_cast<unsigned char>(len >> 8));
    m.push_back(static_cast<unsigned char>(len));
    for (const auto& s : strings) {
      m.push_back(static_cast<unsigned char>(s.size()));
      m.insert(m.end(), s.begin(), s.end());
    }
  };
  push_txt({"v=DKIM1; k=rsa; ", "p=QUJD"});
  push_txt({"v=spf1 -all"});
  auto t = parse_txt(m);
  ASSERT_TRUE(t);
  EXPECT_EQ(*t, (std::vector<std::string>{"v=DKIM1; k=rsa; p=QUJD", "v=spf1 -all"}));
  auto broken = m;
  broken[broken.size() - 12] = 200;  // "v=spf1 -all" claims 200 bytes
  EXPECT_FALSE(parse_txt(broken));
}

// TLSA (DANE): the raw RDATA of each answer record of the type asked for, other
// types skipped; the AD bit read from the header.
TEST(wire, rdata_of_tlsa_records_and_the_ad_bit) {
  reply_builder b("_25._tcp.mx.example.org", 52);
  b.record(false, type_cname, 60, [](reply_builder& r) { r.name("other.example.org"); });
  b.record(false, 52, 300, [](reply_builder& r) {
    r.u16(0x0301);  // DANE-EE, SPKI
    r.u16(0x01AB);  // SHA2-256, first data byte 0xAB
  });
  b.record(false, 52, 300, [](reply_builder& r) { r.u16(0x0200); });  // too short, still raw
  auto bytes = b.bytes();
  auto rdata = parse_rdata(bytes, 52);
  ASSERT_TRUE(rdata);
  ASSERT_EQ(rdata->size(), 2u);
  EXPECT_EQ((*rdata)[0], (std::vector<unsigned char>{3, 1, 1, 0xAB}));
  EXPECT_EQ((*rdata)[1], (std::vector<unsigned char>{2, 0}));
  EXPECT_FALSE(authenticated_data(bytes));  // 0x81 0x80: QR RD RA, no AD
  bytes[3] |= 0x20;
  EXPECT_TRUE(authenticated_data(bytes));
  EXPECT_FALSE(authenticated_data(std::vector<unsigned char>(bytes.begin(), bytes.begin() + 11)));
  for (std::size_t n = 12; n < bytes.size(); ++n)
    EXPECT_FALSE(parse_rdata(std::vector<unsigned char>(bytes.begin(), bytes.begin() + n), 52))
        << "length " << n;
}

// The TTL an answer may be kept: the lowest of the records of the type asked
// for, lowered by a CNAME on the way; none without such records.
TEST(wire, answer_ttl_is_the_lowest_of_the_type_and_its_cnames) {
  reply_builder b("_mta-sts.example.org", type_txt);
  b.record(false, type_txt, 600, [](reply_builder& r) { r.u16(0x0161); });
  b.record(false, type_txt, 300, [](reply_builder& r) { r.u16(0x0162); });
  EXPECT_EQ(answer_ttl(b.bytes(), type_txt), 300u);
  EXPECT_EQ(answer_ttl(b.bytes(), type_a), std::nullopt);
  b.record(false, type_cname, 60, [](reply_builder& r) { r.name("other.example.org"); });
  EXPECT_EQ(answer_ttl(b.bytes(), type_txt), 60u);
}

// An MX host that is an alias: the addresses' owner is the CNAME's target
// (DANE looks up TLSA records there first, RFC 7672 2.2.2).
TEST(wire, addresses_name_their_owner_after_a_cname) {
  reply_builder b("mx.example.org", type_a);
  b.record(false, type_cname, 300, [](reply_builder& r) { r.name("host.example.net"); });
  b.record_at("Host.Example.NET", type_a, 300, [](reply_builder& r) { r.u32(0x7F000001); });
  auto a = parse_addresses(b.bytes(), type_a);
  ASSERT_TRUE(a);
  EXPECT_EQ(a->addresses, std::vector<std::string>{"127.0.0.1"});
  EXPECT_EQ(a->owner, "Host.Example.NET");
  reply_builder direct("mx.example.org", type_a);
  direct.record(false, type_a, 300, [](reply_builder& r) { r.u32(0x7F000001); });
  EXPECT_EQ(parse_addresses(direct.bytes(), type_a)->owner, "mx.example.org");
}
