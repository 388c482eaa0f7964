// Tests for relayd/inbound_local: the systemd unit from /proc/PID/cgroup text,
// the process description from a fake /proc, SO_PEERCRED on a socket pair, the
// socket file (mode, parent directory, stale file, a live one, not a socket),
// and the [local] policy, both alone and as the session's check_sender hook
// with the Received: field it writes for a local submitter.
#include "relayd/inbound_local.hpp"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

#include "relayd/config.hpp"
#include "smtp/server_session.hpp"

namespace relayd {
namespace {

namespace fs = std::filesystem;

// ---- unit_from_cgroup ------------------------------------------------------

TEST(inbound_local_cgroup, system_service) {
  EXPECT_EQ(unit_from_cgroup("0::/system.slice/php8.2-fpm.service\n"), "php8.2-fpm.service");
}

TEST(inbound_local_cgroup, login_session_scope) {
  EXPECT_EQ(unit_from_cgroup("0::/user.slice/user-1000.slice/session-3.scope\n"),
            "session-3.scope");
}

TEST(inbound_local_cgroup, last_unit_wins_and_sub_cgroups_are_skipped) {
  // A user manager's app scope below user@1000.service: the innermost unit.
  EXPECT_EQ(unit_from_cgroup("0::/user.slice/user-1000.slice/user@1000.service/app.slice/"
                             "app-org.gnome.Terminal.slice/vte-spawn-1.scope"),
            "vte-spawn-1.scope");
  // A service that made its own sub-cgroup (no trailing newline either).
  EXPECT_EQ(unit_from_cgroup("0::/system.slice/cron.service/payload"), "cron.service");
}

TEST(inbound_local_cgroup, none) {
  EXPECT_EQ(unit_from_cgroup("0::/\n"), "");
  EXPECT_EQ(unit_from_cgroup("0::/system.slice\n"), "");
  EXPECT_EQ(unit_from_cgroup(""), "");
  EXPECT_EQ(unit_from_cgroup("garbage\n::\n0:/x.service\n"), "");
  // A container's own hierarchy with no systemd units in it.
  EXPECT_EQ(unit_from_cgroup("4:memory:/process_api/bf787d\n0::/\n"), "");
}

TEST(inbound_local_cgroup, cgroup_v1_uses_the_systemd_hierarchy) {
  EXPECT_EQ(unit_from_cgroup("12:cpu,cpuacct:/system.slice/other.service\n"
                             "1:name=systemd:/system.slice/cron.service\n"),
            "cron.service");
  // Hybrid: the unified line is empty, the name=systemd one says it.
  EXPECT_EQ(unit_from_cgroup("1:name=systemd:/system.slice/smartd.service\n0::/\n"),
            "smartd.service");
  // The unified hierarchy wins when both name a unit.
  EXPECT_EQ(
      unit_from_cgroup("1:name=systemd:/system.slice/a.service\n0::/system.slice/b.service\n"),
      "b.service");
}

// ---- describe_process / peer_identity -----------------------------------------

struct temp_dir {
  temp_dir() {
    char tmpl[] = "/tmp/inbound-local-test-XXXXXX";
    path = ::mkdtemp(tmpl);
  }
  ~temp_dir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string path;
};

TEST(inbound_local_identity, reads_exe_and_cgroup_from_proc) {
  temp_dir proc;
  fs::create_directories(proc.path + "/4242");
  fs::create_symlink("/usr/bin/php8.2", proc.path + "/4242/exe");
  std::ofstream(proc.path + "/4242/cgroup") << "0::/system.slice/php8.2-fpm.service\n";
  const auto who = describe_process(0, 0, 4242, proc.path);
  EXPECT_EQ(who.uid, 0u);
  EXPECT_EQ(who.pid, 4242);
  EXPECT_EQ(who.user, "root");
  EXPECT_EQ(who.executable, "/usr/bin/php8.2");
  EXPECT_EQ(who.unit, "php8.2-fpm.service");
}

TEST(inbound_local_identity, gone_process_and_unknown_uid_leave_fields_empty) {
  temp_dir proc;
  const auto who = describe_process(3999999, 3999999, 4243, proc.path);
  EXPECT_EQ(who.uid, 3999999u);
  EXPECT_EQ(who.gid, 3999999u);
  EXPECT_EQ(who.user, "");
  EXPECT_EQ(who.executable, "");
  EXPECT_EQ(who.unit, "");
}

TEST(inbound_local_identity, peer_credentials_of_a_socket_pair) {
  int fds[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
  const auto who = peer_identity(fds[0]);
  ::close(fds[0]);
  ::close(fds[1]);
  ASSERT_TRUE(who.has_value()) << who.error();
  EXPECT_EQ(who->uid, ::getuid());
  EXPECT_EQ(who->gid, ::getgid());
  EXPECT_EQ(who->pid, ::getpid());
  EXPECT_EQ(who->executable, fs::read_symlink("/proc/self/exe").string());
  EXPECT_EQ(identity_text(*who).rfind("local (uid " + std::to_string(::getuid()), 0), 0u);
}

TEST(inbound_local_identity, not_a_socket_fails) {
  EXPECT_FALSE(peer_identity(-1).has_value());
}

// ---- open_local_socket -----------------------------------------------------

bool connects(const std::string& path) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  std::strncpy(sa.sun_path, path.c_str(), sizeof(sa.sun_path) - 1);
  const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) == 0;
  ::close(fd);
  return ok;
}

mode_t mode_of(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(::lstat(path.c_str(), &st), 0) << path;
  return st.st_mode & 07777;
}

config with_socket(const std::string& path) {
  config c;
  c.local.socket = path;
  return c;
}

TEST(inbound_local_socket, mode_0666_in_a_new_0755_directory_removed_at_stop) {
  temp_dir d;
  const config cfg = with_socket(d.path + "/run/relayd/submit.sock");
  const mode_t old = ::umask(077);  // the socket and its directory ignore the umask
  auto fd = open_local_socket(cfg);
  ::umask(old);
  ASSERT_TRUE(fd.has_value()) << fd.error();
  EXPECT_EQ(mode_of(cfg.local.socket), 0666u);
  EXPECT_EQ(mode_of(d.path + "/run/relayd"), 0755u);
  EXPECT_EQ(mode_of(d.path + "/run"), 0755u);
  EXPECT_TRUE(connects(cfg.local.socket));
  ::close(*fd);
  EXPECT_TRUE(remove_local_socket(cfg));
  EXPECT_FALSE(fs::exists(cfg.local.socket));
  EXPECT_TRUE(remove_local_socket(cfg));  // already gone: nothing to do
}

TEST(inbound_local_socket, stale_socket_is_replaced_live_one_refused) {
  temp_dir d;
  const config cfg = with_socket(d.path + "/submit.sock");
  auto first = open_local_socket(cfg);
  ASSERT_TRUE(first.has_value()) << first.error();
  // Someone accepts on it: a second daemon must not steal it.
  auto second = open_local_socket(cfg);
  ASSERT_FALSE(second.has_value());
  EXPECT_NE(second.error().find("local.socket: " + cfg.local.socket), std::string::npos);
  EXPECT_NE(second.error().find("another process"), std::string::npos) << second.error();
  // The first one dies without removing its file: the file is stale.
  ::close(*first);
  EXPECT_TRUE(fs::exists(cfg.local.socket));
  auto third = open_local_socket(cfg);
  ASSERT_TRUE(third.has_value()) << third.error();
  EXPECT_TRUE(connects(cfg.local.socket));
  ::close(*third);
}

TEST(inbound_local_socket, a_file_that_is_not_a_socket_is_left_alone) {
  temp_dir d;
  const config cfg = with_socket(d.path + "/submit.sock");
  std::ofstream(cfg.local.socket) << "precious";
  auto fd = open_local_socket(cfg);
  ASSERT_FALSE(fd.has_value());
  EXPECT_NE(fd.error().find("not a socket"), std::string::npos) << fd.error();
  std::ifstream in(cfg.local.socket);
  std::string kept;
  in >> kept;
  EXPECT_EQ(kept, "precious");
}

TEST(inbound_local_socket, path_too_long) {
  auto fd = open_local_socket(with_socket("/tmp/" + std::string(120, 'x') + "/submit.sock"));
  ASSERT_FALSE(fd.has_value());
  EXPECT_NE(fd.error().find("too long"), std::string::npos) << fd.error();
}

// ---- check_local_sender ------------------------------------------------------

config policy(std::string_view local_section) {
  auto c = parse_config("hostname = \"host.example.org\"\n[local]\n" + std::string(local_section),
                        "test.toml");
  EXPECT_TRUE(c.has_value()) << c.error();
  return c.value_or(config{});
}

smtp::local_identity user(std::uint32_t uid, std::string name) {
  smtp::local_identity who;
  who.uid = who.gid = uid;
  who.pid = 100;
  who.user = std::move(name);
  return who;
}

std::string verdict(const config& c, const smtp::local_identity& who, std::string_view sender) {
  auto r = check_local_sender(c, who, sender);
  return r ? r->to_string() : "ok";
}

TEST(inbound_local_policy, no_policy_allows_everyone_everything) {
  const config c = policy("");
  EXPECT_EQ(verdict(c, user(33, "www-data"), "anything@anywhere.test"), "ok");
  EXPECT_EQ(verdict(c, user(33, "www-data"), ""), "ok");
  EXPECT_EQ(verdict(c, user(4000, ""), "x@y.test"), "ok");
}

TEST(inbound_local_policy, allowed_users) {
  const config c = policy("allowed_users = [\"www-data\", \"backup\"]\n");
  EXPECT_EQ(verdict(c, user(33, "www-data"), "a@b.test"), "ok");
  EXPECT_EQ(verdict(c, user(65534, "nobody"), "a@b.test"),
            "550 5.7.1 user nobody is not allowed to submit mail");
  EXPECT_EQ(verdict(c, user(4000, ""), "a@b.test"),
            "550 5.7.1 user uid 4000 is not allowed to submit mail");
  EXPECT_EQ(verdict(c, user(0, "root"), "a@b.test"), "ok");  // root always may
}

TEST(inbound_local_policy, senders) {
  const config c = policy(
      "domain = \"example.org\"\n"
      "[local.senders]\n"
      "www-data = [\"app@example.org\", \"*@billing.example.org\"]\n"
      "root = [\"root@example.org\"]\n");
  const auto www = user(33, "www-data");
  EXPECT_EQ(verdict(c, www, "app@example.org"), "ok");
  EXPECT_EQ(verdict(c, www, "app@EXAMPLE.org"), "ok");  // domains are case-insensitive
  EXPECT_EQ(verdict(c, www, "invoice@billing.example.org"), "ok");
  EXPECT_EQ(verdict(c, www, "app"), "ok");  // bare: qualified with [local] domain first
  EXPECT_EQ(verdict(c, www, "ceo@example.org"),
            "553 5.7.1 user www-data may not send as <ceo@example.org>");
  EXPECT_EQ(verdict(c, www, "www-data"),
            "553 5.7.1 user www-data may not send as <www-data@example.org>");
  EXPECT_EQ(verdict(c, www, "x@sub.billing.example.org"),
            "553 5.7.1 user www-data may not send as <x@sub.billing.example.org>");
  EXPECT_EQ(verdict(c, www, ""), "553 5.7.1 user www-data may not send as <>");
  // Listed root: its patterns, and the null sender.
  EXPECT_EQ(verdict(c, user(0, "root"), ""), "ok");
  EXPECT_EQ(verdict(c, user(0, "root"), "root"), "ok");
  EXPECT_EQ(verdict(c, user(0, "root"), "other@example.org"),
            "553 5.7.1 user root may not send as <other@example.org>");
  // Not listed: any sender.
  EXPECT_EQ(verdict(c, user(34, "backup"), "ceo@example.org"), "ok");
  EXPECT_EQ(verdict(c, user(34, "backup"), ""), "ok");
}

// ---- the policy inside the session, and the Received: field ------------------

struct session_run {
  std::string output;
  std::string message;
};

session_run submit(const config& c, const smtp::local_identity& who, const std::string& dialogue) {
  smtp::session_options o;
  o.hostname = "relay.test";
  o.new_id = [] { return std::string("0123456789ABCDEF"); };
  o.now = [] { return std::int64_t{1700000000}; };
  o.qualify_domain = c.local.domain;
  o.check_sender = [&](std::string_view s) { return check_local_sender(c, who, s); };
  smtp::client_info client;
  client.relay_allowed = true;
  client.local = who;
  smtp::server_session s(std::move(o), client);
  s.start();
  session_run run;
  std::string_view in = dialogue;
  while (!in.empty()) {
    auto st = s.feed(in);
    in.remove_prefix(st.consumed);
    if (st.what == smtp::server_session::event::message) {
      run.message = s.take_message();
      s.message_queued();
    }
    if (st.what == smtp::server_session::event::close) break;
  }
  run.output = s.output();
  return run;
}

TEST(inbound_local_session, refused_user_gets_550_at_mail_and_nothing_is_queued) {
  const config c = policy("allowed_users = [\"backup\"]\n");
  auto run = submit(c, user(33, "www-data"),
                    "EHLO x\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nDATA\r\n"
                    "Subject: s\r\n\r\nbody\r\n.\r\nQUIT\r\n");
  EXPECT_NE(run.output.find("550 5.7.1 user www-data is not allowed to submit mail\r\n"),
            std::string::npos)
      << run.output;
  EXPECT_EQ(run.message, "");
}

TEST(inbound_local_session, sender_policy_at_mail_and_received_names_the_user) {
  const config c = policy("[local.senders]\nwww-data = [\"app@example.org\"]\n");
  auto run = submit(c, user(33, "www-data"),
                    "EHLO x\r\nMAIL FROM:<ceo@example.org>\r\nMAIL FROM:<app@example.org>\r\n"
                    "RCPT TO:<c@d.test>\r\nDATA\r\nSubject: s\r\n\r\nbody\r\n.\r\nQUIT\r\n");
  EXPECT_NE(run.output.find("553 5.7.1 user www-data may not send as <ceo@example.org>\r\n"
                            "250 2.1.0 Ok\r\n"),
            std::string::npos)
      << run.output;
  EXPECT_EQ(run.message.rfind("Received: from local (uid 33, www-data)\r\n\tby relay.test (relayd) "
                              "with ESMTP id 0123456789ABCDEF\r\n\tfor <c@d.test>; ",
                              0),
            0u)
      << run.message;
}

}  // namespace
}  // namespace relayd
