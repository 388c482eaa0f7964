// The inbound TLS context built from [tls] cert and key, for STARTTLS and the
// implicit-TLS (smtps) listeners: TLS 1.2 and 1.3 only; for TLS 1.2 only ECDHE
// key exchange with AEAD ciphers (AES-GCM, ChaCha20-Poly1305); no compression,
// no renegotiation. Loading fails with a message that names the key (tls.cert
// or tls.key): unreadable file, no PEM certificate, encrypted or unreadable
// key, key that does not match the certificate. A new context is built on
// every reload, so connections keep the one they started with.
#pragma once

#include <expected>
#include <memory>
#include <string>

namespace boost::asio::ssl {
class context;
}

namespace relayd {

struct server_tls {
  std::shared_ptr<boost::asio::ssl::context> context;
  std::string subject;    // the certificate's subject, for the log: "CN=relay.example.org"
  std::string not_after;  // "Jan  1 00:00:00 2030 GMT"
  bool expired = false;   // loaded all the same; the daemon warns
};

std::expected<server_tls, std::string> load_server_tls(const std::string& cert_path,
                                                       const std::string& key_path);

}  // namespace relayd
