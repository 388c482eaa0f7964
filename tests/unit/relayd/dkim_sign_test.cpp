// relayd/dkim_sign: key loading (sizes and types refused with the entry and
// path named), which domain signs (From: or envelope sender, exact or with
// subdomains, none), dual signing, and each signature checked with OpenSSL
// against the public half of the fixed test keys over the data RFC 6376 3.7
// defines (header fields in h= order, then the signature field with b= empty).
// The independent check (python3-dkim) is tests/e2e/test_dkim.py.
#include "relayd/dkim_sign.hpp"

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <map>

#include "smtp/base64.hpp"
#include "smtp/dkim_canon.hpp"

namespace {

// Fixed keys generated once with `openssl genpkey` for this test only.
constexpr std::string_view rsa_pem = R"(-----BEGIN PRIVATE KEY-----
MIIEvgIBADANBgkqhkiG9w0BAQEFAASCBKgwggSkAgEAAoIBAQDJvKQUNCPZZmxf
8Sv75zat0hORux+6ESWVMyt9GNMEyBfSlS4elE1DCQhnieiXHXPfA+TNaXrNpswd
YUDZhdg79pFP7WZSzpf7ZdPTwMJ6X/waNX4tJhmxWxZFQXiKCbyd+hKB4ODM3K4q
2g4xem34eiOK3cQVZEjExpFz9GCc34K1cFT/N+gONl9G0eIz9GrVXylQwiB1sDjt
JuoIq+T2+onD8l2voxwpDbqU7SCqG3453BngU7zDmNM80kqvcPBRfMJTd219K+yW
S+Sg0vDn7fupV8pewhLcWxFAZKVakPU5wmm4onglcv5jGHUGIIHfOFIE//illlhK
GDLszB79AgMBAAECggEACiugegRG6mbnf87A0OpPL2Qv6GDusIq8wlDaGGxv9wW/
bbZnpNMFMiP6cH3bZALwHIYtus1ei4+lKrYEdvLwe9VqbgUh63rO3rW7gClvpIvC
QfAAdHY/RVm6PbOXSB5FjBFXbYTQ0IMvpKlpncT2VliSAiY8BHgR0xnPq3Dejgn/
rz+MZykBv1ZHRYQAefY6eEW0GCyMA0+Q0gBKNdDoe1StpADoHCjAnbRXNMgJwF/s
BEHA3tDvgFnBZkrmbCRo1zZJOjPv92aru6YPbWmmuzQkqznuy7dndWSu9WiMhRFN
egEYniXXqgfyeH0iQswg1KcxAbM7pxIyziKQ9EetYQKBgQDyEiTJj3KEVhBUls8D
JU+4yUu4njwf6v9hYuTLPjaULF1f0EP2SHdeiwN5B2CQBrCixduzxpG5Og677pxF
xGptbJlXyw8nlt4A+/D0wSbPoUYPY5uMombQohDmCFV3jeIyKOU8l+UGpLbQHtfR
2pG/3b2QDvnbrRiA0GRhrwKipwKBgQDVWFojZqyGZ5DDuuo7ksXTBAEgR9vWZxTw
Nn3rfVrLMbrXdVfs5iycQ8buZ8vnYtKnD8IEHpOnsvjo0AwfpWHdHL4w2TVG4XN9
Fs6ci0nfMfpfnT5BBGYriozGo/PBgngEg6XOWUQfEm5Zn2ba9l/81NkoKwC9VaLj
Og+gXLsZuwKBgQDnJDAATnq4pj09qCrPBCeVeJBXHrCmgYuNABMbhrIy1hHq1UCv
wA5LNk4AmOy5Wcn8AxWAGdE3nppHFNYfQCeniJT7Yad80+/z3J399xkKFSKCu0fi
B4hJGxcrrzV8zPv5jVcmfptvtoPhQjIt7ZhSLnc9QS+PdT76cQIIzEWl7QKBgQCh
StGiz/4BAw1cHNT3QwiSdwWO7STT3EzlKp1aSwQ4eJlkSQ+3R3FUlp0wIoLypTDT
IsOwr5k8AL/T624vAq6RJyjW73Aq7UmNuY9spJWtyzAZ11x4dSX1JyM1DkC7/LJV
312cOrqYryuEUFHHmtqI4DZo+tHtUm/6UCv+Nf0x/wKBgBmGEqlvOXW5aqhjrNP4
EH8/oSg1iv+hIRGoalszbGD7B8liZtWDK7bErGE7ik0JfsY7sYVx/+cJYoRopgy5
vdAXEFqqh7StZpjd/YBK///T/PtWNmvPmCp95sCoM/myI4oXiLvjG3+Q0YYlYZsw
4B/n8dwTWf1SvKaSsFamP3L6
-----END PRIVATE KEY-----
)";
constexpr std::string_view ed_pem = R"(-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEICf1OBvRzPLuFJcDo8r3L1GRc00Ygo7cpsy1Bkts5A21
-----END PRIVATE KEY-----
)";

class DkimSign : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/dkim_sign_test.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    write("rsa.pem", rsa_pem);
    write("ed.pem", ed_pem);
  }
  void TearDown() override { std::system(("rm -rf " + dir_).c_str()); }
  std::string write(const std::string& name, std::string_view text) {
    std::ofstream(dir_ + "/" + name) << text;
    return dir_ + "/" + name;
  }
  // Writes a key made for the test as PEM (and frees it).
  void write_key(const std::string& name, EVP_PKEY* key) {
    ASSERT_NE(key, nullptr);
    BIO* bio = BIO_new(BIO_s_mem());
    PEM_write_bio_PrivateKey(bio, key, nullptr, nullptr, 0, nullptr, nullptr);
    char* data = nullptr;
    const long n = BIO_get_mem_data(bio, &data);
    write(name, std::string_view(data, static_cast<std::size_t>(n)));
    BIO_free(bio);
    EVP_PKEY_free(key);
  }
  relayd::config::dkim_entry entry(std::string domain, std::string selector, std::string key) {
    relayd::config::dkim_entry e;
    e.domain = std::move(domain);
    e.selector = std::move(selector);
    e.key = dir_ + "/" + key;
    return e;
  }
  std::string dir_;
};

std::map<std::string, std::string> tags_of(std::string field) {
  std::string flat;
  for (char c : field.substr(field.find(':') + 1))
    if (c != '\r' && c != '\n' && c != ' ' && c != '\t') flat += c;
  std::map<std::string, std::string> out;
  std::size_t pos = 0;
  while (pos < flat.size()) {
    std::size_t semi = flat.find(';', pos);
    if (semi == std::string::npos) semi = flat.size();
    const std::string t = flat.substr(pos, semi - pos);
    out[t.substr(0, t.find('='))] = t.substr(t.find('=') + 1);
    pos = semi + 1;
  }
  return out;
}

// Verifies the first DKIM-Signature field of `signed_message` with `pem`'s public key.
bool verifies(const std::string& signed_message, std::string_view pem, std::size_t which = 0) {
  const auto m = smtp::dkim::split(signed_message);
  std::vector<std::string_view> sigs, others;
  for (auto f : m.fields)
    (smtp::dkim::field_name(f) == "DKIM-Signature" ? sigs : others).push_back(f);
  if (sigs.size() <= which) return false;
  const std::string field(sigs[which]);
  auto tags = tags_of(field);
  std::vector<std::string> names;
  for (std::size_t p = 0; p <= tags["h"].size();) {
    std::size_t c = tags["h"].find(':', p);
    if (c == std::string::npos) c = tags["h"].size();
    names.push_back(tags["h"].substr(p, c - p));
    p = c + 1;
  }
  std::string data = smtp::dkim::header_hash_input(others, names);
  std::string without_b = smtp::dkim::relaxed_header(field.substr(0, field.rfind("b=") + 2));
  data += without_b.substr(0, without_b.size() - 2);
  // bh= from the body as an independent SHA-256.
  unsigned char md[32];
  const std::string body = smtp::dkim::relaxed_body(m.body);
  EVP_Digest(body.data(), body.size(), md, nullptr, EVP_sha256(), nullptr);
  if (smtp::base64::encode(std::string_view(reinterpret_cast<char*>(md), 32)) != tags["bh"])
    return false;
  const auto sig = smtp::base64::decode(tags["b"]);
  if (!sig) return false;
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  EVP_PKEY* key = PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  const bool ed = tags["a"] == "ed25519-sha256";
  std::string input = data;
  if (ed) {
    EVP_Digest(data.data(), data.size(), md, nullptr, EVP_sha256(), nullptr);
    input.assign(reinterpret_cast<char*>(md), 32);
  }
  bool ok = EVP_DigestVerifyInit(ctx, nullptr, ed ? nullptr : EVP_sha256(), nullptr, key) == 1 &&
            EVP_DigestVerify(ctx, reinterpret_cast<const unsigned char*>(sig->data()), sig->size(),
                             reinterpret_cast<const unsigned char*>(input.data()),
                             input.size()) == 1;
  EVP_MD_CTX_free(ctx);
  EVP_PKEY_free(key);
  return ok;
}

const std::string message =
    "Received: from x by y\r\n"
    "From: Ann <ann@example.org>\r\n"
    "To: bob@example.net\r\n"
    "Subject: a long subject that is folded\r\n\tover two lines\r\n"
    "Date: Wed, 2 Dec 2026 10:00:00 +0000\r\n"
    "\r\n"
    " C \r\n"
    "D \t E\r\n\r\n";

TEST_F(DkimSign, RsaSignatureVerifiesAndCoversTheRightHeaders) {
  auto signer = relayd::dkim_signer::load({entry("example.org", "rsa1", "rsa.pem")});
  ASSERT_TRUE(signer) << signer.error();
  const auto r = (*signer)->sign(message, "bounce@other.test", 1700000000);
  EXPECT_EQ(r.log, "example.org/rsa1");
  ASSERT_TRUE(r.fields.starts_with("DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed;"));
  auto tags = tags_of(r.fields);
  EXPECT_EQ(tags["d"], "example.org");
  EXPECT_EQ(tags["s"], "rsa1");
  EXPECT_EQ(tags["t"], "1700000000");
  EXPECT_EQ(tags.count("x"), 0u);
  // The relaxed body of RFC 6376 3.4.6 (" C\r\nD E\r\n"), hashed by Python's hashlib.
  EXPECT_EQ(tags["bh"], "unak6JHq0wL+Q1HP7dW1tjBx9FLA6DffoZ0qrLwbbpo=");
  EXPECT_EQ(tags["h"],
            "From:From:To:To:Cc:Subject:Subject:Date:Date:Message-ID:Reply-To");
  const std::string signed_message = r.fields + message;
  EXPECT_TRUE(verifies(signed_message, rsa_pem));
  std::string tampered = signed_message;
  tampered.replace(tampered.find("D \t E"), 5, "D \t F");
  EXPECT_FALSE(verifies(tampered, rsa_pem));
  std::string added_from = signed_message;
  added_from.insert(added_from.find("Received:"), "From: mallory@example.org\r\n");
  EXPECT_FALSE(verifies(added_from, rsa_pem));
}

TEST_F(DkimSign, DualSigningRsaAndEd25519WithExpiry) {
  auto e1 = entry("example.org", "rsa1", "rsa.pem");
  auto e2 = entry("example.org", "ed1", "ed.pem");
  e2.expire = std::chrono::hours(24);
  auto signer = relayd::dkim_signer::load({e1, entry("other.test", "x", "rsa.pem"), e2});
  ASSERT_TRUE(signer) << signer.error();
  const auto r = (*signer)->sign(message, "", 1700000000);
  EXPECT_EQ(r.log, "example.org/rsa1,ed1");
  const std::string signed_message = r.fields + message;
  EXPECT_TRUE(verifies(signed_message, rsa_pem, 0));
  EXPECT_TRUE(verifies(signed_message, ed_pem, 1));
  EXPECT_FALSE(verifies(signed_message, rsa_pem, 1));  // the Ed25519 one is not the RSA key's
  const auto ed_tags = tags_of(std::string(smtp::dkim::split(signed_message).fields[1]));
  EXPECT_EQ(ed_tags.at("a"), "ed25519-sha256");
  EXPECT_EQ(ed_tags.at("x"), "1700086400");
}

TEST_F(DkimSign, WhichDomainSigns) {
  auto sub = entry("example.org", "s", "ed.pem");
  sub.subdomains = true;
  auto by_sender = entry("bulk.test", "b", "ed.pem");
  by_sender.match = relayd::config::dkim_entry::match_kind::sender;
  auto signer = relayd::dkim_signer::load({sub, by_sender});
  ASSERT_TRUE(signer) << signer.error();
  auto from = [](std::string f) { return "From: " + f + "\r\nSubject: x\r\n\r\nhi\r\n"; };
  EXPECT_EQ((*signer)->sign(from("a@mail.Example.org"), "", 1).log, "example.org/s");
  EXPECT_EQ((*signer)->sign(from("a@badexample.org"), "", 1).log, "none");
  EXPECT_EQ((*signer)->sign(from("a@elsewhere.test"), "x@bulk.test", 1).log, "bulk.test/b");
  const auto none = (*signer)->sign(from("a@elsewhere.test"), "x@sub.bulk.test", 1);
  EXPECT_EQ(none.log, "none");
  EXPECT_TRUE(none.fields.empty());
}

TEST_F(DkimSign, RequireDnsKeysSignOnlyWhenTheGateSaysTheirKeyIsPublished) {
  auto rsa = entry("example.org", "rsa1", "rsa.pem");
  rsa.require_dns = true;
  auto ed = entry("example.org", "ed1", "ed.pem");
  auto signer = relayd::dkim_signer::load({rsa, ed});
  ASSERT_TRUE(signer) << signer.error();
  std::map<std::string, std::string> asked;  // selector -> the p= the signer asked about
  std::string answer = "mismatch";
  relayd::dkim_dns_gate gate = [&](std::string_view d, std::string_view sel, std::string_view p) {
    EXPECT_EQ(d, "example.org");
    asked[std::string(sel)] = std::string(p);
    return answer;
  };
  // Record mismatching: the RSA key is held back, the Ed25519 one (no require_dns) signs.
  auto r = (*signer)->sign(message, "", 1700000000, &gate);
  EXPECT_EQ(r.log, "example.org/ed1 (require_dns: not signed with rsa1, DNS record mismatch)");
  EXPECT_EQ(r.fields.find("s=rsa1"), std::string::npos);
  EXPECT_TRUE(verifies(r.fields + message, ed_pem, 0));
  ASSERT_EQ(asked.count("rsa1"), 1u);
  EXPECT_EQ(asked.count("ed1"), 0u);  // not asked: it does not require DNS
  // The RSA key's own SubjectPublicKeyInfo, base64 (what its key record publishes).
  EXPECT_TRUE(asked["rsa1"].starts_with("MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAybykFDQj"))
      << asked["rsa1"];
  // Record matching: both sign.
  answer = "";
  r = (*signer)->sign(message, "", 1700000000, &gate);
  EXPECT_EQ(r.log, "example.org/rsa1,ed1");
  EXPECT_TRUE(verifies(r.fields + message, rsa_pem, 0));
  // Only require_dns keys for the domain, all held back: unsigned, and said why.
  auto only = relayd::dkim_signer::load({rsa});
  ASSERT_TRUE(only);
  answer = "missing";
  r = (*only)->sign(message, "", 1700000000, &gate);
  EXPECT_EQ(r.log, "none (require_dns: not signed with rsa1, DNS record missing)");
  EXPECT_TRUE(r.fields.empty());
  // No gate at all (no DNS monitor): a require_dns key never signs.
  r = (*only)->sign(message, "", 1700000000);
  EXPECT_EQ(r.log, "none (require_dns: not signed with rsa1, DNS record not checked)");
}

TEST_F(DkimSign, BadKeysAreStartUpErrorsNamingTheEntry) {
  auto missing = relayd::dkim_signer::load({entry("a.test", "s", "ed.pem"), entry("a.test", "t", "nope.pem")});
  ASSERT_FALSE(missing);
  EXPECT_TRUE(missing.error().starts_with("dkim[2].key: " + dir_ + "/nope.pem: cannot open"))
      << missing.error();
  write("junk.pem", "not a key\n");
  auto junk = relayd::dkim_signer::load({entry("a.test", "s", "junk.pem")});
  ASSERT_FALSE(junk);
  EXPECT_NE(junk.error().find("dkim[1].key: " + dir_ + "/junk.pem: not a PEM private key"),
            std::string::npos)
      << junk.error();
  write_key("small.pem", EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<size_t>(512)));
  auto too_small = relayd::dkim_signer::load({entry("a.test", "s", "small.pem")});
  ASSERT_FALSE(too_small);
  EXPECT_NE(too_small.error().find("RSA key of 512 bits"), std::string::npos) << too_small.error();
  write_key("ec.pem", EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
  auto wrong_type = relayd::dkim_signer::load({entry("a.test", "s", "ec.pem")});
  ASSERT_FALSE(wrong_type);
  EXPECT_NE(wrong_type.error().find("not an RSA or Ed25519 key"), std::string::npos);
}

TEST(DkimConfig, ArrayOfTablesWithDefaultsAndErrorsNamingTheKey) {
  auto c = relayd::parse_config(
      "[[dkim]]\ndomain = \"Example.ORG\"\nselector = \"2026-12.rsa\"\nkey = \"/k1.pem\"\n"
      "[[dkim]]\ndomain = \"example.org\"\nselector = \"ed\"\nkey = \"/k2.pem\"\n"
      "match = \"sender\"\nsubdomains = true\nrequire_dns = true\nexpire = \"30d\"\n");
  ASSERT_TRUE(c) << c.error();
  ASSERT_EQ(c->dkim.size(), 2u);
  EXPECT_EQ(c->dkim[0].domain, "example.org");
  EXPECT_EQ(c->dkim[0].match, relayd::config::dkim_entry::match_kind::from);
  EXPECT_FALSE(c->dkim[0].subdomains);
  EXPECT_FALSE(c->dkim[0].require_dns);
  EXPECT_FALSE(c->dkim[0].expire);
  EXPECT_EQ(c->dkim[1].match, relayd::config::dkim_entry::match_kind::sender);
  EXPECT_TRUE(c->dkim[1].subdomains && c->dkim[1].require_dns);
  EXPECT_EQ(c->dkim[1].expire, std::chrono::seconds(30 * 86400));
  auto error = [](std::string text) {
    auto r = relayd::parse_config(text);
    return r ? std::string("accepted") : r.error();
  };
  EXPECT_EQ(error("[[dkim]]\ndomain = \"a.test\"\nselector = \"bad_sel\"\nkey = \"/k\"\n"),
            "config: dkim[1].selector: bad selector \"bad_sel\" (letters, digits and hyphens, "
            "labels separated by dots)");
  EXPECT_EQ(error("[[dkim]]\ndomain = \"a.test\"\nselector = \"s\"\n"),
            "config: dkim[1].key: is required");
  EXPECT_EQ(error("[[dkim]]\ndomain = \"a.test\"\nselector = \"s\"\nkey = \"/k\"\n"
                  "match = \"to\"\n"),
            "config: dkim[1].match: bad value \"to\" (use from or sender)");
  EXPECT_EQ(error("[[dkim]]\ndomain = \"a.test\"\nselector = \"s\"\nkey = \"/k\"\nkeys = 1\n"),
            "config: dkim[1].keys: unknown key (did you mean key?)");
  EXPECT_EQ(error("dkim = 3\n"), "config: dkim: expected an array of tables ([[dkim]]), got an integer");
  EXPECT_EQ(error("dkim_check_interval = \"0s\"\n"), "config: dkim_check_interval: must be at least 1s");
  auto interval = relayd::parse_config("dkim_check_interval = \"90s\"\n");
  ASSERT_TRUE(interval) << interval.error();
  EXPECT_EQ(interval->dkim_check_interval, std::chrono::seconds(90));
  EXPECT_EQ(relayd::parse_config("")->dkim_check_interval, std::chrono::hours(6));
}

}  // namespace
