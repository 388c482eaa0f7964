// relayd/dkim_record: the DKIM key record parser (RFC 6376 3.6.1), the public
// key derived from a private PEM (RSA SubjectPublicKeyInfo, Ed25519 raw per
// RFC 8463) and their comparison, with keys generated here by OpenSSL.
#include "relayd/dkim_record.hpp"

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <string>
#include <vector>

#include "smtp/base64.hpp"

namespace {

using namespace relayd::dkim;

std::string pem_of(EVP_PKEY* key) {
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_PrivateKey(bio, key, nullptr, nullptr, 0, nullptr, nullptr);
  char* data = nullptr;
  long n = BIO_get_mem_data(bio, &data);
  std::string out(data, static_cast<std::size_t>(n));
  BIO_free(bio);
  EVP_PKEY_free(key);
  return out;
}
std::string rsa_pem(unsigned bits = 1024) {
  return pem_of(EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<size_t>(bits)));
}
std::string ed25519_pem() {
  return pem_of(EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519"));
}

TEST(DkimRecord, ParsesTagsIgnoringUnknownOnesAndWhitespaceInP) {
  auto r = parse_key_record(" v=DKIM1 ; h=sha256; k=RSA; t=y; x_new=1;\r\n p=QUJD\r\n RE\tVG ;");
  ASSERT_TRUE(r) << r.error();
  EXPECT_EQ(r->key_type, "rsa");
  EXPECT_EQ(r->public_key, "QUJDREVG");
  EXPECT_FALSE(r->revoked());
}

TEST(DkimRecord, KeyTypeDefaultsToRsaAndVersionIsOptional) {
  auto r = parse_key_record("p=QUJD");
  ASSERT_TRUE(r) << r.error();
  EXPECT_EQ(r->key_type, "rsa");
}

TEST(DkimRecord, EmptyPIsARevokedKey) {
  auto r = parse_key_record("v=DKIM1; k=rsa; p=");
  ASSERT_TRUE(r) << r.error();
  EXPECT_TRUE(r->revoked());
}

TEST(DkimRecord, RefusesWhatIsNotAKeyRecord) {
  EXPECT_EQ(parse_key_record("k=rsa; v=DKIM1; p=QUJD").error(), "v= must come first");
  EXPECT_EQ(parse_key_record("v=DKIM2; p=QUJD").error(), "unsupported version v=DKIM2");
  EXPECT_EQ(parse_key_record("v=DKIM1; k=rsa").error(), "no p= tag");
  EXPECT_EQ(parse_key_record("p=QUJD; p=QUJD").error(), "duplicate tag p");
  EXPECT_EQ(parse_key_record("v=DKIM1; p=not*base64").error(), "p= is not base64");
  EXPECT_FALSE(parse_key_record("v=spf1 -all"));
  EXPECT_FALSE(parse_key_record("v=DKIM1;; p=QUJD"));
  EXPECT_FALSE(parse_key_record(""));
}

TEST(DkimRecord, RsaPublicKeyIsSubjectPublicKeyInfo) {
  auto key = public_key_from_pem(rsa_pem(1024));
  ASSERT_TRUE(key) << key.error();
  EXPECT_EQ(key->key_type, "rsa");
  EXPECT_EQ(key->bits, 1024);
  auto der = smtp::base64::decode(key->p);
  ASSERT_TRUE(der);
  // SEQUENCE { SEQUENCE { OID rsaEncryption ... } BIT STRING }: the OID's bytes are in it.
  EXPECT_EQ(static_cast<unsigned char>((*der)[0]), 0x30);
  EXPECT_NE(der->find("\x2a\x86\x48\x86\xf7\x0d\x01\x01\x01"), std::string::npos);
}

TEST(DkimRecord, Ed25519PublicKeyIsTheRaw32Bytes) {
  auto key = public_key_from_pem(ed25519_pem());
  ASSERT_TRUE(key) << key.error();
  EXPECT_EQ(key->key_type, "ed25519");
  EXPECT_EQ(smtp::base64::decode(key->p)->size(), 32u);
  EXPECT_EQ(record_text(*key), "v=DKIM1; k=ed25519; p=" + key->p);
}

TEST(DkimRecord, UnreadableKeysSayWhy) {
  EXPECT_EQ(public_key_from_pem("hello").error(), "not a PEM private key");
  auto f = public_key_from_file("/nonexistent/dkim.key");
  ASSERT_FALSE(f);
  EXPECT_NE(f.error().find("/nonexistent/dkim.key"), std::string::npos);
}

TEST(DkimRecord, ComparesThePublishedKey) {
  const auto rsa = *public_key_from_pem(rsa_pem());
  const auto other = *public_key_from_pem(rsa_pem());
  const auto ed = *public_key_from_pem(ed25519_pem());

  // The record as published, split into strings and joined again, with spaces in p=.
  std::string text = record_text(rsa);
  text.insert(text.size() - 10, " \t ");
  std::vector<std::string> published{text};
  EXPECT_EQ(compare(published, rsa).state, check_state::ok);
  EXPECT_EQ(compare(published, other).state, check_state::mismatch);
  EXPECT_EQ(compare(published, ed).state, check_state::mismatch);
  EXPECT_EQ(compare(published, ed).reason, "the record has k=rsa, the key is ed25519");

  std::vector<std::string> ed_record{record_text(ed)};
  EXPECT_EQ(compare(ed_record, ed).state, check_state::ok);
  EXPECT_EQ(compare(ed_record, rsa).state, check_state::mismatch);

  EXPECT_EQ(compare({}, rsa).state, check_state::missing);
  std::vector<std::string> revoked{"v=DKIM1; k=rsa; p="};
  EXPECT_EQ(compare(revoked, rsa).state, check_state::revoked);
  std::vector<std::string> junk{"v=spf1 -all"};
  auto bad = compare(junk, rsa);
  EXPECT_EQ(bad.state, check_state::malformed);
  EXPECT_FALSE(bad.reason.empty());
  // Another record next to the right one (rotation, stray text): still ok.
  std::vector<std::string> two{"v=spf1 -all", record_text(other), record_text(rsa)};
  EXPECT_EQ(compare(two, rsa).state, check_state::ok);
}

TEST(DkimRecord, ZoneLineSplitsIntoQuotedStringsOf255) {
  const auto rsa = *public_key_from_pem(rsa_pem(2048));
  const std::string text = record_text(rsa);
  ASSERT_GT(text.size(), 255u);
  auto parts = split_strings(text);
  ASSERT_EQ(parts.size(), 2u);
  EXPECT_EQ(parts[0].size(), 255u);
  EXPECT_EQ(parts[0] + parts[1], text);
  EXPECT_EQ(zone_line("example.org", "s1", rsa),
            "s1._domainkey.example.org. IN TXT ( \"" + parts[0] + "\" \"" + parts[1] + "\" )");
}

}  // namespace
