// Envelope record encoding: round trips, every truncation, damaged fields and
// random bytes. decode() must return an error, never crash (run under ASan/UBSan).
#include "queue/record.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <random>
#include <string>

namespace {

using queue::decode;
using queue::encode;
using queue::envelope_record;
using queue::rcpt_state;
using queue::recipient;

envelope_record sample() {
  envelope_record r;
  r.id = "0123456789ABCDEF";
  r.arrival_us = 1'700'000'000'123'456;
  r.size = 35u << 20;
  r.flags = queue::flag_eight_bit | queue::flag_smtputf8;
  r.sender = "j\xc3\xb6rg@example.org";
  r.client_ip = "2001:db8::1";
  r.helo = "client.example.org";
  r.recipients = {
      {"a@example.org", rcpt_state::pending, 0, 0, ""},
      {"b@example.net", rcpt_state::delivered, 3, 1'700'000'100'000'000,
       "host mx.example.net[192.0.2.1] said: 250 2.0.0 ok"},
      {"c@example.com", rcpt_state::failed, std::numeric_limits<std::uint32_t>::max(), -5,
       std::string("550 5.1.1 \0 binary", 18)},
  };
  return r;
}

void expect_equal(const envelope_record& a, const envelope_record& b) {
  EXPECT_EQ(a.id, b.id);
  EXPECT_EQ(a.arrival_us, b.arrival_us);
  EXPECT_EQ(a.size, b.size);
  EXPECT_EQ(a.flags, b.flags);
  EXPECT_EQ(a.sender, b.sender);
  EXPECT_EQ(a.client_ip, b.client_ip);
  EXPECT_EQ(a.helo, b.helo);
  ASSERT_EQ(a.recipients.size(), b.recipients.size());
  for (std::size_t i = 0; i < a.recipients.size(); ++i) {
    EXPECT_EQ(a.recipients[i].address, b.recipients[i].address);
    EXPECT_EQ(a.recipients[i].state, b.recipients[i].state);
    EXPECT_EQ(a.recipients[i].attempts, b.recipients[i].attempts);
    EXPECT_EQ(a.recipients[i].next_attempt_us, b.recipients[i].next_attempt_us);
    EXPECT_EQ(a.recipients[i].last_reply, b.recipients[i].last_reply);
  }
}

TEST(record, round_trip) {
  const envelope_record r = sample();
  const std::string bytes = encode(r);
  ASSERT_FALSE(bytes.empty());
  EXPECT_EQ(static_cast<std::uint8_t>(bytes[0]), queue::record_version);
  auto back = decode(r.id, bytes);
  ASSERT_TRUE(back) << back.error();
  expect_equal(r, *back);
}

TEST(record, round_trip_empty_and_extreme_values) {
  envelope_record r;
  r.id = "X";
  auto back = decode("X", encode(r));
  ASSERT_TRUE(back) << back.error();
  expect_equal(r, *back);

  r.arrival_us = std::numeric_limits<std::int64_t>::min();
  r.size = std::numeric_limits<std::uint64_t>::max();
  r.flags = std::numeric_limits<std::uint32_t>::max();
  r.sender.assign(100000, 's');
  r.recipients.push_back(
      {"", rcpt_state::pending, 0, std::numeric_limits<std::int64_t>::max(), ""});
  back = decode("X", encode(r));
  ASSERT_TRUE(back) << back.error();
  expect_equal(r, *back);
}

TEST(record, id_is_copied_not_encoded) {
  const std::string bytes = encode(sample());
  auto back = decode("FEDCBA9876543210", bytes);
  ASSERT_TRUE(back);
  EXPECT_EQ(back->id, "FEDCBA9876543210");
}

TEST(record, every_truncation_is_an_error) {
  const std::string bytes = encode(sample());
  for (std::size_t n = 0; n < bytes.size(); ++n) {
    auto r = decode("ID", std::string_view(bytes).substr(0, n));
    EXPECT_FALSE(r) << "prefix of " << n << " bytes decoded";
    if (!r) {
      EXPECT_FALSE(r.error().empty());
    }
  }
}

TEST(record, trailing_garbage_is_an_error) {
  std::string bytes = encode(sample());
  bytes.push_back('\0');
  auto r = decode("ID", bytes);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().find("trailing"), std::string::npos) << r.error();
}

TEST(record, unknown_version_is_an_error) {
  std::string bytes = encode(sample());
  for (int v : {0, 2, 255}) {
    bytes[0] = static_cast<char>(v);
    auto r = decode("ID", bytes);
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().find("version"), std::string::npos) << r.error();
  }
}

TEST(record, bad_recipient_state_is_an_error) {
  envelope_record r;
  r.recipients.push_back({"x", rcpt_state::pending, 0, 0, ""});
  std::string bytes = encode(r);
  // The last recipient ends: state, attempts, next attempt, reply length.
  ASSERT_EQ(bytes[bytes.size() - 4], 0);
  for (int s : {3, 0x7f, 0xff}) {
    bytes[bytes.size() - 4] = static_cast<char>(s);
    auto d = decode("ID", bytes);
    ASSERT_FALSE(d);
    EXPECT_NE(d.error().find("recipient state"), std::string::npos) << d.error();
  }
}

TEST(record, absurd_recipient_count_is_an_error) {
  envelope_record r;  // no recipients: the count is the last byte
  std::string base = encode(r);
  ASSERT_EQ(base.back(), 0);
  base.pop_back();
  for (const std::string& count : {std::string("\x01"), std::string("\xe8\x07"),
                                   std::string("\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01")}) {
    auto d = decode("ID", base + count + std::string(20, '\0'));
    ASSERT_FALSE(d);
  }
  auto d = decode("ID", base + std::string("\xff\xff\xff\xff\x0f") + std::string(100, '\0'));
  ASSERT_FALSE(d);
  EXPECT_NE(d.error().find("recipient count"), std::string::npos) << d.error();
}

TEST(record, overlong_varints_and_lengths_are_errors) {
  std::string v1(1, static_cast<char>(queue::record_version));
  // An 11-byte varint for the arrival time.
  EXPECT_FALSE(decode("ID", v1 + std::string(10, '\x80') + std::string(1, '\0')));
  // A 10th byte carrying more than bit 63.
  EXPECT_FALSE(decode("ID", v1 + std::string(9, '\xff') + std::string(1, '\x02')));
  // A sender length larger than the record.
  envelope_record r;
  r.sender = "abc";
  std::string bytes = encode(r);
  const auto pos = bytes.find("abc");
  ASSERT_NE(pos, std::string::npos);
  bytes[pos - 1] = 100;
  auto d = decode("ID", bytes);
  ASSERT_FALSE(d);
  EXPECT_NE(d.error().find("sender"), std::string::npos) << d.error();
  // Attempts beyond 32 bits.
  envelope_record a;
  a.recipients.push_back({"x", rcpt_state::pending, 0, 0, ""});
  std::string b = encode(a);
  b.erase(b.size() - 3, 1);  // attempts
  b.insert(b.size() - 2, std::string("\xff\xff\xff\xff\x1f"));
  EXPECT_FALSE(decode("ID", b));
}

// Random inputs and mutations of a valid record: no crash, and whatever does
// decode re-encodes to something that decodes to the same record.
TEST(record, random_bytes_never_crash) {
  std::mt19937_64 rng(12345);
  const std::string valid = encode(sample());
  int decoded = 0;
  for (int i = 0; i < 100000; ++i) {
    std::string in;
    if (i % 2 == 0) {
      in.resize(rng() % 64);
      for (char& c : in) c = static_cast<char>(rng());
      if (!in.empty() && rng() % 2) in[0] = static_cast<char>(queue::record_version);
    } else {
      in = valid;
      const int edits = 1 + static_cast<int>(rng() % 4);
      for (int e = 0; e < edits && !in.empty(); ++e) {
        const std::size_t at = rng() % in.size();
        switch (rng() % 3) {
          case 0:
            in[at] = static_cast<char>(rng());
            break;
          case 1:
            in.erase(at, 1 + rng() % 8);
            break;
          default:
            in.insert(at, 1 + rng() % 4, static_cast<char>(rng()));
        }
      }
    }
    auto r = decode("ID", in);
    if (r) {
      ++decoded;
      auto again = decode("ID", encode(*r));
      ASSERT_TRUE(again);
      expect_equal(*r, *again);
    } else {
      ASSERT_FALSE(r.error().empty());
    }
  }
  RecordProperty("decoded", decoded);
}

}  // namespace
