// Fault hooks into an open spool, for tests only: production code never
// includes this header. They act on the core through spool_access and take
// effect at the writer's next commit.
#pragma once

#include "queue/spool.hpp"

namespace queue::testing {

// Makes the next `count` write transactions fail at commit with `error` (an
// errno value such as EIO or ENOSPC) instead of committing.
void fail_next_commits(const spool& s, int error, int count);

}  // namespace queue::testing
