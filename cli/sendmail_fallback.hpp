// The one seam for a message the daemon could not take: sendmail calls
// maildrop_fallback() when relayd is unreachable (socket missing, refused,
// silent, or gone before the end of DATA) with everything needed to queue the
// message later: the envelope (sender, recipients with NOTIFY/ORCPT, RET,
// ENVID, body type) and the message bytes (CRLF, not dot-stuffed). It writes
// them durably into [local] maildrop (relayd/maildrop_file), where relayd
// imports them when it runs again.
//
// Privilege: the package installs sendmail set-group-id to the maildrop group
// (Postfix's postdrop model: the directory is 1730 daemon:group). sendmail gives
// that group up first thing (drop_group_privilege(), before it reads a config
// file, stdin or the environment's choices) and takes it back only around the
// write of the drop file, so the group never reads anything on a user's
// behalf. The file's owner stays the caller's real uid: that is the identity
// relayd records, and nobody can write a file owned by someone else.
#pragma once

#include <string_view>

#include "cli/sendmail_submit.hpp"
#include "relayd/config.hpp"

namespace sendmail {

// Sets the effective group back to the real group, remembering the set-group-id
// one for maildrop_fallback(). Call once at the start of main(). Fails (false)
// only when the kernel refuses, and then sendmail must stop.
bool drop_group_privilege();

// Returns sendmail's exit status: 0 once the file is durable (written, synced,
// renamed, its directory synced); 75 when it cannot be written (one line on
// stderr saying why: the mail was not sent). `why` is what failed talking to
// the daemon (printed with -v).
int maildrop_fallback(const relayd::config& cfg, const submission& envelope,
                      std::string_view content, std::string_view why, bool verbose);

}  // namespace sendmail
