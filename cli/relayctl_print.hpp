// relayctl's commands: each sends one request through a control_client and
// prints the answer, postqueue-style for people or as JSON lines for scripts.
// They return the exit status (0); a failed request ends relayctl through fail().
#pragma once

#include <string>

#include "cli/control_client.hpp"

namespace relayctl {

int print_queue(control_client& c);                  // -p
int print_queue_json(control_client& c);             // -j
int show_message(control_client& c, const std::string& id);  // -s ID
int delete_messages(control_client& c, const std::string& id_or_all);  // -d
// flush (empty id) / requeue / hold / release (a control_protocol::verb).
int queue_action(control_client& c, std::string_view verb, const std::string& id_or_all);
int dead_list(control_client& c, bool as_json);
int dead_show(control_client& c, const std::string& id);
// "replay" or "purge".
int dead_action(control_client& c, const std::string& action, const std::string& id_or_all);
int stats(control_client& c, bool as_json);
// Has relayd re-read its configuration; prints what changed (exit 0) or why
// not (exit 1: the running configuration stays).
int reload(control_client& c);

}  // namespace relayctl
