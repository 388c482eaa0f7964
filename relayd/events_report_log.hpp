// The record relayctl report counts from (relayd/events_report.hpp): on by
// default ([events] report_days = 7; 0 turns it off), whatever [events] file
// and webhook say. Every committed event becomes one short line in
// <spool>/events/YYYYMMDD.log (the event's UTC day); files older than
// report_days days are removed at start and when the day changes.
// Best effort, as statistics may be: a writer thread with a bounded queue
// appends, so neither the I/O thread nor delivery ever waits for it; a write
// error or a full queue drops records (logged once a minute). A line cut short
// by a crash is ended before the next is appended, and the reader skips it.
// The writer wakes once a second, when 1,024 events wait, when a reader asks
// (flush()) and at the end, not per event: a record is at most a second late,
// and a kill -9 loses at most that second of statistics.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "relayd/events_format.hpp"

namespace relayd {

class report_log {
 public:
  report_log(std::string dir, std::uint64_t days);
  ~report_log();  // the writer writes what it holds, then stops
  report_log(const report_log&) = delete;
  report_log& operator=(const report_log&) = delete;

  // Creates the directory, removes expired files, starts the writer. The error
  // names the directory.
  bool start(std::string& error);
  // Events whose change is committed; any thread.
  void add(std::vector<event> events);
  // `done` runs (on the writer thread) once every event added before is in
  // its file, or at once when the writer is not running.
  void flush(std::function<void()> done);

  struct state;

 private:
  std::unique_ptr<state> s_;
};

// <spool>/events
std::string report_dir(const std::string& spool);
// The files of `dir` that may hold records of [since, until) (Unix seconds),
// oldest first.
std::vector<std::string> report_files(const std::string& dir, std::int64_t since, std::int64_t until);

}  // namespace relayd
