// The drop file format and writer (relayd/maildrop_file.hpp): what is written
// reads back field for field; every truncation and every malformed variant is
// refused with a reason; the writer leaves exactly one 0640 file with a final
// name, and nothing when it refuses.
#include "relayd/maildrop_file.hpp"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

namespace {

namespace md = relayd::maildrop;

smtp::envelope sample_envelope() {
  smtp::envelope e;
  e.sender = "www-data@host.example";
  e.body = smtp::body_type::eight_bit_mime;
  e.smtputf8 = false;
  e.ret = smtp::dsn_ret::headers;
  e.envid = "backup-2026-12-02";
  e.recipients.push_back({"root@example.org", 0, ""});
  e.recipients.push_back({"ops@example.org",
                          static_cast<std::uint8_t>(smtp::notify_success | smtp::notify_failure),
                          "rfc822;admin@example.org"});
  return e;
}

const std::string sample_message =
    "Subject: nightly backup\r\nFrom: www-data@host.example\r\n\r\nline 1\r\n.\r\n\r\nend\r\n";

class temp_dir {
 public:
  temp_dir() {
    std::string t = (std::filesystem::temp_directory_path() / "maildrop-XXXXXX").string();
    path_ = ::mkdtemp(t.data());
  }
  ~temp_dir() { std::filesystem::remove_all(path_); }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

std::vector<std::string> names_in(const std::filesystem::path& dir) {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(dir))
    out.push_back(e.path().filename().string());
  return out;
}

TEST(maildrop_file, round_trip_keeps_every_field) {
  const auto env = sample_envelope();
  auto d = md::parse(md::encode(env, sample_message));
  ASSERT_TRUE(d) << d.error();
  EXPECT_EQ(d->envelope.sender, env.sender);
  EXPECT_EQ(d->envelope.recipients, env.recipients);
  EXPECT_EQ(d->envelope.body, env.body);
  EXPECT_EQ(d->envelope.smtputf8, env.smtputf8);
  EXPECT_EQ(d->envelope.ret, env.ret);
  EXPECT_EQ(d->envelope.envid, env.envid);
  EXPECT_EQ(d->message, sample_message);
  EXPECT_FALSE(d->envelope.local) << "the submitter never comes from the file";
}

TEST(maildrop_file, requiretls_is_version_2_and_round_trips) {
  auto env = sample_envelope();
  const std::string plain = md::encode(env, sample_message);
  EXPECT_TRUE(plain.starts_with("relayd-maildrop 1\n")) << "readable by a relayd of version 1";
  EXPECT_FALSE(md::parse(plain)->envelope.requiretls);
  env.requiretls = true;
  const std::string bytes = md::encode(env, sample_message);
  EXPECT_TRUE(bytes.starts_with("relayd-maildrop 2\n"));
  EXPECT_NE(bytes.find("\nrequiretls 1\n"), std::string::npos);
  auto d = md::parse(bytes);
  ASSERT_TRUE(d) << d.error();
  EXPECT_TRUE(d->envelope.requiretls);
  EXPECT_EQ(d->envelope.recipients, env.recipients);
  // Version 2 without its line, or version 1 with it, is malformed.
  std::string no_line = bytes;
  no_line.erase(no_line.find("requiretls 1\n"), 13);
  EXPECT_FALSE(md::parse(no_line));
  EXPECT_FALSE(md::parse("relayd-maildrop 1\n" + bytes.substr(bytes.find('\n') + 1)));
}

TEST(maildrop_file, null_sender_utf8_and_empty_message_round_trip) {
  smtp::envelope e;
  e.smtputf8 = true;
  e.recipients.push_back({"jörg@bücher.example", smtp::notify_never, ""});
  auto d = md::parse(md::encode(e, ""));
  ASSERT_TRUE(d) << d.error();
  EXPECT_EQ(d->envelope.sender, "");
  EXPECT_EQ(d->envelope.recipients, e.recipients);
  EXPECT_TRUE(d->envelope.smtputf8);
  EXPECT_EQ(d->envelope.ret, smtp::dsn_ret::unspecified);
  EXPECT_EQ(d->message, "");
}

TEST(maildrop_file, every_truncation_is_refused) {
  const std::string bytes = md::encode(sample_envelope(), sample_message);
  for (std::size_t n = 0; n < bytes.size(); ++n) {
    auto d = md::parse(std::string_view(bytes).substr(0, n));
    EXPECT_FALSE(d) << "accepted the first " << n << " of " << bytes.size() << " octets";
    if (!d) {
      EXPECT_FALSE(d.error().empty());
    }
  }
}

TEST(maildrop_file, every_single_octet_change_in_the_envelope_part_is_refused_or_consistent) {
  // Changing any octet of the envelope part either is refused or (a digit of a
  // NOTIFY value, a letter of an address) still parses to a valid envelope:
  // never a crash, never an accepted file with trailing or missing octets.
  const std::string bytes = md::encode(sample_envelope(), sample_message);
  const std::size_t head = bytes.find("message ");
  for (std::size_t i = 0; i < head; ++i) {
    for (char c : {'\0', '\n', 'x', '9', ' ', ':'}) {
      std::string b = bytes;
      if (b[i] == c) continue;
      b[i] = c;
      auto d = md::parse(b);
      if (d) {
        EXPECT_TRUE(md::check(d->envelope, d->message)) << i;
        EXPECT_EQ(d->message, sample_message) << i;
      }
    }
  }
}

TEST(maildrop_file, malformed_files_are_refused_with_a_reason) {
  const std::string good = md::encode(sample_envelope(), sample_message);
  auto refused = [](std::string bytes, std::string_view reason) {
    auto d = md::parse(bytes);
    EXPECT_FALSE(d) << bytes;
    if (!d) {
      EXPECT_NE(d.error().find(reason), std::string::npos) << d.error();
    }
  };
  refused("", "not a relayd drop file");
  refused("From: x\r\n\r\nhello\r\n", "not a relayd drop file");
  refused("relayd-maildrop 3\n" + good.substr(good.find('\n') + 1), "unknown drop file version 3");
  refused("relayd-maildrop 01\n", "leading 0");
  refused(good + "x", "bytes after \"end\"");
  refused(good.substr(0, good.size() - 4) + "END\n", "expected \"end\"");
  std::string b = good;
  b.replace(b.find("rcpts 2"), 7, "rcpts 3");
  refused(b, "expected \"rcpt\"");
  b = good;
  b.replace(b.find("rcpts 2"), 7, "rcpts 0");
  refused(b, "no recipients");
  b = good;
  b.replace(b.find("rcpts 2"), 7, "rcpts 99999999999999999999");
  refused(b, "out of range");
  b = good;
  b.replace(b.find("body 8bitmime"), 13, "body binary");
  refused(b, "expected 7bit|8bitmime");
  b = good;
  b.replace(b.find("ret hdrs"), 8, "ret HDRS");
  refused(b, "expected -|full|hdrs");
  const auto m = b.find("message ");
  b = good;
  b.replace(m, b.find('\n', m) - m, "message " + std::to_string(sample_message.size() + 1));
  refused(b, "expected \"end\"");
  b = good;
  b.replace(m, b.find('\n', m) - m, "message 999999");
  refused(b, "truncated in the message");

  // Content checks: what the SMTP server would refuse, or could smuggle.
  auto env = sample_envelope();
  refused(md::encode(env, "a\nb\r\n"), "bare LF");
  refused(md::encode(env, "a\rb\r\n"), "bare CR");
  env.sender = "bad sender@x";
  refused(md::encode(env, ""), "sender <bad sender@x>");
  env = sample_envelope();
  env.recipients[0].address = "a@b\r\nRCPT TO:<evil@x>";
  refused(md::encode(env, ""), "recipient <");
  env = sample_envelope();
  env.recipients[1] = env.recipients[0];
  refused(md::encode(env, ""), "twice");
  env = sample_envelope();
  env.recipients[0].notify = smtp::notify_never | smtp::notify_success;
  refused(md::encode(env, ""), "NOTIFY");
  env = sample_envelope();
  env.envid = "x\r\nQUIT";
  refused(md::encode(env, ""), "ENVID holds a control character");
  env = sample_envelope();
  env.recipients[0].address = "jörg@example.org";  // UTF-8 without smtputf8
  refused(md::encode(env, ""), "recipient <");
}

TEST(maildrop_file, names) {
  const auto a = md::make_name(), b = md::make_name();
  EXPECT_NE(a, b);
  EXPECT_TRUE(md::is_drop_name(a)) << a;
  EXPECT_FALSE(md::is_drop_name("." + a + ".tmp"));
  EXPECT_FALSE(md::is_drop_name(a + ".bad"));
  EXPECT_FALSE(md::is_drop_name("corrupt"));
  EXPECT_FALSE(md::is_drop_name("0123456789ABCDEF..0123456789abcdef"));
  EXPECT_FALSE(md::is_drop_name("0123456789abcdef.1.0123456789abcdef"));
  EXPECT_TRUE(md::is_drop_name("0123456789ABCDEF.1.0123456789abcdef"));
}

TEST(maildrop_file, unsafe_modes) {
  EXPECT_EQ(md::unsafe_mode(S_IFDIR | 01730), "");
  EXPECT_EQ(md::unsafe_mode(S_IFDIR | 0700), "");
  EXPECT_EQ(md::unsafe_mode(S_IFDIR | 01777), "");
  EXPECT_NE(md::unsafe_mode(S_IFDIR | 0777), "");
  EXPECT_NE(md::unsafe_mode(S_IFDIR | 0730), "");
  EXPECT_NE(md::unsafe_mode(S_IFREG | 0600), "");
}

TEST(maildrop_file, write_leaves_one_0640_file_that_parses) {
  temp_dir dir;
  const mode_t old = ::umask(077);  // the mode must not depend on the caller's umask
  auto name = md::write(dir.path(), sample_envelope(), sample_message);
  ::umask(old);
  ASSERT_TRUE(name) << name.error();
  EXPECT_TRUE(md::is_drop_name(*name));
  EXPECT_EQ(names_in(dir.path()), std::vector<std::string>{*name});
  struct stat st {};
  ASSERT_EQ(::stat((dir.path() / *name).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0640u);
  std::ifstream f(dir.path() / *name, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(f)), {});
  auto d = md::parse(bytes);
  ASSERT_TRUE(d) << d.error();
  EXPECT_EQ(d->message, sample_message);
}

TEST(maildrop_file, write_refuses_bad_input_and_unsafe_directories_leaving_nothing) {
  temp_dir dir;
  auto env = sample_envelope();
  env.recipients.clear();
  auto r = md::write(dir.path(), env, sample_message);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().find("no recipients"), std::string::npos);
  r = md::write(dir.path(), sample_envelope(), "bare\nLF");
  ASSERT_FALSE(r);
  EXPECT_TRUE(names_in(dir.path()).empty());

  ASSERT_EQ(::chmod(dir.path().c_str(), 0777), 0);
  r = md::write(dir.path(), sample_envelope(), sample_message);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().find("unsafe"), std::string::npos) << r.error();
  EXPECT_TRUE(names_in(dir.path()).empty());

  r = md::write(dir.path() / "missing", sample_envelope(), sample_message);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().find("cannot open drop directory"), std::string::npos) << r.error();
}

}  // namespace
