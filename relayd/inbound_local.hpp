// Local submission ([local] socket): the Unix socket through which sendmail and
// local programs hand mail to the daemon, who is on the other end of it, and
// what that user may do. Plain POSIX, no Asio: open_local_socket() binds and
// listens (inbound_listener wraps the descriptor and serves it with the same
// session pump as TCP), peer_identity() reads SO_PEERCRED and /proc, and
// check_local_sender() is the [local] policy applied at MAIL. Failures: opening
// gives an error text naming the key; an identity fails only when the kernel
// gives no credentials (the /proc facts that cannot be read stay empty).
#pragma once

#include <sys/types.h>

#include <expected>
#include <optional>
#include <string>
#include <string_view>

#include "smtp/envelope.hpp"
#include "smtp/reply.hpp"

namespace relayd {

struct config;

// The login name of `uid`, "" when it has none (or the lookup fails).
std::string user_name(uid_t uid);

// True when a process accepts connections on the Unix socket at `path` (a
// socket file left by a process that is gone is not).
bool unix_socket_accepting(const std::string& path);

// The systemd unit a process runs in, from the text of /proc/PID/cgroup: the
// last component ending in ".service" or ".scope" of the unified hierarchy's
// path ("0::/system.slice/php8.2-fpm.service" -> "php8.2-fpm.service"), or of
// the name=systemd hierarchy on a cgroup v1 host; "" when there is none.
std::string unit_from_cgroup(std::string_view cgroup_file);

// What is known about process `pid` running as uid/gid: the login name of uid
// (getpwuid_r; "" when it has none), PROC/PID/exe and the unit from
// PROC/PID/cgroup ("" when unreadable, e.g. the process has gone).
smtp::local_identity describe_process(uid_t uid, gid_t gid, pid_t pid,
                                      const std::string& proc = "/proc");

// The peer of a connected Unix socket: SO_PEERCRED, then describe_process().
std::expected<smtp::local_identity, std::string> peer_identity(int fd);

// "local (uid 33, www-data, pid 1234)" for the log's connect/reject lines.
std::string identity_text(const smtp::local_identity& who);

// Binds and listens on [local] socket: creates the parent directory (0755;
// handed to `user` when relayd starts as root and will switch to it, so the
// socket can be removed at stop), replaces a stale socket left by a previous
// run, refuses when another process still accepts on it or the path is not a
// socket, and makes the socket 0666 (any local user may submit). Returns the
// listening descriptor (close-on-exec, non-blocking), or "local.socket: ...".
std::expected<int, std::string> open_local_socket(const config& cfg);
// Removes the socket file at stop; false when it could not (the next start
// replaces it).
bool remove_local_socket(const config& cfg);

// The [local] policy for the sender of a local submission, asked at MAIL.
// [local] allowed_users non-empty: other users get 550 5.7.1 (root always may
// submit). [local] senders lists user -> patterns ("addr" or "*@domain"): a
// listed user may use only matching senders (a bare local part is first
// qualified with [local] domain), and the null sender only if it is root:
// 553 5.7.1 otherwise. nullopt: the sender may be used.
std::optional<smtp::reply> check_local_sender(const config& cfg, const smtp::local_identity& who,
                                              std::string_view sender);

}  // namespace relayd
