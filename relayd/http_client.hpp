// One HTTP(S) POST with Boost.Beast on the caller's io_context: the OAuth2 token
// request and the event webhook share it. "https://" verifies the server's
// certificate and host name against the system CAs (SSL_CERT_FILE/SSL_CERT_DIR
// honoured); "http://" is plain TCP. Each step (resolve+connect, handshake,
// write, read) has its own deadline; the answer is cut at a size limit;
// redirects are not followed. Fails by value: a one-line reason ("cannot
// connect: Connection refused"). Beast and OpenSSL stay in the .cpp.
#pragma once

#include <chrono>
#include <expected>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "relayd/net.hpp"

namespace relayd {

struct http_url {
  bool tls = true;
  std::string host, port = "443", target = "/";
};
// "https://host[:port][/path]" or, with allow_plain, "http://..." (port 80).
// IPv6 hosts in brackets. nullopt for anything else.
std::optional<http_url> parse_http_url(std::string_view url, bool allow_plain);

struct http_answer {
  int status = 0;
  std::string body;
};

struct http_post_request {
  std::string content_type;
  std::string accept;
  std::string body;  // wiped (OPENSSL_cleanse) once sent: it may hold secrets
  std::size_t max_answer = 64 * 1024;
  std::chrono::seconds step_timeout{30};
};

// A client for one URL: holds the TLS context (TLS 1.2 at least, peer verified).
class http_client {
 public:
  explicit http_client(http_url where);
  ~http_client();
  http_client(const http_client&) = delete;
  http_client& operator=(const http_client&) = delete;

  const http_url& where() const { return where_; }
  // "host:port" for messages.
  std::string label() const { return where_.host + ":" + where_.port; }
  // One request on a fresh connection. The client must outlive the call.
  awaitable<std::expected<http_answer, std::string>> post(asio::io_context& io,
                                                          http_post_request req);

 private:
  struct tls_state;
  http_url where_;
  std::unique_ptr<tls_state> tls_;
};

}  // namespace relayd
