// Drop files (format and promises in maildrop_file.hpp): the strict reader,
// the encoder and the durable writer. The reader walks the bytes with one
// cursor and names the first thing that is wrong; it never reads past the end
// and never trusts a count before the bytes behind it exist. The writer
// removes its temporary file on every failure.
#include "relayd/maildrop_file.hpp"

#include <fcntl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstring>
#include <unordered_set>

#include "smtp/address.hpp"

namespace relayd::maildrop {
namespace {

constexpr std::size_t max_envid_length = 100;  // RFC 3461 4.4
constexpr std::size_t max_orcpt_length = 500;  // RFC 3461 4.2
constexpr std::uint8_t all_notify_bits =
    smtp::notify_never | smtp::notify_success | smtp::notify_failure | smtp::notify_delay;

bool has_control(std::string_view s) {
  for (unsigned char c : s)
    if (c < 0x20 || c == 0x7f) return true;
  return false;
}

// Text that goes back into an SMTP parameter (ENVID, ORCPT): no controls, and
// UTF-8 only in an SMTPUTF8 message.
std::string check_param(std::string_view what, std::string_view v, std::size_t limit, bool utf8) {
  if (v.size() > limit) return std::string(what) + " longer than " + std::to_string(limit);
  if (has_control(v)) return std::string(what) + " holds a control character";
  if (!smtp::is_ascii(v) && (!utf8 || !smtp::is_valid_utf8(v)))
    return std::string(what) + (utf8 ? " is not valid UTF-8" : " is not ASCII (no smtputf8)");
  return {};
}

// "" when every line ends in CRLF and no CR or LF stands alone.
std::string check_line_endings(std::string_view m) {
  for (std::size_t i = 0; i < m.size(); ++i) {
    if (m[i] == '\r') {
      if (i + 1 >= m.size() || m[i + 1] != '\n')
        return "message has a bare CR at octet " + std::to_string(i);
      ++i;
    } else if (m[i] == '\n') {
      return "message has a bare LF at octet " + std::to_string(i);
    }
  }
  return {};
}

void put_string(std::string& out, std::string_view s) {
  out += std::to_string(s.size());
  out += ':';
  out += s;
}

std::string_view body_name(smtp::body_type b) {
  return b == smtp::body_type::eight_bit_mime ? "8bitmime" : "7bit";
}

std::string_view ret_name(smtp::dsn_ret r) {
  switch (r) {
    case smtp::dsn_ret::full: return "full";
    case smtp::dsn_ret::headers: return "hdrs";
    case smtp::dsn_ret::unspecified: break;
  }
  return "-";
}

// A cursor over the file; every read checks what is left.
class reader {
 public:
  explicit reader(std::string_view b) : bytes_(b) {}

  // The keyword, exactly.
  bool keyword(std::string_view k) {
    if (bytes_.substr(pos_, k.size()) != k) return fail("expected \"" + std::string(k) + "\"");
    pos_ += k.size();
    return true;
  }
  bool space() { return ch(' ', "a space"); }
  bool newline() {
    if (!ch('\n', "the end of the line")) return false;
    ++line_;
    return true;
  }
  bool number(std::uint64_t& v) {
    const char* b = bytes_.data() + pos_;
    const char* e = bytes_.data() + bytes_.size();
    if (b == e || *b < '0' || *b > '9') return fail("expected a number");
    if (*b == '0' && e - b > 1 && b[1] >= '0' && b[1] <= '9') return fail("number with a leading 0");
    auto [p, ec] = std::from_chars(b, e, v);
    if (ec != std::errc{}) return fail("number out of range");
    pos_ += static_cast<std::size_t>(p - b);
    return true;
  }
  // "<len>:<octets>"
  bool string(std::string& out) {
    std::uint64_t n = 0;
    if (!number(n) || !ch(':', "\":\" after a length")) return false;
    if (n > bytes_.size() - pos_) return fail("truncated: a string of " + std::to_string(n) +
                                              " octets, " + std::to_string(bytes_.size() - pos_) +
                                              " left");
    out.assign(bytes_.substr(pos_, n));
    pos_ += n;
    return true;
  }
  // One of `words`; its index in `index`.
  template <std::size_t N>
  bool choice(const std::string_view (&words)[N], std::size_t& index) {
    for (std::size_t i = 0; i < N; ++i) {
      const auto w = words[i];
      if (bytes_.substr(pos_, w.size()) == w && pos_ + w.size() < bytes_.size() &&
          bytes_[pos_ + w.size()] == '\n') {
        pos_ += w.size();
        index = i;
        return true;
      }
    }
    std::string list;
    for (auto w : words) list += (list.empty() ? "" : "|") + std::string(w);
    return fail("expected " + list);
  }
  bool raw(std::uint64_t n, std::string& out) {
    if (n > bytes_.size() - pos_)
      return fail("truncated in the message (" + std::to_string(bytes_.size() - pos_) + " of " +
                  std::to_string(n) + " octets)");
    out.assign(bytes_.substr(pos_, n));
    pos_ += n;
    return true;
  }
  bool at_end() const { return pos_ == bytes_.size(); }
  bool fail(std::string what) {
    if (error_.empty())
      error_ = "line " + std::to_string(line_) + ": " +
               (pos_ >= bytes_.size() ? "truncated: " + what : what);
    return false;
  }
  const std::string& error() const { return error_; }

 private:
  bool ch(char c, std::string_view what) {
    if (pos_ >= bytes_.size() || bytes_[pos_] != c) return fail("expected " + std::string(what));
    ++pos_;
    return true;
  }
  std::string_view bytes_;
  std::size_t pos_ = 0;
  std::size_t line_ = 1;
  std::string error_;
};

std::string errno_text(std::string_view what, const std::filesystem::path& p, int err) {
  return std::string(what) + " " + p.string() + ": " + std::strerror(err);
}

// A hex rendering of `v` in `digits` digits.
std::string hex(std::uint64_t v, int digits, bool upper) {
  const char* d = upper ? "0123456789ABCDEF" : "0123456789abcdef";
  std::string s(static_cast<std::size_t>(digits), '0');
  for (int i = digits - 1; i >= 0; --i, v >>= 4) s[static_cast<std::size_t>(i)] = d[v & 0xf];
  return s;
}

bool all_of(std::string_view s, bool (*pred)(char)) {
  if (s.empty()) return false;
  for (char c : s)
    if (!pred(c)) return false;
  return true;
}

}  // namespace

std::expected<void, std::string> check(const smtp::envelope& env, std::string_view message) {
  const bool utf8 = env.smtputf8;
  if (!env.sender.empty()) {
    if (auto ok = smtp::check_mailbox(env.sender, utf8); !ok)
      return std::unexpected("sender <" + env.sender + ">: " +
                             std::string(smtp::to_string(ok.error())));
  }
  if (env.recipients.empty()) return std::unexpected(std::string("no recipients"));
  for (const auto& r : env.recipients) {
    if (auto ok = smtp::check_mailbox(r.address, utf8); !ok)
      return std::unexpected("recipient <" + r.address + ">: " +
                             std::string(smtp::to_string(ok.error())));
    if ((r.notify & ~all_notify_bits) != 0 ||
        ((r.notify & smtp::notify_never) != 0 && r.notify != smtp::notify_never))
      return std::unexpected("recipient <" + r.address + ">: bad NOTIFY bits " +
                             std::to_string(r.notify));
    if (auto e = check_param("ORCPT", r.orcpt, max_orcpt_length, utf8); !e.empty())
      return std::unexpected("recipient <" + r.address + ">: " + e);
    if (!r.orcpt.empty() && r.orcpt.find(';') == std::string::npos)
      return std::unexpected("recipient <" + r.address + ">: ORCPT has no address type");
  }
  if (auto e = check_param("ENVID", env.envid, max_envid_length, false); !e.empty())
    return std::unexpected(e);
  if (auto e = check_line_endings(message); !e.empty()) return std::unexpected(e);
  return {};
}

std::string encode(const smtp::envelope& env, std::string_view message) {
  std::string out;
  out.reserve(message.size() + 256 + env.recipients.size() * 64);
  out += magic;
  out += ' ';
  out += env.requiretls ? '2' : '1';
  out += "\nsender ";
  put_string(out, env.sender);
  out += "\nbody ";
  out += body_name(env.body);
  out += "\nsmtputf8 ";
  out += env.smtputf8 ? '1' : '0';
  if (env.requiretls) out += "\nrequiretls 1";
  out += "\nret ";
  out += ret_name(env.ret);
  out += "\nenvid ";
  put_string(out, env.envid);
  out += "\nrcpts ";
  out += std::to_string(env.recipients.size());
  out += '\n';
  for (const auto& r : env.recipients) {
    out += "rcpt ";
    out += std::to_string(r.notify);
    out += ' ';
    put_string(out, r.address);
    out += ' ';
    put_string(out, r.orcpt);
    out += '\n';
  }
  out += "message ";
  out += std::to_string(message.size());
  out += '\n';
  out += message;
  out += "end\n";
  return out;
}

std::expected<dropped, std::string> parse(std::string_view bytes) {
  reader in(bytes);
  dropped d;
  smtp::envelope& env = d.envelope;
  std::uint64_t version = 0;
  auto fail = [&]() { return std::unexpected(in.error()); };
  if (!in.keyword(magic)) return std::unexpected(std::string("not a relayd drop file"));
  if (!in.space() || !in.number(version) || !in.newline()) return fail();
  if (version < 1 || version > format_version)
    return std::unexpected("unknown drop file version " + std::to_string(version) +
                           " (this relayd reads 1 to " + std::to_string(format_version) + ")");
  if (!in.keyword("sender") || !in.space() || !in.string(env.sender) || !in.newline())
    return fail();
  static constexpr std::string_view bodies[] = {"7bit", "8bitmime"};
  static constexpr std::string_view flags[] = {"0", "1"};
  static constexpr std::string_view rets[] = {"-", "full", "hdrs"};
  std::size_t i = 0;
  if (!in.keyword("body") || !in.space() || !in.choice(bodies, i) || !in.newline()) return fail();
  env.body = i == 1 ? smtp::body_type::eight_bit_mime : smtp::body_type::seven_bit;
  if (!in.keyword("smtputf8") || !in.space() || !in.choice(flags, i) || !in.newline())
    return fail();
  env.smtputf8 = i == 1;
  if (version >= 2) {
    if (!in.keyword("requiretls") || !in.space() || !in.choice(flags, i) || !in.newline())
      return fail();
    env.requiretls = i == 1;
  }
  if (!in.keyword("ret") || !in.space() || !in.choice(rets, i) || !in.newline()) return fail();
  env.ret = i == 1 ? smtp::dsn_ret::full : i == 2 ? smtp::dsn_ret::headers
                                                  : smtp::dsn_ret::unspecified;
  if (!in.keyword("envid") || !in.space() || !in.string(env.envid) || !in.newline()) return fail();
  std::uint64_t count = 0;
  if (!in.keyword("rcpts") || !in.space() || !in.number(count) || !in.newline()) return fail();
  if (count == 0) return std::unexpected(std::string("no recipients"));
  // No reserve(count): the count is only believed as far as lines follow.
  std::unordered_set<std::string> seen;
  for (std::uint64_t n = 0; n < count; ++n) {
    smtp::envelope_recipient r;
    std::uint64_t notify = 0;
    if (!in.keyword("rcpt") || !in.space() || !in.number(notify) || !in.space() ||
        !in.string(r.address) || !in.space() || !in.string(r.orcpt) || !in.newline())
      return fail();
    if (notify > 0xff) return std::unexpected("bad NOTIFY bits " + std::to_string(notify));
    r.notify = static_cast<std::uint8_t>(notify);
    if (!seen.insert(r.address).second)
      return std::unexpected("recipient <" + r.address + "> twice");
    env.recipients.push_back(std::move(r));
  }
  std::uint64_t size = 0;
  if (!in.keyword("message") || !in.space() || !in.number(size) || !in.newline() ||
      !in.raw(size, d.message))
    return fail();
  if (!in.keyword("end") || !in.newline()) return fail();
  if (!in.at_end()) return std::unexpected(std::string("bytes after \"end\""));
  if (auto ok = check(env, d.message); !ok) return std::unexpected(ok.error());
  return d;
}

bool is_drop_name(std::string_view name) {
  const auto a = name.find('.');
  if (a == std::string_view::npos) return false;
  const auto b = name.find('.', a + 1);
  if (b == std::string_view::npos) return false;
  const auto t = name.substr(0, a), p = name.substr(a + 1, b - a - 1), r = name.substr(b + 1);
  return t.size() == 16 && all_of(t, [](char c) { return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F'); }) &&
         p.size() <= 10 && all_of(p, [](char c) { return c >= '0' && c <= '9'; }) &&
         r.size() == 16 && all_of(r, [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

std::string make_name() {
  const auto now = std::chrono::duration_cast<std::chrono::microseconds>(
                       std::chrono::system_clock::now().time_since_epoch())
                       .count();
  std::uint64_t rnd = 0;
  auto* p = reinterpret_cast<unsigned char*>(&rnd);
  std::size_t got = 0;
  while (got < sizeof rnd) {
    const ssize_t n = ::getrandom(p + got, sizeof rnd - got, 0);
    if (n > 0) {
      got += static_cast<std::size_t>(n);
    } else if (n < 0 && errno != EINTR) {
      // No entropy source: the clock's nanoseconds and the stack address still
      // make the name unique with the PID; unpredictability is lost only here.
      rnd ^= static_cast<std::uint64_t>(
                  std::chrono::steady_clock::now().time_since_epoch().count()) ^
              reinterpret_cast<std::uintptr_t>(&rnd);
      break;
    }
  }
  return hex(static_cast<std::uint64_t>(now), 16, true) + "." + std::to_string(::getpid()) + "." +
         hex(rnd, 16, false);
}

std::string unsafe_mode(mode_t mode) {
  if (!S_ISDIR(mode)) return "not a directory";
  if ((mode & (S_IWGRP | S_IWOTH)) != 0 && (mode & S_ISVTX) == 0)
    return "writable by group or others without the sticky bit (anyone could delete or replace "
           "another user's file)";
  return {};
}

std::expected<std::string, std::string> write(const std::filesystem::path& dir,
                                              const smtp::envelope& env,
                                              std::string_view message) {
  if (auto ok = check(env, message); !ok) return std::unexpected(ok.error());
  const std::string bytes = encode(env, message);

  // A group member of a 1730 directory may search it but not read it: then the
  // descriptor serves the *at() calls only, and syncfs() replaces its fsync.
  bool readable = true;
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (dfd < 0 && errno == EACCES) {
    readable = false;
    dfd = ::open(dir.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  }
  if (dfd < 0) return std::unexpected(errno_text("cannot open drop directory", dir, errno));
  struct stat st {};
  if (::fstat(dfd, &st) != 0) {
    const int err = errno;
    ::close(dfd);
    return std::unexpected(errno_text("cannot stat drop directory", dir, err));
  }
  if (auto why = unsafe_mode(st.st_mode); !why.empty()) {
    ::close(dfd);
    return std::unexpected("drop directory " + dir.string() + " is unsafe: " + why);
  }

  std::string name, tmp;
  int fd = -1;
  for (int attempt = 0; attempt < 8 && fd < 0; ++attempt) {
    name = make_name();
    tmp = "." + name + ".tmp";
    fd = ::openat(dfd, tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                  file_mode);
    if (fd < 0 && errno != EEXIST) break;
  }
  if (fd < 0) {
    const int err = errno;
    ::close(dfd);
    return std::unexpected(errno_text("cannot create a file in", dir, err));
  }
  bool renamed = false;
  // A file whose sync failed is removed too: the caller will try again, and
  // must not leave a second copy behind.
  auto give_up = [&](std::string_view what) {
    const int err = errno;
    ::close(fd);
    ::unlinkat(dfd, renamed ? name.c_str() : tmp.c_str(), 0);
    ::close(dfd);
    return std::unexpected(std::string(what) + " " + (dir / tmp).string() + ": " +
                           std::strerror(err));
  };
  // The umask must not narrow the mode: the daemon reads through the group.
  if (::fchmod(fd, file_mode) != 0) return give_up("cannot set the mode of");
  for (std::size_t done = 0; done < bytes.size();) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return give_up("cannot write");
    done += static_cast<std::size_t>(n);
  }
  if (::fdatasync(fd) != 0) return give_up("cannot sync");
  if (::renameat(dfd, tmp.c_str(), dfd, name.c_str()) != 0) return give_up("cannot rename");
  renamed = true;
  const int synced = readable ? ::fsync(dfd) : ::syncfs(fd);
  if (synced != 0) return give_up("cannot sync the directory of");
  ::close(fd);
  ::close(dfd);
  return name;
}

}  // namespace relayd::maildrop
