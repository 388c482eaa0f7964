// Process set-up around the privilege boundary: the open-file limit, looking
// up the configured `user` before anything is opened, and dropping root once
// listeners and files are open. Failures are logged (critical) and returned as
// nullopt/false: the start-up must then fail.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>

namespace relayd {

struct config;

// Raises RLIMIT_NOFILE towards `want`; warns when the hard limit is lower.
void raise_fd_limit(std::uint64_t want);

// The account named by the top-level `user` key.
struct run_as {
  std::string name;  // empty: nothing to switch
  uid_t uid = 0;
  gid_t gid = 0;
};

// Looks `user` up. nullopt with a critical log line when the start-up must
// fail; an empty name (or already being that user) gives an empty account.
std::optional<run_as> resolve_user(const config& cfg);

// The id of the group `name` (getgrnam_r, so NSS groups too); nullopt when no
// such group exists or the lookup fails.
std::optional<gid_t> group_id(const std::string& name);

// Hands the spool (directory and files) and the control socket to `who`, then
// drops root for good: setgroups, setgid, setuid, and checks that root cannot
// be regained. false: start-up fails.
bool drop_privileges(const config& cfg, const run_as& who);

}  // namespace relayd
