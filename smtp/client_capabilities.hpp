// What a server's EHLO reply advertises, as the SMTP client reads it: the
// extensions relayd uses (PIPELINING, SIZE, 8BITMIME, SMTPUTF8, STARTTLS, AUTH
// PLAIN/LOGIN, DSN, REQUIRETLS) and the ones it records. Parsing never fails: an unknown or
// malformed line is ignored, an unreadable SIZE limit is "no limit given".
#pragma once

#include <cstdint>

#include "smtp/reply.hpp"

namespace smtp {

// What the server's EHLO reply advertised (all false after HELO).
struct server_capabilities {
  bool esmtp = false;  // EHLO accepted
  bool pipelining = false;
  bool size = false;           // SIZE advertised: MAIL carries SIZE=
  std::uint64_t max_size = 0;  // its limit; 0: none given
  bool eight_bit_mime = false;
  bool smtputf8 = false;
  bool starttls = false;
  bool enhanced_status_codes = false;
  bool auth_plain = false;
  bool auth_login = false;
  bool auth_xoauth2 = false;      // Google's and Microsoft's OAuth2 bearer mechanism
  bool auth_oauthbearer = false;  // RFC 7628
  bool chunking = false;  // recorded; relayd does not use BDAT
  bool dsn = false;       // RFC 3461: MAIL carries RET/ENVID, RCPT NOTIFY/ORCPT
  bool requiretls = false;  // RFC 8689: MAIL may carry REQUIRETLS
};

// The positive EHLO reply `r`: its first line is the server's name, each further
// line an extension keyword with optional parameters ("AUTH=PLAIN" is the old
// form). Keywords and AUTH mechanisms are matched in any case.
server_capabilities parse_capabilities(const reply& r);

}  // namespace smtp
