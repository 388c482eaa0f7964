// relayd::auth_users: the [auth] users file. Hashes are made here with libcrypt
// (yescrypt and sha512-crypt); malformed lines are reported with their number
// and never with the hash; verify() accepts exactly the right password.
#include "relayd/auth_users.hpp"

#include <crypt.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>
#include <string>

namespace relayd {
namespace {

std::string hash(const char* prefix, const std::string& password) {
  char setting[CRYPT_GENSALT_OUTPUT_SIZE];
  EXPECT_NE(crypt_gensalt_rn(prefix, 0, nullptr, 0, setting, sizeof setting), nullptr);
  crypt_data data{};
  const char* out = crypt_r(password.c_str(), setting, &data);
  EXPECT_NE(out, nullptr);
  return out;
}

const std::string alice = hash("$y$", "secret");  // yescrypt
const std::string bob = hash("$6$", "hunter2");   // sha512-crypt

std::string error_of(const std::string& text) {
  auto r = auth_users::parse(text, "users");
  EXPECT_FALSE(r.has_value()) << text;
  return r ? std::string() : r.error();
}

TEST(auth_users, parses_and_verifies) {
  const std::string text =
      "# relayd users\n\n  # indented comment\r\nalice:" + alice + "\r\nbob:" + bob + "\n   \n";
  auto users = auth_users::parse(text, "users");
  ASSERT_TRUE(users.has_value()) << users.error();
  EXPECT_EQ(users->size(), 2u);
  EXPECT_TRUE(users->verify("alice", "secret"));
  EXPECT_TRUE(users->verify("bob", "hunter2"));
  EXPECT_FALSE(users->verify("alice", "hunter2"));
  EXPECT_FALSE(users->verify("bob", "secret"));
  EXPECT_FALSE(users->verify("alice", "Secret"));
  EXPECT_FALSE(users->verify("alice", "secret "));
  EXPECT_FALSE(users->verify("alice", ""));
  EXPECT_FALSE(users->verify("Alice", "secret"));
  EXPECT_FALSE(users->verify("carol", "secret"));
  EXPECT_FALSE(users->verify("", ""));
  // A NUL ends a C string: "secret\0x" must not pass as "secret".
  EXPECT_FALSE(users->verify("alice", std::string_view("secret\0x", 8)));
}

TEST(auth_users, empty_file_has_no_users) {
  auto users = auth_users::parse("# nobody yet\n", "users");
  ASSERT_TRUE(users.has_value());
  EXPECT_EQ(users->size(), 0u);
  EXPECT_FALSE(users->verify("alice", "secret"));
}

TEST(auth_users, malformed_lines_are_reported_with_their_number) {
  const std::string ok = "alice:" + alice + "\n";
  EXPECT_EQ(error_of(ok + "bob\n"), "users:2: expected user:hash");
  EXPECT_EQ(error_of("\n\n:" + bob + "\n"), "users:3: empty user name");
  EXPECT_EQ(error_of("bob:\n"), "users:1: user \"bob\": empty hash");
  EXPECT_EQ(error_of("b ob:" + bob + "\n"), "users:1: space or control character in user name");
  EXPECT_EQ(error_of("bob:" + bob + ":18000:0:99999:7:::\n"),
            "users:1: user \"bob\": expected user:hash, found more fields");
  EXPECT_EQ(error_of(ok + "alice:" + bob + "\n"), "users:2: user \"alice\" is already on line 1");
  EXPECT_EQ(error_of("bob:" + bob + " \n"), "users:1: user \"bob\": space in hash");
  // Legacy and unknown methods.
  EXPECT_NE(error_of("bob:$1$saltsalt$qjQvXbVaG8XK9Bqr6E1V1.\n")
                .find("users:1: user \"bob\": legacy hash method"),
            std::string::npos);
  EXPECT_NE(error_of("bob:plaintext-password\n").find("users:1: user \"bob\": not a crypt(3) hash"),
            std::string::npos);
  EXPECT_NE(error_of("bob:$9$nope\n").find("not a crypt(3) hash"), std::string::npos);
}

TEST(auth_users, errors_never_show_the_hash) {
  const std::string e = error_of("alice:" + alice + "\nalice:" + bob + "\n");
  EXPECT_EQ(e.find(alice), std::string::npos);
  EXPECT_EQ(e.find(bob), std::string::npos);
  EXPECT_EQ(e.find("$y$"), std::string::npos);
}

TEST(auth_users, load_names_the_file) {
  char path[] = "/tmp/relayd_users_test_XXXXXX";
  const int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  close(fd);
  {
    std::ofstream out(path);
    out << "alice:" << alice << "\nbroken\n";
  }
  auto users = auth_users::load(path);
  ASSERT_FALSE(users.has_value());
  EXPECT_EQ(users.error(), std::string(path) + ":2: expected user:hash");
  {
    std::ofstream out(path);
    out << "alice:" << alice << "\n";
  }
  users = auth_users::load(path);
  ASSERT_TRUE(users.has_value()) << users.error();
  EXPECT_TRUE(users->verify("alice", "secret"));
  unlink(path);
  users = auth_users::load(path);
  ASSERT_FALSE(users.has_value());
  EXPECT_EQ(users.error(), std::string(path) + ": cannot open: No such file or directory");
}

}  // namespace
}  // namespace relayd
