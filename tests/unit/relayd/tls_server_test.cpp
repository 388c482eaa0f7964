// relayd::load_server_tls: a certificate and key made here with OpenSSL (EC
// P-256, self-signed) load into a context that speaks TLS 1.2+ with ECDHE+AEAD
// suites only; every kind of bad file is an error naming tls.cert or tls.key.
#include "relayd/tls_server.hpp"

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <unistd.h>

#include <boost/asio/ssl/context.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

namespace relayd {
namespace {

namespace fs = std::filesystem;

struct pki {
  fs::path dir;
  pki() {
    char tmpl[] = "/tmp/relayd_tls_test_XXXXXX";
    dir = mkdtemp(tmpl);
  }
  ~pki() { fs::remove_all(dir); }

  // Writes NAME.key and NAME.pem: a P-256 key and a self-signed certificate
  // for CN=NAME, valid from `from_days` to `to_days` (relative to now).
  void make(const std::string& name, long from_days = 0, long to_days = 2,
            const char* passphrase = nullptr) {
    EVP_PKEY* key = EVP_EC_gen("P-256");
    ASSERT_NE(key, nullptr);
    X509* cert = X509_new();
    X509_set_version(cert, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
    X509_gmtime_adj(X509_getm_notBefore(cert), from_days * 86400 - 60);
    X509_gmtime_adj(X509_getm_notAfter(cert), to_days * 86400);
    X509_set_pubkey(cert, key);
    X509_NAME* subject = X509_get_subject_name(cert);
    X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_ASC,
                               reinterpret_cast<const unsigned char*>(name.c_str()), -1, -1, 0);
    X509_set_issuer_name(cert, subject);
    ASSERT_GT(X509_sign(cert, key, EVP_sha256()), 0);
    std::FILE* f = std::fopen(path(name, "pem").c_str(), "wb");
    PEM_write_X509(f, cert);
    std::fclose(f);
    f = std::fopen(path(name, "key").c_str(), "wb");
    if (passphrase != nullptr) {
      PEM_write_PrivateKey(f, key, EVP_aes_128_cbc(), nullptr, 0, nullptr,
                           const_cast<char*>(passphrase));
    } else {
      PEM_write_PrivateKey(f, key, nullptr, nullptr, 0, nullptr, nullptr);
    }
    std::fclose(f);
    X509_free(cert);
    EVP_PKEY_free(key);
  }
  std::string path(const std::string& name, const char* ext) const {
    return (dir / (name + "." + ext)).string();
  }
};

TEST(server_tls, loads_and_allows_only_modern_tls) {
  pki p;
  p.make("relay.test");
  auto tls = load_server_tls(p.path("relay.test", "pem"), p.path("relay.test", "key"));
  ASSERT_TRUE(tls.has_value()) << tls.error();
  EXPECT_EQ(tls->subject, "CN=relay.test");
  EXPECT_FALSE(tls->expired);
  EXPECT_FALSE(tls->not_after.empty());
  SSL_CTX* ctx = tls->context->native_handle();
  EXPECT_EQ(SSL_CTX_get_min_proto_version(ctx), TLS1_2_VERSION);
  EXPECT_NE(SSL_CTX_get_options(ctx) & SSL_OP_NO_COMPRESSION, 0u);
  EXPECT_NE(SSL_CTX_get_options(ctx) & SSL_OP_NO_RENEGOTIATION, 0u);
  SSL* ssl = SSL_new(ctx);
  ASSERT_NE(ssl, nullptr);
  const STACK_OF(SSL_CIPHER)* ciphers = SSL_get_ciphers(ssl);
  int tls12 = 0;
  for (int i = 0; i < sk_SSL_CIPHER_num(ciphers); ++i) {
    const SSL_CIPHER* c = sk_SSL_CIPHER_value(ciphers, i);
    EXPECT_EQ(SSL_CIPHER_is_aead(c), 1) << SSL_CIPHER_get_name(c);
    if (SSL_CIPHER_get_kx_nid(c) == NID_kx_any) continue;  // a TLS 1.3 suite
    ++tls12;
    EXPECT_EQ(SSL_CIPHER_get_kx_nid(c), NID_kx_ecdhe) << SSL_CIPHER_get_name(c);
  }
  EXPECT_GT(tls12, 0);
  SSL_free(ssl);
}

TEST(server_tls, expired_certificate_loads_but_says_so) {
  pki p;
  p.make("old.test", -10, -1);
  auto tls = load_server_tls(p.path("old.test", "pem"), p.path("old.test", "key"));
  ASSERT_TRUE(tls.has_value()) << tls.error();
  EXPECT_TRUE(tls->expired);
}

TEST(server_tls, errors_name_the_key) {
  pki p;
  p.make("a.test");
  p.make("b.test");
  p.make("locked.test", 0, 2, "passphrase");
  const std::string cert = p.path("a.test", "pem"), key = p.path("a.test", "key");

  auto r = load_server_tls(cert, p.path("b.test", "key"));
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error(), "tls.key: " + p.path("b.test", "key") +
                           ": does not match the certificate in tls.cert (" + cert + ")");

  r = load_server_tls(p.path("missing", "pem"), key);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error(),
            "tls.cert: " + p.path("missing", "pem") + ": cannot read: No such file or directory");

  r = load_server_tls(cert, p.path("missing", "key"));
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error(),
            "tls.key: " + p.path("missing", "key") + ": cannot read: No such file or directory");

  // The key where the certificate should be, and the other way round.
  r = load_server_tls(key, key);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().rfind("tls.cert: " + key + ": no usable PEM certificate", 0), 0u)
      << r.error();
  r = load_server_tls(cert, cert);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().rfind("tls.key: " + cert + ": no usable PEM private key", 0), 0u)
      << r.error();

  // An encrypted key fails without prompting.
  r = load_server_tls(p.path("locked.test", "pem"), p.path("locked.test", "key"));
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().find("an encrypted key is not supported"), std::string::npos) << r.error();
}

}  // namespace
}  // namespace relayd
