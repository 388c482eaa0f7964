// SMTP replies: a three-digit code, an RFC 3463 enhanced status code and text.
// Every reply relayd sends is built here or from these parts, so the wording and
// enhanced codes live in one place. Encoding never fails; multi-line text becomes
// "250-..." continuation lines, each carrying the enhanced code.
#pragma once

#include <string>
#include <string_view>

namespace smtp {

struct reply {
  int code = 0;          // 200..599
  std::string enhanced;  // "2.1.0"; empty when the reply carries none (greeting, EHLO)
  std::string text;      // may hold '\n' for a multi-line reply

  // Wire form, CRLF-terminated, e.g. "250 2.1.0 Ok\r\n".
  std::string encode() const;
  // One line for logs: "550 5.7.1 Relay access denied" (continuations joined by "; ").
  std::string to_string() const;

  bool positive() const { return code >= 200 && code < 400; }
  bool transient() const { return code >= 400 && code < 500; }
  bool permanent() const { return code >= 500; }
};

}  // namespace smtp
