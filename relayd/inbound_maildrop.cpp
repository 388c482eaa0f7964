// The drop directory importer (see inbound_maildrop.hpp). One coroutine makes
// passes over the directory, one file at a time; a second one waits on inotify
// and wakes the first. Both own the shared state; cfg, spool, scheduler and
// metrics are run_daemon()'s locals, alive whenever they run (inside
// io.run()). File system errors are logged and the file is left for the next
// pass; nothing here throws out of a coroutine.
#include "relayd/inbound_maildrop.hpp"

#include "relayd/inbound_local.hpp"
#include "relayd/local_aliases.hpp"

#include <fcntl.h>
#include <pwd.h>
#include <spdlog/spdlog.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <dirent.h>
#include <string>
#include <tuple>
#include <vector>

#include "queue/clock.hpp"
#include "queue/spool.hpp"
#include "relayd/async_call.hpp"
#include "relayd/config.hpp"
#include "relayd/delivery_requiretls.hpp"
#include "relayd/delivery_scheduler.hpp"
#include "relayd/dkim_sign.hpp"
#include "relayd/events_log.hpp"
#include "relayd/maildrop_file.hpp"
#include "relayd/metrics.hpp"
#include "relayd/net.hpp"
#include "relayd/privileges.hpp"
#include "smtp/message.hpp"

namespace relayd {
namespace {

constexpr auto rescan_interval = std::chrono::seconds(30);
constexpr const char* corrupt_dir = "corrupt";
constexpr std::size_t max_recorded_names = 100000;  // looked at per pass

std::string octal(mode_t m) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%04o", static_cast<unsigned>(m & 07777));
  return buf;
}

// "Received: from local (uid 33, www-data)\r\n\tby HOST (relayd) with local id ID;\r\n\tDATE\r\n"
std::string local_received(const smtp::local_identity& who, std::string_view host,
                           std::string_view id, std::int64_t time) {
  std::string r = "Received: from local (uid " + std::to_string(who.uid);
  if (!who.user.empty()) r += ", " + who.user;
  r += ")\r\n\tby ";
  r += host;
  r += " (relayd) with local id ";
  r += id;
  r += ";\r\n\t" + smtp::format_date(time) + "\r\n";
  return r;
}

}  // namespace

bool prepare_maildrop(const config& cfg, const run_as& who) {
  const std::string& dir = cfg.local.maildrop;
  if (dir.empty()) return false;
  const uid_t uid = who.name.empty() ? ::geteuid() : who.uid;
  const gid_t own_gid = who.name.empty() ? ::getegid() : who.gid;
  const auto gid =
      cfg.local.maildrop_group.empty() ? own_gid : group_id(cfg.local.maildrop_group);
  if (!gid) {
    spdlog::error("maildrop {}: unknown group \"{}\" (local.maildrop_group): not importing", dir,
                  cfg.local.maildrop_group);
    return false;
  }
  if (::mkdir(dir.c_str(), 0700) == 0) {
    if (::chown(dir.c_str(), uid, *gid) != 0 || ::chmod(dir.c_str(), maildrop::dir_mode) != 0) {
      spdlog::error("maildrop {}: cannot set owner {}:{} and mode {}: {}: not importing", dir, uid,
                    *gid, octal(maildrop::dir_mode), std::strerror(errno));
      return false;
    }
    spdlog::info("maildrop {}: created (owner uid {}, group gid {}, mode {})", dir, uid, *gid,
                 octal(maildrop::dir_mode));
    return true;
  }
  if (errno != EEXIST) {
    spdlog::error("maildrop {}: cannot create: {}: not importing", dir, std::strerror(errno));
    return false;
  }
  struct stat st {};
  if (::lstat(dir.c_str(), &st) != 0) {
    spdlog::error("maildrop {}: {}: not importing", dir, std::strerror(errno));
    return false;
  }
  if (auto why = maildrop::unsafe_mode(st.st_mode); !why.empty()) {
    spdlog::error("maildrop {}: refused: mode {} is unsafe: {}: not importing", dir,
                  octal(st.st_mode), why);
    return false;
  }
  if (st.st_uid != uid) {
    spdlog::error("maildrop {}: refused: owned by uid {}, not relayd's uid {}: not importing", dir,
                  st.st_uid, uid);
    return false;
  }
  if ((st.st_mode & 07777) != maildrop::dir_mode || st.st_gid != *gid) {
    if (::chown(dir.c_str(), uid, *gid) != 0 || ::chmod(dir.c_str(), maildrop::dir_mode) != 0) {
      spdlog::error("maildrop {}: cannot set group {} and mode {}: {}: not importing", dir, *gid,
                    octal(maildrop::dir_mode), std::strerror(errno));
      return false;
    }
    spdlog::info("maildrop {}: mode {} group {} set to mode {} group {}", dir, octal(st.st_mode),
                 st.st_gid, octal(maildrop::dir_mode), *gid);
  }
  return true;
}

struct maildrop_importer::state {
  state(asio::io_context& io_, const config& cfg_, queue::spool& spool_, scheduler& sched_,
        metrics& stats_, const alias_source& aliases_)
      : io(io_), timer(io_), events(io_), cfg(cfg_), spool(spool_), sched(sched_), stats(stats_),
        aliases(aliases_) {}
  ~state() {
    if (dir_fd >= 0) ::close(dir_fd);
  }
  asio::io_context& io;
  asio::steady_timer timer;                   // the wait between passes
  asio::posix::stream_descriptor events;      // inotify, when available
  const config& cfg;
  queue::spool& spool;
  scheduler& sched;
  metrics& stats;
  const alias_source& aliases;  // the table in use when a file is imported
  const dkim_service* dkim = nullptr;  // [[dkim]] signing (run_daemon's); null: none
  int dir_fd = -1;
  bool stopping = false;
  bool dirty = false;  // an event came since the current pass started
  std::uint64_t corrupt = 0;

  // Removes `name` from the directory and syncs the directory; "" or the error.
  std::string remove(const std::string& name) {
    if (::unlinkat(dir_fd, name.c_str(), 0) != 0 && errno != ENOENT) return std::strerror(errno);
    if (::fsync(dir_fd) != 0) return std::strerror(errno);
    return {};
  }

  // Moves `name` to corrupt/ (kept for the operator) and logs why.
  void set_aside(const std::string& name, const std::string& why, uid_t uid) {
    ++corrupt;
    if (::mkdirat(dir_fd, corrupt_dir, 0700) != 0 && errno != EEXIST) {
      spdlog::error("maildrop {}: malformed (uid {}): {}; cannot create {}/: {}; left in place",
                    name, uid, why, corrupt_dir, std::strerror(errno));
      return;
    }
    const std::string to = std::string(corrupt_dir) + "/" + name;
    if (::renameat(dir_fd, name.c_str(), dir_fd, to.c_str()) != 0 || ::fsync(dir_fd) != 0) {
      spdlog::error("maildrop {}: malformed (uid {}): {}; cannot move it to {}/: {}; left in place",
                    name, uid, why, corrupt_dir, std::strerror(errno));
      return;
    }
    spdlog::error("maildrop {}: malformed (uid {}): {}; moved to {}/{} ({} set aside since start)",
                  name, uid, why, cfg.local.maildrop, to, corrupt);
  }
};

namespace {

using state = maildrop_importer::state;

// The final drop names in the directory, oldest first (names start with the time).
std::vector<std::string> list_drops(const state& s) {
  std::vector<std::string> out;
  const int fd = ::openat(s.dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return out;
  DIR* d = ::fdopendir(fd);
  if (d == nullptr) {
    ::close(fd);
    return out;
  }
  while (const dirent* e = ::readdir(d)) {
    if (maildrop::is_drop_name(e->d_name)) out.emplace_back(e->d_name);
  }
  ::closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}

// Recorded names whose files are gone: a crash came after the unlink and
// before the name was forgotten.
void forget_stale(state& s) {
  std::vector<std::string> gone;
  for (auto& name : s.spool.drop_names(max_recorded_names)) {
    struct stat st {};
    if (::fstatat(s.dir_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 && errno == ENOENT)
      gone.push_back(std::move(name));
  }
  if (!gone.empty()) s.spool.forget_drops(std::move(gone), [](queue::result, std::size_t) {});
}

enum class imported { done, retry_later };

// Reads a whole file into `out`; "" or the error.
std::string read_all(int fd, std::size_t size, std::string& out) {
  out.resize(size);
  std::size_t got = 0;
  while (got < size) {
    const ssize_t n = ::pread(fd, out.data() + got, size - got, static_cast<off_t>(got));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return std::strerror(errno);
    if (n == 0) break;
    got += static_cast<std::size_t>(n);
  }
  out.resize(got);
  return {};
}

// A recorded name: the message is queued already, the file only has to go.
void remove_imported(state& s, const std::string& name, const std::string& id) {
  if (auto e = s.remove(name); !e.empty()) {
    spdlog::error("maildrop {}: already queued as {}, cannot remove: {}", name, id, e);
    return;
  }
  spdlog::info("maildrop {}: already queued as {}: removed", name, id);
  s.spool.forget_drops({name}, [](queue::result, std::size_t) {});
}

awaitable<imported> import_one(std::shared_ptr<state> s, const std::string& name) {
  struct fd_guard {
    int fd;
    ~fd_guard() {
      if (fd >= 0) ::close(fd);
    }
  } f{::openat(s->dir_fd, name.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)};
  if (f.fd < 0) {
    if (errno == ENOENT) co_return imported::done;  // gone meanwhile
    if (errno == ELOOP) {
      s->set_aside(name, "a symbolic link", 0);
      co_return imported::done;
    }
    spdlog::error("maildrop {}: cannot open: {}; will retry", name, std::strerror(errno));
    co_return imported::retry_later;
  }
  struct stat st {};
  if (::fstat(f.fd, &st) != 0) {
    spdlog::error("maildrop {}: cannot stat: {}; will retry", name, std::strerror(errno));
    co_return imported::retry_later;
  }
  if (auto id = s->spool.drop_imported(name)) {
    remove_imported(*s, name, *id);
    co_return imported::done;
  }
  if (!S_ISREG(st.st_mode)) {
    s->set_aside(name, "not a regular file", st.st_uid);
    co_return imported::done;
  }
  // A second link could carry another user's file in under their name.
  if (st.st_nlink != 1) {
    s->set_aside(name, "has " + std::to_string(st.st_nlink) + " links", st.st_uid);
    co_return imported::done;
  }
  const std::uint64_t max_message = s->cfg.smtp.max_message_size;
  const std::uint64_t max_file = max_message + maildrop::max_envelope_bytes;
  if (static_cast<std::uint64_t>(st.st_size) > max_file) {
    s->set_aside(name, "file of " + std::to_string(st.st_size) + " octets, more than " +
                           std::to_string(max_file),
                 st.st_uid);
    co_return imported::done;
  }
  std::string bytes;
  if (auto e = read_all(f.fd, static_cast<std::size_t>(st.st_size), bytes); !e.empty()) {
    spdlog::error("maildrop {}: cannot read: {}; will retry", name, e);
    co_return imported::retry_later;
  }
  auto parsed = maildrop::parse(bytes);
  bytes = {};
  if (!parsed) {
    s->set_aside(name, parsed.error(), st.st_uid);
    co_return imported::done;
  }
  if (max_message != 0 && parsed->message.size() > max_message) {
    s->set_aside(name, "message of " + std::to_string(parsed->message.size()) +
                           " octets exceeds smtp.max_message_size (" +
                           std::to_string(max_message) + ")",
                 st.st_uid);
    co_return imported::done;
  }

  smtp::envelope& env = parsed->envelope;
  smtp::local_identity who;
  who.uid = st.st_uid;
  who.gid = st.st_gid;
  who.user = user_name(st.st_uid);
  env.local = who;  // a local submission: aliases and masquerading as on the socket
  const local_addresses addresses(s->cfg, s->aliases.current());
  for (const auto& r : env.recipients) {
    // The socket refuses an unknown local user at RCPT; sendmail has already
    // exited 0 for this file, so it is kept aside for the operator instead.
    if (auto refused = addresses.check_recipient(r.address)) {
      s->set_aside(name, "recipient <" + r.address + ">: " + refused->to_string(), st.st_uid);
      co_return imported::done;
    }
  }
  queue::envelope_record rec;
  rec.id = s->spool.new_id();
  rec.arrival_us = queue::wall_clock_us();
  rec.sender = addresses.sender(env);
  rec.helo = "localhost";
  if (env.body == smtp::body_type::eight_bit_mime) rec.flags |= queue::flag_eight_bit;
  if (env.smtputf8) rec.flags |= queue::flag_smtputf8;
  rec.ret = env.ret;
  rec.envid = env.envid;
  rec.local = who;
  for (const auto& r : addresses.recipients(env))
    rec.recipients.push_back(queue::recipient{.address = r.address,
                                              .next_attempt_us = rec.arrival_us,
                                              .notify = r.notify,
                                              .orcpt = r.orcpt});
  const std::int64_t now_s = rec.arrival_us / 1'000'000;
  std::string body = smtp::build_message(
      addresses.message(env, std::move(parsed->message)), local_received(who, s->cfg.hostname, rec.id, now_s), now_s,
      smtp::make_message_id(rec.id, s->cfg.hostname));
  rec.flags |= requiretls_flags(env.requiretls, body);  // RFC 8689 4.1
  std::string dkim_log;  // signed on the signing pool, before the commit
  if (s->dkim && s->dkim->enabled())
    std::tie(body, dkim_log) = co_await from_callback<void(std::string, std::string)>(
        [&](auto done) { s->dkim->sign(std::move(body), rec.sender, std::move(done)); });
  rec.size = body.size();
  const std::string message_id = ", message-id=" + smtp::message_id_for_log(body);
  const std::string id = rec.id, sender = rec.sender;
  const std::size_t size = rec.size, nrcpt = rec.recipients.size();
  const std::int64_t arrival = rec.arrival_us;

  event_log* events = s->sched.events();  // [events]: stored with the message
  event_batch event_lines = events ? events->received(rec, body) : event_batch{};
  s->sched.arriving(id);  // dispatched only once told below, after "received"
  auto r = co_await from_callback<void(queue::result)>([&](auto done) {
    s->spool.enqueue_drop(name, std::move(rec), std::move(body), std::move(done),
                          events ? events->outbox_lines(event_lines) : std::vector<std::string>{});
  });
  if (r.code != queue::status::ok) {
    s->sched.arrival_failed(id);
    if (auto earlier = s->spool.drop_imported(name)) {
      remove_imported(*s, name, *earlier);
      co_return imported::done;
    }
    spdlog::error("maildrop {}: not queued: {}; will retry", name, r.detail);
    co_return imported::retry_later;
  }
  spdlog::info("{}: from=<{}>, size={}, nrcpt={}, client=maildrop uid={} user={}{}", id, sender,
               size, nrcpt, who.uid, who.user.empty() ? "-" : who.user,
               message_id + (dkim_log.empty() ? "" : ", dkim=" + dkim_log));
  if (events) events->committed(std::move(event_lines));
  s->stats.message_received();
  s->sched.notify_enqueued(arrival, id);
  if (auto e = s->remove(name); !e.empty()) {
    // Queued: the next pass finds the name recorded and removes the file.
    spdlog::error("maildrop {}: queued as {}, cannot remove: {}", name, id, e);
    co_return imported::done;
  }
  s->spool.forget_drops({name}, [](queue::result, std::size_t) {});
  co_return imported::done;
}

awaitable<void> import_loop(std::shared_ptr<state> s) {
  try {
    while (!s->stopping) {
      s->dirty = false;
      forget_stale(*s);
      for (const auto& name : list_drops(*s)) {
        if (s->stopping) co_return;
        if (co_await import_one(s, name) == imported::retry_later) break;
      }
      if (s->stopping) co_return;
      if (s->dirty) continue;
      s->timer.expires_after(rescan_interval);
      co_await s->timer.async_wait(use_tuple);
    }
  } catch (const std::exception& e) {
    spdlog::error("maildrop {}: importer stopped: {}", s->cfg.local.maildrop, e.what());
  }
}

// Wakes the import loop whenever a file is renamed into the directory or
// closed after writing; the events' content does not matter (a pass looks at
// every file).
awaitable<void> watch_loop(std::shared_ptr<state> s) {
  std::array<char, 4096> buf{};
  while (!s->stopping) {
    auto [ec, n] = co_await s->events.async_read_some(asio::buffer(buf), use_tuple);
    if (ec || s->stopping) co_return;
    s->dirty = true;
    s->timer.cancel();
  }
}

}  // namespace

maildrop_importer::maildrop_importer(asio::io_context& io, const config& cfg, queue::spool& spool,
                                     scheduler& sched, metrics& stats,
                                     const alias_source& aliases)
    : state_(std::make_shared<state>(io, cfg, spool, sched, stats, aliases)) {}

maildrop_importer::~maildrop_importer() = default;

void maildrop_importer::set_dkim(const dkim_service& d) { state_->dkim = &d; }

void maildrop_importer::start() {
  auto& s = *state_;
  const std::string& dir = s.cfg.local.maildrop;
  s.dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (s.dir_fd < 0) {
    spdlog::error("maildrop {}: cannot open: {}: not importing", dir, std::strerror(errno));
    return;
  }
  const int in = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (in >= 0 && ::inotify_add_watch(in, dir.c_str(), IN_MOVED_TO | IN_CLOSE_WRITE) >= 0) {
    s.events.assign(in);
    asio::co_spawn(s.io, watch_loop(state_), asio::detached);
  } else {
    spdlog::warn("maildrop {}: no inotify ({}): looking every {} s", dir, std::strerror(errno),
                 rescan_interval.count());
    if (in >= 0) ::close(in);
  }
  asio::co_spawn(s.io, import_loop(state_), asio::detached);
}

void maildrop_importer::stop() {
  state_->stopping = true;
  state_->timer.cancel();
  boost::system::error_code ignored;
  state_->events.cancel(ignored);
}

}  // namespace relayd
