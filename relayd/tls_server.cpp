// Implements tls_server.hpp with OpenSSL under an asio::ssl::context. The key is
// read by us (not by SSL_CTX_use_PrivateKey_file) so that an encrypted key fails
// instead of prompting on the terminal, and a mismatch gets its own message.
#include "relayd/tls_server.hpp"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <boost/asio/ssl/context.hpp>
#include <cerrno>
#include <cstdio>
#include <cstring>

namespace relayd {
namespace {

namespace ssl = boost::asio::ssl;

// ECDHE + AEAD for TLS 1.2 (Mozilla "intermediate" without DHE); TLS 1.3 suites
// are all AEAD and keep OpenSSL's defaults.
constexpr const char* tls12_ciphers =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

// The first queued OpenSSL error as text (the queue is cleared).
std::string openssl_error() {
  const unsigned long e = ERR_peek_last_error();
  std::string out = "unknown OpenSSL error";
  if (e != 0) {
    const char* reason = ERR_reason_error_string(e);
    out = reason != nullptr ? reason : "error " + std::to_string(e);
  }
  ERR_clear_error();
  return out;
}

// Readable as a file by this process? Gives the errno text, else "".
std::string unreadable(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) return std::strerror(errno);
  std::fclose(f);
  return {};
}

int no_passphrase(char*, int, int, void*) {
  return 0;  // never prompt: an encrypted key is an error
}

std::string name_text(const X509_NAME* name) {
  BIO* bio = BIO_new(BIO_s_mem());
  if (bio == nullptr) return {};
  X509_NAME_print_ex(bio, name, 0, XN_FLAG_RFC2253);
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio, &data);
  std::string out(data, n > 0 ? static_cast<std::size_t>(n) : 0);
  BIO_free(bio);
  return out;
}

std::string time_text(const ASN1_TIME* t) {
  BIO* bio = BIO_new(BIO_s_mem());
  if (bio == nullptr) return {};
  ASN1_TIME_print(bio, t);
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio, &data);
  std::string out(data, n > 0 ? static_cast<std::size_t>(n) : 0);
  BIO_free(bio);
  return out;
}

}  // namespace

std::expected<server_tls, std::string> load_server_tls(const std::string& cert_path,
                                                       const std::string& key_path) {
  const auto fail = [](const char* key, const std::string& path, const std::string& what) {
    return std::unexpected(std::string(key) + ": " + path + ": " + what);
  };
  if (auto e = unreadable(cert_path); !e.empty())
    return fail("tls.cert", cert_path, "cannot read: " + e);
  if (auto e = unreadable(key_path); !e.empty())
    return fail("tls.key", key_path, "cannot read: " + e);

  server_tls out;
  ERR_clear_error();
  try {
    out.context = std::make_shared<ssl::context>(ssl::context::tls_server);
  } catch (const std::exception& e) {
    return std::unexpected(std::string("tls: cannot create a TLS context: ") + e.what());
  }
  SSL_CTX* ctx = out.context->native_handle();
  if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
      SSL_CTX_set_cipher_list(ctx, tls12_ciphers) != 1)
    return std::unexpected("tls: cannot set the protocol versions and ciphers: " + openssl_error());
  SSL_CTX_set_options(
      ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
  SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);  // no client certificates

  if (SSL_CTX_use_certificate_chain_file(ctx, cert_path.c_str()) != 1)
    return fail("tls.cert", cert_path, "no usable PEM certificate: " + openssl_error());
  X509* cert = SSL_CTX_get0_certificate(ctx);
  if (cert == nullptr) return fail("tls.cert", cert_path, "no certificate found");

  std::FILE* f = std::fopen(key_path.c_str(), "rb");
  if (f == nullptr)
    return fail("tls.key", key_path, std::string("cannot read: ") + std::strerror(errno));
  EVP_PKEY* key = PEM_read_PrivateKey(f, nullptr, &no_passphrase, nullptr);
  std::fclose(f);
  if (key == nullptr)
    return fail(
        "tls.key", key_path,
        "no usable PEM private key (an encrypted key is not supported): " + openssl_error());
  const bool matches = X509_check_private_key(cert, key) == 1;
  ERR_clear_error();
  const bool used = matches && SSL_CTX_use_PrivateKey(ctx, key) == 1;
  EVP_PKEY_free(key);
  if (!matches)
    return fail("tls.key", key_path,
                "does not match the certificate in tls.cert (" + cert_path + ")");
  if (!used || SSL_CTX_check_private_key(ctx) != 1)
    return fail("tls.key", key_path, "cannot use the private key: " + openssl_error());

  out.subject = name_text(X509_get_subject_name(cert));
  out.not_after = time_text(X509_get0_notAfter(cert));
  out.expired = X509_cmp_current_time(X509_get0_notAfter(cert)) < 0;
  return out;
}

}  // namespace relayd
