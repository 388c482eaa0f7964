// relayd/net_cidr: addresses and mynetworks blocks parsed once and matched as
// bytes: IPv4, IPv6, IPv4-mapped on either side, /0, /32 and /128, host bits,
// bad input, and the string entry points that the parsed ones must agree with.
#include "relayd/net_cidr.hpp"

#include <gtest/gtest.h>

#include <array>
#include <vector>

namespace relayd {
namespace {

TEST(net_cidr, parses_and_matches) {
  auto net = parse_cidr("127.0.0.0/8");
  ASSERT_TRUE(net.has_value());
  EXPECT_FALSE(net->v6);
  EXPECT_EQ(net->prefix, 8);
  EXPECT_TRUE(net->contains("127.0.0.1"));
  EXPECT_TRUE(net->contains("127.255.255.255"));
  EXPECT_FALSE(net->contains("128.0.0.1"));
  EXPECT_FALSE(net->contains("::1"));
  EXPECT_FALSE(net->contains("not an address"));
  EXPECT_FALSE(net->contains(""));

  auto odd = parse_cidr("192.168.1.128/25");
  ASSERT_TRUE(odd.has_value());
  EXPECT_TRUE(odd->contains("192.168.1.200"));
  EXPECT_FALSE(odd->contains("192.168.1.127"));

  auto v6 = parse_cidr("2001:db8::/32");
  ASSERT_TRUE(v6.has_value());
  EXPECT_TRUE(v6->v6);
  EXPECT_TRUE(v6->contains("2001:db8:ffff::1"));
  EXPECT_TRUE(v6->contains("[2001:db8::1]"));
  EXPECT_FALSE(v6->contains("2001:db9::1"));
  EXPECT_FALSE(v6->contains("32.1.13.184"));

  auto odd6 = parse_cidr("fe80::/10");
  ASSERT_TRUE(odd6.has_value());
  EXPECT_TRUE(odd6->contains("febf::1"));
  EXPECT_TRUE(odd6->contains("fe80::1%eth0"));
  EXPECT_FALSE(odd6->contains("fec0::1"));
}

TEST(net_cidr, bare_address_is_a_host) {
  auto v4 = parse_cidr("192.0.2.7");
  ASSERT_TRUE(v4.has_value());
  EXPECT_EQ(v4->prefix, 32);
  EXPECT_TRUE(v4->contains("192.0.2.7"));
  EXPECT_FALSE(v4->contains("192.0.2.8"));
  auto v6 = parse_cidr("::1");
  ASSERT_TRUE(v6.has_value());
  EXPECT_EQ(v6->prefix, 128);
  EXPECT_TRUE(v6->contains("::1"));
  EXPECT_FALSE(v6->contains("::"));
}

TEST(net_cidr, zero_prefix_matches_its_family) {
  auto all4 = parse_cidr("0.0.0.0/0");
  ASSERT_TRUE(all4.has_value());
  EXPECT_TRUE(all4->contains("1.2.3.4"));
  EXPECT_TRUE(all4->contains("::ffff:1.2.3.4"));
  EXPECT_FALSE(all4->contains("2001:db8::1"));
  auto all6 = parse_cidr("::/0");
  ASSERT_TRUE(all6.has_value());
  EXPECT_TRUE(all6->contains("2001:db8::1"));
  EXPECT_FALSE(all6->contains("1.2.3.4"));
}

TEST(net_cidr, host_bits_are_masked) {
  auto c = parse_cidr("127.0.0.1/8");
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->addr[0], 127);
  EXPECT_EQ(c->addr[3], 0);
  EXPECT_TRUE(c->contains("127.9.9.9"));
  auto c6 = parse_cidr("2001:db8::1/64");
  ASSERT_TRUE(c6.has_value());
  EXPECT_EQ(c6->addr[15], 0);
  EXPECT_TRUE(c6->contains("2001:db8::ffff"));
}

TEST(net_cidr, ipv4_mapped_addresses_match_ipv4_blocks) {
  auto c = parse_cidr("127.0.0.0/8");
  ASSERT_TRUE(c.has_value());
  EXPECT_TRUE(c->contains("::ffff:127.0.0.2"));
  EXPECT_TRUE(c->contains("::FFFF:7f00:1"));
  EXPECT_FALSE(c->contains("::ffff:10.0.0.1"));
  EXPECT_FALSE(c->contains("::127.0.0.2"));  // IPv4-compatible, not mapped
  // A mapped block is an IPv4 block.
  auto m = parse_cidr("::ffff:10.0.0.0/104");
  ASSERT_TRUE(m.has_value());
  EXPECT_FALSE(m->v6);
  EXPECT_EQ(m->prefix, 8);
  EXPECT_TRUE(m->contains("10.1.2.3"));
  EXPECT_TRUE(m->contains("::ffff:10.1.2.3"));
}

TEST(net_cidr, rejects) {
  for (const char* s :
       {"", "/8", "10.0.0.0/33", "::/129", "10.0.0.0/", "10.0.0.0/-1", "10.0.0.0/8/8", "10.0.0/8",
        "example.org", "10.0.0.0/ 8", "10.0.0.0/+8", "[::1]/128", "10.0.0.0/0008x"})
    EXPECT_FALSE(parse_cidr(s).has_value()) << s;
}

TEST(net_cidr, client_addresses_parse_once) {
  const auto v4 = parse_ip_address("192.0.2.1");
  ASSERT_TRUE(v4.has_value());
  EXPECT_FALSE(v4->v6);
  EXPECT_EQ(*v4, ip_address::from_v4({192, 0, 2, 1}));
  const auto mapped = parse_ip_address("::ffff:192.0.2.1");
  ASSERT_TRUE(mapped.has_value());
  EXPECT_EQ(*mapped, *v4);  // IPv4-mapped is IPv4
  const auto v6 = parse_ip_address("[2001:db8::1]");
  ASSERT_TRUE(v6.has_value());
  EXPECT_TRUE(v6->v6);
  EXPECT_EQ(v6->bytes[0], 0x20);
  EXPECT_EQ(v6->bytes[15], 1);
  EXPECT_EQ(parse_ip_address("fe80::1%eth0"), parse_ip_address("fe80::1"));
  EXPECT_NE(parse_ip_address("::192.0.2.1"), v4);  // IPv4-compatible is not mapped
  for (const char* bad : {"", "[]", "1.2.3", "1.2.3.4.5", "256.0.0.1", "::g", "1.2.3.4/32",
                          "example.org", " 1.2.3.4", "1.2.3.4 ", "[1.2.3.4", "::1]"})
    EXPECT_FALSE(parse_ip_address(bad).has_value()) << bad;
}

TEST(net_cidr, from_v6_maps_ipv4_mapped_to_ipv4) {
  const ip_address a = ip_address::from_v6({0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 1, 2, 3});
  EXPECT_FALSE(a.v6);
  EXPECT_EQ(a, ip_address::from_v4({10, 1, 2, 3}));
  const ip_address b = ip_address::from_v6({0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 10, 1, 2, 3});
  EXPECT_TRUE(b.v6);
}

TEST(net_cidr, parsed_addresses_match_like_text) {
  const std::vector<cidr> nets = {*parse_cidr("127.0.0.0/8"), *parse_cidr("10.1.2.3/32"),
                                  *parse_cidr("2001:db8::/32"), *parse_cidr("::1/128")};
  for (const char* ip : {"127.0.0.1", "127.255.0.9", "10.1.2.3", "10.1.2.4", "::ffff:10.1.2.3",
                         "2001:db8::5", "2001:db9::", "::1", "::2", "[::1]", "8.8.8.8", "junk"}) {
    const auto parsed = parse_ip_address(ip);
    for (const cidr& n : nets) {
      EXPECT_EQ(n.contains(ip), parsed && n.contains(*parsed)) << ip;
    }
  }
}

TEST(net_cidr, slash_32_and_slash_128_match_one_address) {
  const auto h4 = parse_cidr("10.1.2.3/32");
  ASSERT_TRUE(h4.has_value());
  EXPECT_TRUE(h4->contains(*parse_ip_address("10.1.2.3")));
  EXPECT_TRUE(h4->contains(*parse_ip_address("::ffff:10.1.2.3")));
  EXPECT_FALSE(h4->contains(*parse_ip_address("10.1.2.2")));
  EXPECT_FALSE(h4->contains(*parse_ip_address("10.1.2.4")));
  const auto h6 = parse_cidr("2001:db8::7/128");
  ASSERT_TRUE(h6.has_value());
  EXPECT_TRUE(h6->contains(*parse_ip_address("2001:db8::7")));
  EXPECT_FALSE(h6->contains(*parse_ip_address("2001:db8::6")));
  EXPECT_FALSE(h6->contains(*parse_ip_address("2001:db8::8")));
  // A mapped /128 is an IPv4 /32.
  const auto m = parse_cidr("::ffff:10.1.2.3/128");
  ASSERT_TRUE(m.has_value());
  EXPECT_FALSE(m->v6);
  EXPECT_EQ(m->prefix, 32);
  EXPECT_TRUE(m->contains(*parse_ip_address("10.1.2.3")));
}

TEST(net_cidr, in_networks) {
  const std::vector<cidr> nets = {*parse_cidr("127.0.0.0/8"), *parse_cidr("::1/128")};
  EXPECT_TRUE(in_networks(nets, "127.0.0.1"));
  EXPECT_TRUE(in_networks(nets, "::ffff:127.0.0.1"));
  EXPECT_TRUE(in_networks(nets, "::1"));
  EXPECT_FALSE(in_networks(nets, "192.0.2.1"));
  EXPECT_FALSE(in_networks(nets, "not an address"));
  EXPECT_TRUE(in_networks(nets, ip_address::from_v4({127, 0, 0, 2})));
  EXPECT_FALSE(in_networks(nets, ip_address::from_v4({128, 0, 0, 1})));
  EXPECT_FALSE(in_networks({}, ip_address::from_v4({127, 0, 0, 1})));
}

TEST(net_cidr, bad_blocks_say_why) {
  EXPECT_EQ(parse_cidr("example.org").error(),
            "bad network \"example.org\" (use e.g. 127.0.0.0/8, ::1/128)");
  EXPECT_EQ(parse_cidr("10.0.0.0/").error(), "bad prefix length in \"10.0.0.0/\"");
  EXPECT_EQ(parse_cidr("10.0.0.0/33").error(),
            "prefix /33 out of range in \"10.0.0.0/33\" (IPv4: 0-32)");
  EXPECT_EQ(parse_cidr("::/129").error(), "prefix /129 out of range in \"::/129\" (IPv6: 0-128)");
}

}  // namespace
}  // namespace relayd
