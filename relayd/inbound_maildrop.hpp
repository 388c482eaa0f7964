// Taking mail in from the drop directory (`[local] maildrop`, issue 12 "never
// lose a message"): what `sendmail` wrote there while relayd was not running
// (relayd/maildrop_file.hpp) is imported at start and while running (inotify,
// and a rescan every 30 s as a fallback), enqueued with the spool's durability
// and then removed.
//
// Promises: a drop file becomes exactly one queued message. Its name is
// committed in the spool with the message (spool::enqueue_drop), so a crash
// between the commit and the unlink finds the name recorded at the next pass
// and only removes the file. The submitter is the file's owner (st_uid), never
// what the file says. A malformed file (or one that is not a plain file with
// one link, or too large) is moved to `maildrop/corrupt/` with a log line
// naming the reason, never lost, never a crash. A spool that is full or
// failing leaves the file where it is for the next pass.
//
// Permissions (like Postfix's maildrop and postdrop): the directory belongs to
// the daemon's user and to `[local] maildrop_group` (default: the daemon's
// group), mode 1730: the group may create files but not list or read the
// directory, the sticky bit keeps anyone from deleting another's file, others
// get nothing. `sendmail` is installed set-group-id to that group and creates
// its files 0640, so only the daemon reads them. prepare_maildrop() creates
// the directory so (before root is dropped) and refuses one that is unsafe.
#pragma once

#include <sys/types.h>

#include <memory>

#include "relayd/services_fwd.hpp"

namespace relayd {

struct run_as;
class alias_source;
class dkim_service;

// Creates `[local] maildrop` if missing (mode 1730, owner `who` or the
// current user, group `[local] maildrop_group` or the owner's group), and
// checks an existing one: refused (error logged, false) when it is not a
// directory, belongs to another user, or is writable by group or others
// without the sticky bit; a safe directory with another mode or group is set
// to 1730 and the maildrop group. false also when the setting is empty
// (nothing logged): then nothing is imported.
bool prepare_maildrop(const config& cfg, const run_as& who);

class maildrop_importer {
 public:
  // Every argument outlives this object (run_daemon()'s locals).
  // `aliases` (the daemon's) rewrites local recipients as for the submit socket.
  maildrop_importer(boost::asio::io_context& io, const config& cfg, queue::spool& spool,
                    scheduler& sched, metrics& stats, const alias_source& aliases);
  ~maildrop_importer();
  void start();  // a first pass at once, then on inotify events and every 30 s
  void set_dkim(const dkim_service& d);  // signs imported messages; `d` outlives this
  void stop();   // no new pass; an import in flight finishes

  struct state;  // shared by this object and its coroutines (defined in the .cpp)

 private:
  std::shared_ptr<state> state_;
};

}  // namespace relayd
