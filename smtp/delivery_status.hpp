// The client's failure policy, as Postfix's smtp_trouble.c keeps it apart from the
// dialogue: what a server reply means for a recipient (delivered, temporary,
// permanent), the causes of a failed connection, which replies make the whole
// destination back off, and the DSN status code of a reply. Pure functions.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "smtp/reply.hpp"

namespace smtp {

enum class delivery_status : std::uint8_t { delivered, temporary, permanent };
std::string_view to_string(delivery_status s);  // "delivered", "temporary", "permanent"

// What a reply decides for the recipients it covers: 2xx delivered, 5xx
// permanent, anything else temporary.
delivery_status status_of(const reply& r);

enum class failure_cause : std::uint8_t {
  greeting_refused,  // 4xx/5xx greeting (the pump tries the next MX on 4xx)
  hello_refused,     // EHLO 4xx, or EHLO 5xx and then HELO refused
  tls_unavailable,   // TLS required, STARTTLS not offered or refused
  auth_rejected,     // 5xx to AUTH, e.g. 535: our credentials (local fault)
  auth_temporary,    // 4xx to AUTH, e.g. 454
  auth_unavailable,  // credentials set but no PLAIN/LOGIN offered, or no TLS (local fault)
  service_closing,   // 421 outside a transaction
  protocol_error,    // malformed or unexpected reply
  connection_lost,   // reported by the pump: EOF, reset, timeout
};
std::string_view to_string(failure_cause c);  // "greeting refused", "TLS unavailable", ...

// 421, or a 4xx reply whose enhanced code is 4.7.x (rate limiting, greylisting,
// policy): the destination should back off as a whole (DESIGN.md).
bool is_throttling(const reply& r);
// The enhanced status code of `r`, or "X.0.0" from its code when it has none.
std::string dsn_status(const reply& r);

}  // namespace smtp
