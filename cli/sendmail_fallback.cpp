// Implements sendmail_fallback.hpp: the set-group-id privilege handling and the
// drop file write through relayd::maildrop::write().
#include "cli/sendmail_fallback.hpp"

#include <sysexits.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

#include "relayd/maildrop_file.hpp"

namespace sendmail {
namespace {

// The set-group-id group, when sendmail was started with one.
gid_t privileged_group = 0;
bool have_privileged_group = false;

}  // namespace

bool drop_group_privilege() {
  const gid_t real = ::getgid(), effective = ::getegid();
  if (real == effective) return true;
  privileged_group = effective;
  have_privileged_group = true;
  return ::setegid(real) == 0;
}

int maildrop_fallback(const relayd::config& cfg, const submission& envelope,
                      std::string_view content, std::string_view why, bool verbose) {
  if (verbose) std::fprintf(stderr, "sendmail: %s\n", std::string(why).c_str());
  if (have_privileged_group && ::setegid(privileged_group) != 0) {
    std::fprintf(stderr, "sendmail: relayd is not running and the drop group is unavailable: %s "
                 "(mail not sent)\n", std::strerror(errno));
    return EX_TEMPFAIL;
  }
  auto written = relayd::maildrop::write(cfg.local.maildrop, envelope, content);
  if (have_privileged_group && ::setegid(::getgid()) != 0) {
    std::fprintf(stderr, "sendmail: cannot give up the drop group: %s\n", std::strerror(errno));
    return EX_SOFTWARE;  // the file, if written, is durable; relayd imports it
  }
  if (!written) {
    std::fprintf(stderr, "sendmail: relayd is not running and %s could not be written: %s "
                 "(mail not sent)\n", cfg.local.maildrop.c_str(), written.error().c_str());
    return EX_TEMPFAIL;
  }
  if (verbose)
    std::fprintf(stderr, "sendmail: relayd is not running; kept in %s/%s for relayd to send\n",
                 cfg.local.maildrop.c_str(), written->c_str());
  return EX_OK;
}

}  // namespace sendmail
