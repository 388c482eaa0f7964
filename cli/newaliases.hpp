// newaliases (sendmail -bi, relayctl aliases-reload): checks the [local]
// aliases file as relayd reads it and asks a running relayd to reload it.
// Exit status (sysexits.h): 0 the file is valid (relayd reloaded it, or is not
// running and will read it when it starts); 65 the file is not valid (one
// "newaliases: FILE:LINE: what" line on stderr, relayd is not asked); 75 the
// file is valid but relayd could not be told or refused it (it keeps its old
// table). Prints "newaliases: FILE: N aliases" on stdout. Links no Asio.
#pragma once

namespace relayd {
struct config;
}

int newaliases_main(const relayd::config& cfg, bool verbose);
