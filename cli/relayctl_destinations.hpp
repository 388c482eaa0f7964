// relayctl destinations [--json] | suspend DEST [--for DURATION] | resume DEST:
// the per-destination state of relayd's scheduler (queued, in flight, rate,
// state, last reply, suspended until) and the two actions on it (control verbs
// destinations, suspend, resume). Bad words give 2 (usage); a failed request 1.
#pragma once

#include <string>
#include <vector>

#include "cli/control_client.hpp"

namespace relayctl {

// Whether the words after the command make sense; if not, says why on stderr.
bool destinations_words_ok(const std::string& command, const std::vector<std::string>& words);
// `command` is "destinations", "suspend" or "resume"; `words` as checked above.
int destinations_main(control_client& c, const std::string& command,
                      const std::vector<std::string>& words);

}  // namespace relayctl
