// Envelope record encoding: round trips, every truncation, damaged fields and
// random bytes, for the current version 4 and for hand-built version 1, 2 and 3
// records (which must keep decoding). decode() must return an error, never crash (run
// under ASan/UBSan).
#include "queue/record.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <random>
#include <string>

namespace {

using queue::decode;
using queue::outcome_cause;
using queue::smtp_command;
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
       "host mx.example.net[192.0.2.1] said: 250 2.0.0 ok", 1'700'000'000'200'000,
       1'700'000'100'000'000, 250, "2.0.0", "mx.example.net[192.0.2.1]:25", "",
       outcome_cause::none, smtp_command::end_of_data, "ok"},
      {"c@example.com", rcpt_state::failed, std::numeric_limits<std::uint32_t>::max(), -5,
       std::string("550 5.1.1 \0 binary", 18), std::numeric_limits<std::int64_t>::min(),
       std::numeric_limits<std::int64_t>::max(), 65535, "5.1.1", "[2001:db8::25]:2525", "rejected",
       outcome_cause::expired, smtp_command::quit, std::string("no \0 such", 9),
       smtp::notify_success | smtp::notify_failure, "rfc822;C@example.com"},
  };
  r.recipients[1].notify = smtp::notify_never;
  r.ret = smtp::dsn_ret::headers;
  r.envid = "QQ314159";
  r.local = smtp::local_identity{.uid = 33, .gid = 33, .pid = 4242, .user = "www-data",
                                 .executable = "/usr/bin/php8.2",
                                 .unit = "php8.2-fpm.service"};
  return r;
}

// Version 1 by hand: the layout encode() wrote before version 2.
class v1_builder {
 public:
  explicit v1_builder(char version = '\x01') { out_.push_back(version); }
  v1_builder& varint(std::uint64_t v) {
    while (v >= 0x80) {
      out_.push_back(static_cast<char>((v & 0x7f) | 0x80));
      v >>= 7;
    }
    out_.push_back(static_cast<char>(v));
    return *this;
  }
  v1_builder& svarint(std::int64_t v) {
    return varint((static_cast<std::uint64_t>(v) << 1) ^ static_cast<std::uint64_t>(v >> 63));
  }
  v1_builder& str(std::string_view s) {
    varint(s.size());
    out_.append(s);
    return *this;
  }
  v1_builder& u8(std::uint8_t v) {
    out_.push_back(static_cast<char>(v));
    return *this;
  }
  const std::string& bytes() const { return out_; }

 private:
  std::string out_;
};

// sample() in an older layout, by hand: version 1 (no attempt history), 2 (no
// typed facts) or 3 (no DSN parameters, no local submitter).
std::string sample_as(char version) {
  const envelope_record r = sample();
  v1_builder b(version);
  b.svarint(r.arrival_us).varint(r.size).varint(r.flags).str(r.sender).str(r.client_ip).str(r.helo);
  b.varint(r.recipients.size());
  for (const recipient& rc : r.recipients) {
    b.str(rc.address)
        .u8(static_cast<std::uint8_t>(rc.state))
        .varint(rc.attempts)
        .svarint(rc.next_attempt_us)
        .str(rc.last_reply);
    if (version == 1) continue;
    b.svarint(rc.first_attempt_us)
        .svarint(rc.last_attempt_us)
        .varint(rc.reply_code)
        .str(rc.status)
        .str(rc.remote_host)
        .str(rc.reason);
    if (version == 2) continue;
    b.u8(static_cast<std::uint8_t>(rc.cause))
        .u8(static_cast<std::uint8_t>(rc.in_reply_to))
        .str(rc.reply_text);
  }
  return b.bytes();
}

// What a record older than version 4 decodes to: no DSN parameters, no local
// submitter.
envelope_record without_v4(envelope_record r) {
  for (recipient& rc : r.recipients) {
    rc.notify = 0;
    rc.orcpt.clear();
  }
  r.ret = smtp::dsn_ret::unspecified;
  r.envid.clear();
  r.local.reset();
  return r;
}

std::string sample_v1() {
  return sample_as('\x01');
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
    EXPECT_EQ(a.recipients[i].first_attempt_us, b.recipients[i].first_attempt_us);
    EXPECT_EQ(a.recipients[i].last_attempt_us, b.recipients[i].last_attempt_us);
    EXPECT_EQ(a.recipients[i].reply_code, b.recipients[i].reply_code);
    EXPECT_EQ(a.recipients[i].status, b.recipients[i].status);
    EXPECT_EQ(a.recipients[i].remote_host, b.recipients[i].remote_host);
    EXPECT_EQ(a.recipients[i].reason, b.recipients[i].reason);
    EXPECT_EQ(a.recipients[i].cause, b.recipients[i].cause);
    EXPECT_EQ(a.recipients[i].in_reply_to, b.recipients[i].in_reply_to);
    EXPECT_EQ(a.recipients[i].reply_text, b.recipients[i].reply_text);
    EXPECT_EQ(a.recipients[i].notify, b.recipients[i].notify);
    EXPECT_EQ(a.recipients[i].orcpt, b.recipients[i].orcpt);
  }
  EXPECT_EQ(a.ret, b.ret);
  EXPECT_EQ(a.envid, b.envid);
  EXPECT_EQ(a.local, b.local);
}

TEST(record, round_trip) {
  const envelope_record r = sample();
  const std::string bytes = encode(r);
  ASSERT_FALSE(bytes.empty());
  EXPECT_EQ(static_cast<std::uint8_t>(bytes[0]), queue::record_version);
  EXPECT_EQ(queue::record_version, 4);
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

// decode_into() over a record that held a full version 4 record (every field
// set) gives what a fresh decode gives, for every version and an empty record:
// nothing of the previous record stays behind.
TEST(record, decode_into_a_reused_record_leaves_nothing_behind) {
  envelope_record empty;
  empty.id = "E";
  const std::string empty_bytes = encode(empty);
  for (const std::string& bytes : {sample_as('\x01'), sample_as('\x02'), sample_as('\x03'),
                                   encode(sample()), empty_bytes}) {
    envelope_record reused;
    std::string error;
    ASSERT_TRUE(queue::decode_into("FULL", encode(sample()), reused, error)) << error;
    ASSERT_TRUE(queue::decode_into("ID", bytes, reused, error)) << error;
    EXPECT_TRUE(error.empty());
    auto fresh = decode("ID", bytes);
    ASSERT_TRUE(fresh) << fresh.error();
    expect_equal(*fresh, reused);
  }
  envelope_record reused;
  std::string error;
  ASSERT_TRUE(queue::decode_into("ID", encode(sample()), reused, error));
  EXPECT_FALSE(queue::decode_into("ID", "\x09", reused, error));
  EXPECT_EQ(error, "unknown record version 9");
  EXPECT_FALSE(queue::decode_into("ID", encode(sample()).substr(0, 20), reused, error));
  EXPECT_NE(error.find("at byte"), std::string::npos) << error;
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
  for (int v : {0, 5, 255}) {
    bytes[0] = static_cast<char>(v);
    auto r = decode("ID", bytes);
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().find("version"), std::string::npos) << r.error();
  }
}

TEST(record, bad_recipient_state_is_an_error) {
  envelope_record r;
  r.recipients.push_back({"x@y", rcpt_state::pending, 0, 0, ""});
  std::string bytes = encode(r);
  // The state byte follows the address.
  const auto at = bytes.find("x@y") + 3;
  ASSERT_EQ(bytes[at], 0);
  for (int s : {3, 0x7f, 0xff}) {
    bytes[at] = static_cast<char>(s);
    auto d = decode("ID", bytes);
    ASSERT_FALSE(d);
    EXPECT_NE(d.error().find("recipient state"), std::string::npos) << d.error();
  }
}

TEST(record, absurd_recipient_count_is_an_error) {
  envelope_record r;  // no recipients: the count, then ret, envid and has_local
  std::string base = encode(r);
  ASSERT_EQ(base.substr(base.size() - 4), std::string(4, '\0'));
  base.resize(base.size() - 4);
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
  // Attempts beyond 32 bits (the byte after the state).
  envelope_record a;
  a.recipients.push_back({"x@y", rcpt_state::pending, 0, 0, ""});
  const std::string valid = encode(a);
  const auto attempts_at = valid.find("x@y") + 4;
  std::string b = valid;
  b.replace(attempts_at, 1, std::string("\xff\xff\xff\xff\x1f"));
  d = decode("ID", b);
  ASSERT_FALSE(d);
  EXPECT_NE(d.error().find("attempts"), std::string::npos) << d.error();
  // A reply code beyond 16 bits: state, attempts, next attempt, last reply,
  // first and last attempt come before it; status, remote host, reason and the
  // version 3 cause, command and reply text, the version 4 notify and orcpt,
  // then the message's ret, envid and has_local after it.
  const auto code_at = attempts_at + 5;
  ASSERT_EQ(valid.size(), code_at + 4 + 3 + 2 + 3);
  b = valid;
  b.replace(code_at, 1, std::string("\x80\x80\x04"));  // 65536
  d = decode("ID", b);
  ASSERT_FALSE(d);
  EXPECT_NE(d.error().find("reply code"), std::string::npos) << d.error();
  b = valid;
  b.replace(code_at, 1, std::string("\xff\xff\x03"));  // 65535 is fine
  EXPECT_TRUE(decode("ID", b));
}

TEST(record, version_1_still_decodes_with_defaults) {
  const envelope_record want = [] {
    envelope_record r = without_v4(sample());
    for (recipient& rc : r.recipients) {
      rc.first_attempt_us = 0;
      rc.last_attempt_us = 0;
      rc.reply_code = 0;
      rc.status.clear();
      rc.remote_host.clear();
      rc.reason.clear();
      rc.cause = outcome_cause::unknown;
      rc.in_reply_to = smtp_command::none;
      rc.reply_text = rc.last_reply;  // the free text is all an old record knows
    }
    return r;
  }();
  const std::string v1 = sample_v1();
  auto back = decode(want.id, v1);
  ASSERT_TRUE(back) << back.error();
  expect_equal(want, *back);
  // Re-encoding upgrades it to version 4 with the same content.
  const std::string v2 = encode(*back);
  EXPECT_EQ(v2[0], 4);
  EXPECT_GT(v2.size(), v1.size());
  auto again = decode(want.id, v2);
  ASSERT_TRUE(again) << again.error();
  expect_equal(want, *again);
  // A version 1 record without recipients.
  auto empty = decode(
      "ID", v1_builder().svarint(5).varint(0).varint(0).str("").str("").str("").varint(0).bytes());
  ASSERT_TRUE(empty) << empty.error();
  EXPECT_EQ(empty->arrival_us, 5);
  EXPECT_TRUE(empty->recipients.empty());
}

TEST(record, version_1_every_truncation_and_trailing_byte_is_an_error) {
  const std::string v1 = sample_v1();
  for (std::size_t n = 0; n < v1.size(); ++n) {
    auto r = decode("ID", std::string_view(v1).substr(0, n));
    EXPECT_FALSE(r) << "prefix of " << n << " bytes decoded";
  }
  auto r = decode("ID", v1 + std::string(1, '\0'));
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().find("trailing"), std::string::npos) << r.error();
  // A version 1 record read as version 2 (or the other way) does not decode.
  std::string as_v2 = v1;
  as_v2[0] = 2;
  EXPECT_FALSE(decode("ID", as_v2));
  std::string as_v1 = encode(sample());
  as_v1[0] = 1;
  EXPECT_FALSE(decode("ID", as_v1));
}

TEST(record, version_1_recipient_count_is_checked_against_its_size) {
  // Five bytes per version 1 recipient: two fit in ten bytes, three do not.
  v1_builder b;
  b.svarint(0).varint(0).varint(0).str("").str("").str("");
  const std::string head = b.bytes();
  const std::string two_empty = std::string(10, '\0');
  auto ok = decode("ID", head + '\x02' + two_empty);
  ASSERT_TRUE(ok) << ok.error();
  EXPECT_EQ(ok->recipients.size(), 2u);
  auto bad = decode("ID", head + '\x03' + two_empty);
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().find("recipient count"), std::string::npos) << bad.error();
  // Version 2 needs eleven bytes per recipient.
  std::string v2_head = head;
  v2_head[0] = 2;
  EXPECT_FALSE(decode("ID", v2_head + '\x02' + two_empty));
  EXPECT_TRUE(decode("ID", v2_head + '\x02' + std::string(22, '\0')));
  // Version 3 needs fourteen.
  std::string v3_head = head;
  v3_head[0] = 3;
  EXPECT_FALSE(decode("ID", v3_head + '\x02' + std::string(22, '\0')));
  EXPECT_TRUE(decode("ID", v3_head + '\x02' + std::string(28, '\0')));
}

TEST(record, version_2_still_decodes_with_its_last_reply_as_the_text) {
  envelope_record want = without_v4(sample());
  for (recipient& rc : want.recipients) {
    rc.cause = outcome_cause::unknown;
    rc.in_reply_to = smtp_command::none;
    rc.reply_text = rc.last_reply;
  }
  const std::string v2 = sample_as('\x02');
  auto back = decode(want.id, v2);
  ASSERT_TRUE(back) << back.error();
  expect_equal(want, *back);
  for (std::size_t n = 0; n < v2.size(); ++n)
    EXPECT_FALSE(decode("ID", std::string_view(v2).substr(0, n))) << n << " bytes decoded";
  // Re-encoded as version 4, the same facts.
  auto again = decode(want.id, encode(*back));
  ASSERT_TRUE(again) << again.error();
  expect_equal(want, *again);
}

TEST(record, version_3_unknown_cause_or_command_is_an_error) {
  envelope_record r;
  r.id = "ID";
  r.recipients.push_back(recipient{.address = "a@b", .cause = outcome_cause::reply,
                                   .in_reply_to = smtp_command::rcpt, .reply_text = "t"});
  const std::string valid = encode(r);
  // The recipient ends with: cause, in_reply_to, the one-byte length and "t",
  // notify and an empty orcpt; then ret, an empty envid and has_local.
  const std::size_t cause_at = valid.size() - 9;
  ASSERT_EQ(valid[cause_at], static_cast<char>(outcome_cause::reply));
  std::string b = valid;
  b[cause_at] = static_cast<char>(queue::outcome_cause_last + 1);
  auto d = decode("ID", b);
  ASSERT_FALSE(d);
  EXPECT_NE(d.error().find("cause"), std::string::npos) << d.error();
  b = valid;
  b[cause_at + 1] = static_cast<char>(queue::smtp_command_last + 1);
  d = decode("ID", b);
  ASSERT_FALSE(d);
  EXPECT_NE(d.error().find("in reply to"), std::string::npos) << d.error();
  EXPECT_EQ(to_string(smtp_command::end_of_data), "end of DATA");
  EXPECT_EQ(to_string(outcome_cause::local_config), "local_config");
}

TEST(record, version_3_still_decodes_without_dsn_parameters_or_submitter) {
  const envelope_record want = without_v4(sample());
  const std::string v3 = sample_as('\x03');
  auto back = decode(want.id, v3);
  ASSERT_TRUE(back) << back.error();
  expect_equal(want, *back);
  for (std::size_t n = 0; n < v3.size(); ++n)
    EXPECT_FALSE(decode("ID", std::string_view(v3).substr(0, n))) << n << " bytes decoded";
}

TEST(record, version_4_invalid_notify_ret_or_local_flag_is_an_error) {
  envelope_record r;
  r.id = "ID";
  r.recipients.push_back(recipient{.address = "a@b", .notify = smtp::notify_delay});
  const std::string valid = encode(r);
  ASSERT_TRUE(decode("ID", valid));
  // The record ends with: notify, an empty orcpt, ret, an empty envid, has_local.
  const std::size_t notify_at = valid.size() - 5;
  ASSERT_EQ(valid[notify_at], static_cast<char>(smtp::notify_delay));
  for (const int bad : {0x10, smtp::notify_never | smtp::notify_success}) {
    std::string b = valid;
    b[notify_at] = static_cast<char>(bad);
    auto d = decode("ID", b);
    ASSERT_FALSE(d) << bad;
    EXPECT_NE(d.error().find("notify"), std::string::npos) << d.error();
  }
  std::string b = valid;
  b[notify_at + 2] = 3;  // ret beyond HDRS
  auto d = decode("ID", b);
  ASSERT_FALSE(d);
  EXPECT_NE(d.error().find("ret"), std::string::npos) << d.error();
  b = valid;
  b[notify_at + 4] = 2;  // has_local is 0 or 1
  d = decode("ID", b);
  ASSERT_FALSE(d);
  EXPECT_NE(d.error().find("has local"), std::string::npos) << d.error();
}

// Random inputs and mutations of a valid record: no crash, and whatever does
// decode re-encodes to something that decodes to the same record.
TEST(record, random_bytes_never_crash) {
  std::mt19937_64 rng(12345);
  const std::string valid2 = encode(sample());
  const std::string valid1 = sample_v1();
  int decoded = 0;
  for (int i = 0; i < 100000; ++i) {
    const std::string& valid = (i % 4 == 1) ? valid1 : valid2;
    std::string in;
    if (i % 2 == 0) {
      in.resize(rng() % 64);
      for (char& c : in) c = static_cast<char>(rng());
      if (!in.empty() && rng() % 2) in[0] = static_cast<char>(1 + rng() % 3);
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
