// Kept for the daemon's include: the control server lives in control_server.hpp
// (socket and dispatch), control_protocol.hpp (what relayctl and relayd say) and
// control_queue/dead/stats.cpp (the commands). Include control_server.hpp instead.
#pragma once

#include "relayd/control_server.hpp"
