// Implements sendmail_fallback.hpp for a build without the drop-directory
// writer: nothing is written, the caller is told the mail was not sent (75,
// EX_TEMPFAIL, so cron and friends keep their own copy or retry).
#include "cli/sendmail_fallback.hpp"

#include <sysexits.h>

#include <cstdio>
#include <string>

namespace sendmail {

int maildrop_fallback(const relayd::config& /*cfg*/, const submission& /*envelope*/,
                      std::string_view /*content*/, std::string_view why, bool verbose) {
  if (verbose) std::fprintf(stderr, "sendmail: %s\n", std::string(why).c_str());
  std::fprintf(stderr, "sendmail: relayd is not running (mail not sent)\n");
  return EX_TEMPFAIL;
}

}  // namespace sendmail
