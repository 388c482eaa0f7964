// OAuth2 access tokens for a smarthost (AUTH XOAUTH2 / OAUTHBEARER): the refresh
// token is exchanged at token_url (RFC 6749 6, HTTPS POST with the certificate
// verified against the system CAs or SSL_CERT_FILE, 64 KiB answer limit, 30 s
// deadline per step, no redirects). The access token is cached until shortly
// before it expires and refreshed ahead; a refresh token the provider rotates is
// kept in memory and written back to its file when that can be done atomically.
// Every failure (endpoint down, TLS, HTTP 4xx/5xx with the provider's error and
// error_description, a bad answer) is an oauth2_error value: the caller defers
// the mail (cause auth or local_config), never bounces it. Beast stays in the .cpp.
#pragma once

#include <chrono>
#include <expected>
#include <memory>
#include <string>
#include <string_view>

#include "queue/record.hpp"  // outcome_cause
#include "relayd/net.hpp"

namespace relayd {

struct oauth2_settings;

// A 200 answer of the token endpoint (RFC 6749 5.1).
struct oauth2_token_reply {
  std::string access_token;
  std::chrono::seconds expires_in{3600};  // 3600 when the answer has none
  std::string token_type;                 // "Bearer" (any case) or empty
  std::string refresh_token;              // a rotated refresh token, or empty
};

struct oauth2_error {
  queue::outcome_cause cause = queue::outcome_cause::local_config;  // auth: the provider refused us
  int http_status = 0;  // 0: no HTTP answer (down, TLS, timeout)
  std::string text;     // "token endpoint auth.example: HTTP 400: invalid_grant: ..."
};

// Parses the JSON body of a 200 answer: access_token required, token_type
// Bearer when given, expires_in a positive number when given.
std::expected<oauth2_token_reply, std::string> parse_token_reply(std::string_view body);
// "HTTP 400: invalid_grant: Token has been expired or revoked." from an error
// answer (RFC 6749 5.2); a body that is not JSON is quoted, cut at 200 octets.
std::string describe_token_error(int status, std::string_view body);

// The cached access token and when to refresh it: fresh until refresh_at
// (expiry minus a quarter of the lifetime, at most 5 minutes), then still handed
// out while a refresh runs ahead, until usable_until (expiry minus a tenth, at
// most 30 s); past that a caller waits for a new one. Pure: the clock is passed in.
class oauth2_token_cache {
 public:
  using time_point = std::chrono::steady_clock::time_point;
  enum class state { none, fresh, refresh_ahead, expired };

  state at(time_point now) const;
  const std::string& token() const { return token_; }
  void store(std::string token, std::chrono::seconds expires_in, time_point now);
  // The smarthost refused `token`: forget it, if it is still the cached one.
  void forget(const std::string& token);
  time_point refresh_at() const { return refresh_at_; }
  time_point usable_until() const { return usable_until_; }

 private:
  std::string token_;
  time_point refresh_at_{}, usable_until_{};
};

// One per smarthost with OAuth2; lives on the I/O thread.
class oauth2_token_source {
 public:
  // Opens and reads the client secret and refresh token files (call before the
  // privilege drop). Throws std::runtime_error naming `key` and the file.
  oauth2_token_source(asio::io_context& io, const oauth2_settings& s, std::string key);
  ~oauth2_token_source();
  oauth2_token_source(const oauth2_token_source&) = delete;
  oauth2_token_source& operator=(const oauth2_token_source&) = delete;

  // An access token: the cached one, or a new one from the endpoint. One request
  // at a time; callers arriving meanwhile wait for its answer.
  awaitable<std::expected<std::string, oauth2_error>> token();
  // The smarthost refused `token` (535): the next token() asks the endpoint.
  void refused(const std::string& token);
  // SIGHUP: re-reads the client secret and the refresh token file. A refresh
  // token file whose content did not change keeps the one in memory (which may
  // be newer: a rotated token that could not be written back). Errors are logged;
  // the values in use stay.
  void reload();

 private:
  struct state;
  std::shared_ptr<state> s_;  // shared with a request in flight
};

}  // namespace relayd
