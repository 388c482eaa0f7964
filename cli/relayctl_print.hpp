// relayctl's commands: each sends one request through a control_client and
// prints the answer, postqueue-style for people or as JSON lines for scripts.
// They return the exit status (0); a failed request ends relayctl through fail().
#pragma once

#include <string>

#include "cli/control_client.hpp"
#include "relayd/queue_filter.hpp"

namespace relayctl {

using relayd::queue_filter;

// The listings and actions take a filter (empty: everything); an action with an
// empty `id_or_all` works on every message its (non-empty) filter matches.
int print_queue(control_client& c, const queue_filter& f = {});       // -p
int print_queue_json(control_client& c, const queue_filter& f);  // -j
// -p --shape: the `top` busiest recipient domains by age, like Postfix's qshape.
int print_shape(control_client& c, const queue_filter& f, std::size_t top);
int show_message(control_client& c, const std::string& id);  // -s ID
int delete_messages(control_client& c, const std::string& id_or_all, const queue_filter& f);  // -d
// flush (empty id) / requeue / hold / release (a control_protocol::verb).
int queue_action(control_client& c, std::string_view verb, const std::string& id_or_all,
                 const queue_filter& f = {});
int dead_list(control_client& c, bool as_json, const queue_filter& f);
int dead_show(control_client& c, const std::string& id);
// "replay" or "purge".
int dead_action(control_client& c, const std::string& action, const std::string& id_or_all,
                const queue_filter& f);
int stats(control_client& c, bool as_json);
// Has relayd re-read its configuration; prints what changed (exit 0) or why
// not (exit 1: the running configuration stays).
int reload(control_client& c);

}  // namespace relayctl
