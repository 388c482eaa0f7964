// sendmail's user lookup without getpwuid: passwd(5) lines, and the getent
// fallback for a uid the file does not know (cli/sendmail_user).
#include "cli/sendmail_user.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>

namespace {

using sendmail::find_passwd_entry;
using sendmail::lookup_user;
using sendmail::user_lookup;

TEST(SendmailUser, FindsTheLineOfTheUidWithTheFirstGecosField) {
  const std::string text =
      "root:x:0:0:root:/root:/bin/bash\n"
      "www-data:x:33:33:www-data:/var/www:/usr/sbin/nologin\n"
      "ann:x:1000:1000:Ann Example,Room 4,,:/home/ann:/bin/bash\n";
  auto ann = find_passwd_entry(text, 1000);
  ASSERT_TRUE(ann);
  EXPECT_EQ(ann->login, "ann");
  EXPECT_EQ(ann->full_name, "Ann Example");
  auto www = find_passwd_entry(text, 33);
  ASSERT_TRUE(www);
  EXPECT_EQ(www->login, "www-data");
  EXPECT_FALSE(find_passwd_entry(text, 1001));
}

TEST(SendmailUser, SkipsMalformedAndNisLinesAndTakesTheFirstMatch) {
  const std::string text =
      "+::::::\n"
      "-bob:x:1002:1002:Bob:/home/bob:/bin/sh\n"
      "broken:x:1002\n"
      ":x:1002:1002:No name:/:/bin/sh\n"
      "notanumber:x:10o2:1002::/:/bin/sh\n"
      "bob:x:1002:1002::/home/bob:/bin/sh\r\n"
      "bob2:x:1002:1002:Second:/home/bob:/bin/sh\n";
  auto bob = find_passwd_entry(text, 1002);
  ASSERT_TRUE(bob);
  EXPECT_EQ(bob->login, "bob");
  EXPECT_EQ(bob->full_name, "");
  EXPECT_FALSE(find_passwd_entry("", 0));
  EXPECT_FALSE(find_passwd_entry("nouid:x::0::/:/bin/sh", 0));
}

class SendmailUserLookup : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/sendmail-user-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::system(("rm -rf '" + dir_ + "'").c_str()); }
  std::string write(const std::string& name, const std::string& text, bool executable = false) {
    const std::string path = dir_ + "/" + name;
    std::ofstream(path) << text;
    if (executable) ::chmod(path.c_str(), 0755);
    return path;
  }
  std::string dir_;
};

TEST_F(SendmailUserLookup, TheFileComesFirstAndGetentIsNotAsked) {
  user_lookup where;
  where.passwd_file = write("passwd", "svc:x:4242:4242:From the file:/:/bin/sh\n");
  // A getent that would answer otherwise: it must not be asked.
  where.getent = write("getent", "#!/bin/sh\necho 'other:x:4242:4242:From getent:/:/bin/sh'\n", true);
  auto found = lookup_user(4242, where);
  ASSERT_TRUE(found);
  EXPECT_EQ(found->login, "svc");
  EXPECT_EQ(found->full_name, "From the file");
}

TEST_F(SendmailUserLookup, AUidMissingFromTheFileIsAskedOfTheHostsGetent) {
  // uid 0 through the real getent (NSS in its own process) when the file
  // sendmail reads does not have it.
  if (::access("/usr/bin/getent", X_OK) != 0) GTEST_SKIP() << "/usr/bin/getent missing (libc-bin)";
  user_lookup where;
  where.passwd_file = write("passwd", "someone:x:1:1::/:/bin/sh\n");
  auto root = lookup_user(0, where);
  ASSERT_TRUE(root);
  EXPECT_EQ(root->login, "root");
}

TEST_F(SendmailUserLookup, GetentGetsTheUidAndAnEmptyEnvironment) {
  user_lookup where;
  where.passwd_file = dir_ + "/missing";
  const std::string seen = dir_ + "/seen";
  where.getent = write("getent",
                       "#!/bin/sh\n"
                       "echo \"$1 $2 env=$(env | grep -v '^PWD=' | grep -v '^SHLVL=' | "
                       "grep -v '^_=' | wc -l)\" > '" + seen + "'\n"
                       "echo 'dyn-7:x:61234:61234:Dynamic User:/:/usr/sbin/nologin'\n",
                       true);
  ::setenv("SENDMAIL_USER_TEST_LEAK", "1", 1);
  auto found = lookup_user(61234, where);
  ::unsetenv("SENDMAIL_USER_TEST_LEAK");
  ASSERT_TRUE(found);
  EXPECT_EQ(found->login, "dyn-7");
  EXPECT_EQ(found->full_name, "Dynamic User");
  std::ifstream in(seen);
  std::string line;
  std::getline(in, line);
  EXPECT_EQ(line, "passwd 61234 env=0");
}

TEST_F(SendmailUserLookup, AFailingOrWrongGetentGivesNoEntry) {
  user_lookup where;
  where.passwd_file = dir_ + "/missing";
  where.getent = write("fails", "#!/bin/sh\necho 'x:x:5:5:Nope:/:/bin/sh'\nexit 2\n", true);
  EXPECT_FALSE(lookup_user(5, where));
  where.getent = write("other", "#!/bin/sh\necho 'x:x:6:6:Other uid:/:/bin/sh'\n", true);
  EXPECT_FALSE(lookup_user(5, where));
  where.getent = dir_ + "/does-not-exist";
  EXPECT_FALSE(lookup_user(5, where));
  where.getent = "";
  EXPECT_FALSE(lookup_user(5, where));
}

}  // namespace
