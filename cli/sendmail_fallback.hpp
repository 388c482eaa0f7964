// The one seam for a message the daemon could not take: sendmail calls
// maildrop_fallback() when relayd is unreachable (socket missing, refused,
// silent, or gone before the end of DATA) with everything needed to queue the
// message later: the envelope (sender, recipients with NOTIFY/ORCPT, RET,
// ENVID, body type) and the message bytes (CRLF, not dot-stuffed).
// It returns sendmail's exit status: 0 only once the message is durable in
// [local] maildrop. Until the drop-directory writer is wired in (issue 12,
// point 3) it says "relayd is not running (mail not sent)" and returns 75.
#pragma once

#include <string_view>

#include "cli/sendmail_submit.hpp"
#include "relayd/config.hpp"

namespace sendmail {

// `why` is what failed talking to the daemon (for -v and the log line).
int maildrop_fallback(const relayd::config& cfg, const submission& envelope,
                      std::string_view content, std::string_view why, bool verbose);

}  // namespace sendmail
