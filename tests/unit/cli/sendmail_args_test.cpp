// sendmail's command line as programs use it: cron (-i -FCronDaemon -B8BITMIME
// -oem), PHP (-t -i), mailx (-i -- rcpt), git send-email (-i -f), mailq and
// newaliases by program name, and the errors that make exit status 64.
#include "cli/sendmail_args.hpp"

#include <gtest/gtest.h>

namespace sendmail {
namespace {

options parse(std::vector<std::string> args, std::string_view program = "/usr/sbin/sendmail") {
  auto o = parse_args(program, args);
  EXPECT_TRUE(o) << (o ? "" : o.error());
  return o ? *o : options{};
}

std::string error_of(std::vector<std::string> args) {
  auto o = parse_args("sendmail", args);
  EXPECT_FALSE(o);
  return o ? "" : o.error();
}

TEST(SendmailArgs, RecipientsAfterOptionsDefaultToDeliver) {
  auto o = parse({"-oi", "a@example.org", "b"});
  EXPECT_EQ(o.what, mode::deliver);
  EXPECT_TRUE(o.ignore_dots);
  EXPECT_EQ(o.recipients, (std::vector<std::string>{"a@example.org", "b"}));
}

TEST(SendmailArgs, CronsCommandLine) {
  // Debian cron: sendmail -i -FCronDaemon -B8BITMIME -oem user
  auto o = parse({"-i", "-FCronDaemon", "-B8BITMIME", "-oem", "root"});
  EXPECT_TRUE(o.ignore_dots);
  EXPECT_EQ(o.full_name, "CronDaemon");
  EXPECT_EQ(o.body, smtp::body_type::eight_bit_mime);
  EXPECT_EQ(o.recipients, std::vector<std::string>{"root"});
}

TEST(SendmailArgs, GroupedFlagsAndAttachedOrSeparateValues) {
  auto o = parse({"-ti", "-fbounce@example.org", "-F", "Web Server", "-r", "x@y.example"});
  EXPECT_TRUE(o.recipients_from_headers);
  EXPECT_TRUE(o.ignore_dots);
  EXPECT_EQ(o.sender, "x@y.example") << "the last of -f / -r wins";
  EXPECT_EQ(o.full_name, "Web Server");
  auto attached = parse({"-fme@example.org"});
  EXPECT_EQ(attached.sender, "me@example.org");
}

TEST(SendmailArgs, ModesByFlagAndByProgramName) {
  EXPECT_EQ(parse({"-bp"}).what, mode::list_queue);
  EXPECT_EQ(parse({"-bs"}).what, mode::smtp_stdio);
  EXPECT_EQ(parse({"-bi"}).what, mode::new_aliases);
  EXPECT_EQ(parse({"-I"}).what, mode::new_aliases);
  EXPECT_EQ(parse({"-q"}).what, mode::flush);
  EXPECT_EQ(parse({"-bm", "a"}).what, mode::deliver);
  EXPECT_EQ(parse({}, "/usr/bin/mailq").what, mode::list_queue);
  EXPECT_EQ(parse({}, "newaliases").what, mode::new_aliases);
  EXPECT_EQ(parse({"-bm", "a"}, "mailq").what, mode::deliver) << "a flag overrides the name";
}

TEST(SendmailArgs, DsnOptions) {
  auto o = parse({"-N", "success,delay", "-R", "hdrs", "-V", "env-42", "a"});
  EXPECT_EQ(o.notify, smtp::notify_success | smtp::notify_delay);
  EXPECT_EQ(o.ret, smtp::dsn_ret::headers);
  EXPECT_EQ(o.envid, "env-42");
  EXPECT_EQ(parse({"-NNEVER", "a"}).notify, smtp::notify_never);
  EXPECT_EQ(parse({"-Rfull", "a"}).ret, smtp::dsn_ret::full);
  EXPECT_NE(error_of({"-N", "sometimes", "a"}).find("-N"), std::string::npos);
  EXPECT_NE(error_of({"-R", "body", "a"}).find("-R"), std::string::npos);
  EXPECT_NE(error_of({"-V", "has space", "a"}).find("-V"), std::string::npos);
  EXPECT_NE(error_of({"-B", "binarymime", "a"}).find("-B"), std::string::npos);
}

TEST(SendmailArgs, UnknownOAndCapitalOOptionsAreIgnored) {
  auto o = parse({"-oem", "-odb", "-O", "DeliveryMode=b", "-o", "x", "a"});
  EXPECT_FALSE(o.ignore_dots);
  EXPECT_FALSE(o.requiretls);
  EXPECT_EQ(o.recipients, std::vector<std::string>{"a"});
}

TEST(SendmailArgs, CapitalORequireTls) {
  EXPECT_TRUE(parse({"-Orequiretls=yes", "a"}).requiretls);
  EXPECT_TRUE(parse({"-O", "RequireTLS=Yes", "a"}).requiretls);
  EXPECT_TRUE(parse({"-O", "requiretls", "a"}).requiretls);
  EXPECT_FALSE(parse({"-O", "requiretls=yes", "-O", "requiretls=no", "a"}).requiretls);
  EXPECT_NE(error_of({"-O", "requiretls=maybe", "a"}).find("requiretls"), std::string::npos);
}

TEST(SendmailArgs, DoubleDashEndsOptions) {
  auto o = parse({"-i", "--", "-weird@example.org"});
  EXPECT_EQ(o.recipients, std::vector<std::string>{"-weird@example.org"});
}

TEST(SendmailArgs, ConfigFile) {
  EXPECT_EQ(parse({"-C", "/tmp/r.toml", "a"}).config_path, "/tmp/r.toml");
  EXPECT_EQ(parse({"-C/tmp/r.toml", "a"}).config_path, "/tmp/r.toml");
}

TEST(SendmailArgs, Wait) {
  EXPECT_EQ(parse({"--wait", "a"}).wait, default_wait_timeout);
  EXPECT_EQ(parse({"--wait=90", "a"}).wait, std::chrono::seconds(90));
  EXPECT_EQ(parse({"--wait=2m", "a"}).wait, std::chrono::seconds(120));
  EXPECT_EQ(parse({"--wait=1h", "a"}).wait, std::chrono::seconds(3600));
  EXPECT_FALSE(parse({"a"}).wait);
  EXPECT_NE(error_of({"--wait=soon", "a"}).find("--wait"), std::string::npos);
  EXPECT_NE(error_of({"--wait=0", "a"}).find("--wait"), std::string::npos);
  EXPECT_NE(error_of({"--wait", "-bp"}).find("--wait"), std::string::npos);
}

TEST(SendmailArgs, UsageErrors) {
  EXPECT_NE(error_of({"-Z", "a"}).find("-Z"), std::string::npos);
  EXPECT_NE(error_of({"--frobnicate"}).find("--frobnicate"), std::string::npos);
  EXPECT_NE(error_of({"-bd"}).find("-bd"), std::string::npos) << "no daemon mode in sendmail";
  EXPECT_NE(error_of({"-f"}).find("needs a value"), std::string::npos);
}

}  // namespace
}  // namespace sendmail
