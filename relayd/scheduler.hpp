// Transitional: the scheduler lives in relayd/delivery_scheduler.hpp. This
// header only forwards to it for the files that still include the old name
// (daemon.cpp, control.cpp, delivery_agent.cpp); delete it once they do not.
#pragma once

#include "relayd/delivery_scheduler.hpp"
