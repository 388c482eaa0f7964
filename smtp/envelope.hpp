// The SMTP envelope of one message as received: what MAIL and RCPT said, and who
// said it. Plain data shared by the server session and the spool.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace smtp {

enum class body_type : std::uint8_t { seven_bit = 0, eight_bit_mime = 1 };

struct envelope {
  std::string sender;                   // reverse-path without <>; "" is the null sender
  std::vector<std::string> recipients;  // forward-paths without <>, in RCPT order
  body_type body = body_type::seven_bit;
  bool smtputf8 = false;
  std::uint64_t declared_size = 0;  // SIZE= from MAIL, 0 when absent
  std::string client_ip;            // textual address of the client
  std::string helo;                 // the EHLO/HELO argument
};

}  // namespace smtp
