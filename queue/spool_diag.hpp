// Diagnostics of an open spool that the contract header does not carry: which
// records open() set aside and why (for the daemon's start-up log), and the
// writer's counters (commits, map growth...) for metrics and tests. Each call
// reads the core directly (counters are atomic); none touches the disk. The
// tests' fault hooks are in spool_testing.hpp.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "queue/spool.hpp"

namespace queue {

struct quarantine_entry {
  std::string id;      // queue ID, or "key:<hex>" when the key itself was damaged
  std::string reason;  // why it was set aside ("unknown record version 7", "body missing"...)
};

// Records moved to the `quarantine` database by open(), in key order; log them
// as "ID: reason". Empty when nothing was damaged.
std::vector<quarantine_entry> quarantined_at_open(const spool& s);

struct spool_stats {
  std::uint64_t commits = 0;         // write transactions committed (synced)
  std::uint64_t failed_commits = 0;  // commits that returned an error (EIO, ENOSPC...)
  std::uint64_t operations = 0;      // write operations completed (any kind, any result)
  std::uint64_t batches = 0;         // groups of operations taken by the writer
  std::uint64_t map_resizes = 0;     // times the map was grown (or shrunk back to max_size)
  std::uint64_t env_reopens = 0;     // times the environment was reopened after MDB_PANIC
  std::uint64_t map_size = 0;        // current map size in bytes
};

spool_stats stats(const spool& s);

}  // namespace queue
