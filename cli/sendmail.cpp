// sendmail, mailq, newaliases: the host's MTA entry points, a thin client of
// relayd. It reads relayd's config (-C FILE, $RELAYD_CONFIG, or
// /etc/relayd/relayd.toml) for [local] socket/domain, [control] socket and
// hostname, and by mode: -bm (default) submits the message on stdin through
// the local socket (sendmail_submit), -bs runs smtp::server_session on
// stdin/stdout and submits each message the same way, -bp (mailq) prints the
// queue like relayctl -p, -q flushes like relayctl -f, -bi (newaliases) checks
// the aliases file and has relayd reload it (cli/newaliases). Exit status per sysexits.h: 0 only after the daemon's 250 to
// DATA, 64 usage, 65 bad input, 69 refused (5xx), 75 temporary; every error
// is one line "sendmail: ..." on stderr.
#include <sys/random.h>
#include <sysexits.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "cli/control_client.hpp"
#include "cli/newaliases.hpp"
#include "cli/relayctl_print.hpp"
#include "cli/sendmail_args.hpp"
#include "cli/sendmail_fallback.hpp"
#include "cli/sendmail_message.hpp"
#include "cli/sendmail_submit.hpp"
#include "cli/sendmail_user.hpp"
#include "cli/sendmail_wait.hpp"
#include "relayd/config.hpp"
#include "smtp/address.hpp"
#include "relayd/control_protocol.hpp"
#include "smtp/server_session.hpp"

namespace {

constexpr const char* default_config = "/etc/relayd/relayd.toml";

int fail(int status, const std::string& what) {
  std::fprintf(stderr, "sendmail: %s\n", what.c_str());
  return status;
}

int usage_error(const std::string& what) {
  fail(EX_USAGE, what);
  std::fprintf(stderr,
               "usage: sendmail [-t] [-i] [-f SENDER] [-F NAME] [-N DSN] [-R full|hdrs] "
               "[-V ENVID] [-B 7BIT|8BITMIME] [-C CONFIG] [--wait[=TIMEOUT]] [RECIPIENT...]\n"
               "       sendmail -bp | -bs | -bi | -q    (mailq, newaliases)\n");
  return EX_USAGE;
}

// The config file's settings; a missing default file means the defaults.
std::expected<relayd::config, std::string> read_config(const sendmail::options& o) {
  std::string path = default_config;
  bool required = false;
  if (o.config_path) {
    path = *o.config_path;
    required = true;
  } else if (const char* env = std::getenv("RELAYD_CONFIG"); env && *env) {
    path = env;
    required = true;
  }
  if (!required && !std::filesystem::exists(path)) return relayd::parse_config("", "(defaults)");
  return relayd::load_config(path);
}

struct user_info {
  std::string login;  // "" when the uid has no passwd entry
  std::string full_name;
};

user_info current_user() {
  user_info u;
  if (auto entry = sendmail::lookup_user(::getuid())) {
    u.login = std::move(entry->login);
    u.full_name = std::move(entry->full_name);
  }
  if (u.login.empty()) u.login = "uid" + std::to_string(::getuid());
  return u;
}

std::string unique_message_id(const std::string& hostname) {
  using namespace std::chrono;
  const auto us = duration_cast<microseconds>(system_clock::now().time_since_epoch()).count();
  // getrandom(2), not std::random_device: its set-up probes the CPU (cpuid),
  // which a virtual machine traps, and sendmail runs once per message.
  std::uint32_t random = 0;
  if (::getrandom(&random, sizeof random, GRND_NONBLOCK) != sizeof random)
    random = static_cast<std::uint32_t>(us * 2654435761u);
  char buf[96];
  std::snprintf(buf, sizeof buf, "<%llx.%x.%08x@", static_cast<unsigned long long>(us),
                static_cast<unsigned>(::getpid()), static_cast<unsigned>(random));
  return buf + hostname + ">";
}

std::int64_t now_seconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

bool write_stdout(std::string_view s) {
  while (!s.empty()) {
    ssize_t n = ::write(STDOUT_FILENO, s.data(), s.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    s.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

sendmail::submit_settings submit_settings_of(const relayd::config& cfg) {
  sendmail::submit_settings s;
  s.socket_path = cfg.local.socket;
  s.helo = cfg.hostname;
  return s;
}

std::string reply_line(const smtp::reply& r) { return r.to_string(); }

// ---- -bm --------------------------------------------------------------------

int deliver(const relayd::config& cfg, const sendmail::options& o) {
  using namespace sendmail;
  const user_info me = current_user();
  std::string sender;
  if (o.sender) {
    sender = *o.sender == "<>" ? "" : qualify(*o.sender, cfg.local.domain);
  } else {
    sender = qualify(me.login, cfg.local.domain);
  }
  if (!sender.empty())
    if (auto ok = check_address(sender); !ok) return fail(EX_DATAERR, "sender: " + ok.error());

  input_reader in(o.ignore_dots);
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(STDIN_FILENO, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail(EX_IOERR, std::string("reading the message: ") + std::strerror(errno));
    if (n == 0 || !in.put(std::string_view(buf, static_cast<std::size_t>(n)))) break;
  }
  in.finish();

  header_fixes fixes;
  fixes.extract_recipients = o.recipients_from_headers;
  fixes.from_address = sender;
  fixes.full_name = o.full_name ? *o.full_name : me.full_name;
  fixes.now = now_seconds();
  fixes.message_id = unique_message_id(cfg.hostname);
  prepared_message msg = prepare_message(in.take(), fixes);

  // Arguments may be address lists themselves ("a@x, Name <b@y>"); -t adds the
  // header recipients to them, as Postfix does.
  std::vector<std::string> given;
  for (const auto& arg : o.recipients)
    for (auto& a : parse_address_list(arg)) given.push_back(std::move(a));
  for (auto& a : msg.header_recipients) given.push_back(std::move(a));
  submission env;
  env.sender = sender;
  env.ret = o.ret;
  env.envid = o.envid;
  env.requiretls = o.requiretls;
  env.body = o.body ? *o.body
             : has_8bit(msg.content) ? smtp::body_type::eight_bit_mime
                                     : smtp::body_type::seven_bit;
  std::set<std::string> seen;
  for (const auto& a : given) {
    std::string q = qualify(a, cfg.local.domain);
    if (auto ok = check_address(q); !ok) return fail(EX_DATAERR, "recipient: " + ok.error());
    if (!seen.insert(q).second) continue;
    env.recipients.push_back({q, o.notify, {}});
    env.smtputf8 = env.smtputf8 || !smtp::is_ascii(q);
  }
  env.smtputf8 = env.smtputf8 || !smtp::is_ascii(env.sender);
  if (env.recipients.empty())
    return fail(EX_DATAERR, o.recipients_from_headers
                                ? "no recipients in the arguments or in To:, Cc: or Bcc:"
                                : "no recipients given (name them, or use -t)");

  const submit_result r = submit(submit_settings_of(cfg), env, msg.content);
  switch (r.status) {
    case submit_status::queued:
      if (o.verbose) std::fprintf(stderr, "sendmail: %s\n", reply_line(r.reply).c_str());
      if (o.wait) return wait_for_delivery(cfg.control.socket, r.queue_id, *o.wait);
      return EX_OK;
    case submit_status::temporary:
      return fail(EX_TEMPFAIL, "relayd answered " + reply_line(r.reply) + " to " + r.detail);
    case submit_status::permanent:
      return fail(EX_UNAVAILABLE, "relayd refused the message: " + reply_line(r.reply) +
                                      " (to " + r.detail + ")");
    case submit_status::unreachable:
      return maildrop_fallback(cfg, env, msg.content, r.detail, o.verbose);
    case submit_status::unknown:
      return fail(EX_TEMPFAIL, "lost the connection to relayd after the message was sent (" +
                                   r.detail + "); it may have been queued");
  }
  return EX_SOFTWARE;
}

// ---- -bs --------------------------------------------------------------------

// The message as the in-process session built it, without the Received: field
// it prepended: the daemon adds its own, with the peer credentials it verified.
std::string without_first_field(std::string m) {
  std::size_t end = 0;
  do {
    auto nl = m.find('\n', end);
    end = nl == std::string::npos ? m.size() : nl + 1;
  } while (end < m.size() && (m[end] == ' ' || m[end] == '\t'));
  m.erase(0, end);
  return m;
}

int smtp_stdio(const relayd::config& cfg) {
  using namespace sendmail;
  const user_info me = current_user();
  smtp::session_options so;
  so.hostname = cfg.hostname;
  so.max_message_size = cfg.smtp.max_message_size;
  so.max_recipients = cfg.smtp.max_recipients;
  so.max_header_size = cfg.smtp.max_header_size;
  so.max_errors = cfg.smtp.max_errors;
  so.qualify_domain = cfg.local.domain;
  so.now = now_seconds;
  // An ID for the session's own Received: field, which is dropped before the
  // message goes to relayd (the reply to DATA carries relayd's queue ID).
  unsigned counter = 0;
  so.new_id = [&counter] { return "bs" + std::to_string(::getpid()) + "x" + std::to_string(++counter); };
  smtp::client_info client;
  client.ip = "";
  client.relay_allowed = true;
  client.local = smtp::local_identity{::getuid(), ::getgid(), ::getpid(), me.login, {}, {}};
  smtp::server_session session(std::move(so), std::move(client));
  session.start();

  char buf[65536];
  std::string_view pending;
  for (;;) {
    if (!write_stdout(session.output())) return EX_IOERR;
    session.clear_output();
    if (session.closed()) return EX_OK;
    if (pending.empty()) {
      ssize_t n = ::read(STDIN_FILENO, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return EX_OK;  // the client went away; an open transaction is dropped
      pending = std::string_view(buf, static_cast<std::size_t>(n));
    }
    auto step = session.feed(pending);
    pending.remove_prefix(step.consumed);
    if (step.what == smtp::server_session::event::close) {
      write_stdout(session.output());
      return EX_OK;
    }
    if (step.what != smtp::server_session::event::message) continue;

    const submission& env = session.message_envelope();
    const std::string content = without_first_field(session.take_message());
    const submit_result r = submit(submit_settings_of(cfg), env, content);
    switch (r.status) {
      case submit_status::queued:
      case submit_status::temporary:
      case submit_status::permanent:
        // relayd's own reply, so the client sees relayd's queue ID or refusal.
        // message_failed() sends whatever reply it is given and ends the transaction.
        session.message_failed(r.reply);
        break;
      case submit_status::unreachable:
        if (maildrop_fallback(cfg, env, content, r.detail, false) == EX_OK)
          session.message_queued();
        else
          session.message_failed({451, "4.3.0", "relayd is not running (mail not sent)"});
        break;
      case submit_status::unknown:
        session.message_failed(
            {451, "4.3.0", "Connection to relayd lost after the message; it may have been queued"});
        break;
    }
  }
}

}  // namespace

#if defined(__SANITIZE_ADDRESS__)
// Sanitizer builds only. A set-group-id program (or one started with changed
// ids) is not dumpable, and LeakSanitizer cannot inspect such a process: it
// stops with a fatal error at exit. Leaks are checked by the unit tests.
extern "C" const char* __asan_default_options() { return "detect_leaks=0"; }
#endif

int main(int argc, char** argv) {
  // Set-group-id to the maildrop group: give it up before reading anything.
  if (!sendmail::drop_group_privilege()) return fail(EX_OSERR, "cannot give up the drop group");
  std::vector<std::string> args(argv + 1, argv + argc);
  auto opts = sendmail::parse_args(argc > 0 ? argv[0] : "sendmail", args);
  if (!opts) return usage_error(opts.error());
  auto cfg = read_config(*opts);
  if (!cfg) return fail(EX_CONFIG, cfg.error());

  namespace verb = relayd::control_protocol::verb;
  switch (opts->what) {
    case sendmail::mode::list_queue: {
      relayctl::control_client c(cfg->control.socket);
      return relayctl::print_queue(c);
    }
    case sendmail::mode::flush: {
      relayctl::control_client c(cfg->control.socket);
      return relayctl::queue_action(c, verb::flush, "");
    }
    case sendmail::mode::new_aliases:
      return newaliases_main(*cfg, opts->verbose);
    case sendmail::mode::smtp_stdio:
      return smtp_stdio(*cfg);
    case sendmail::mode::deliver:
      return deliver(*cfg, *opts);
  }
  return EX_SOFTWARE;
}
