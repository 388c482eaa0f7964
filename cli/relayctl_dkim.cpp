// Implements relayctl_dkim.hpp. The key is written so that no reader ever sees
// a partial file and no existing key is replaced: an O_EXCL|O_NOFOLLOW temporary
// file in the same directory, created 0600, written, fsynced and chowned, then
// renamed with RENAME_NOREPLACE and the directory fsynced. Any failure removes
// the temporary file and leaves what was there before.
#include "cli/relayctl_dkim.hpp"

#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <pwd.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>

#include "relayd/config.hpp"
#include "relayd/control_protocol.hpp"
#include "relayd/dkim_record.hpp"

namespace relayctl {
namespace {

namespace json = boost::json;
namespace proto = relayd::control_protocol;
namespace key = relayd::control_protocol::key;

constexpr const char* default_config = "/etc/relayd/relayd.toml";
constexpr const char* default_dir = "/etc/relayd/dkim";

struct keygen_args {
  std::string domain, selector;
  std::string algorithm = "rsa2048";
  std::string dir = default_dir;
};

std::optional<keygen_args> parse_keygen(const std::vector<std::string>& w, std::string& why) {
  keygen_args a;
  std::vector<std::string> positional;
  for (std::size_t i = 1; i < w.size(); ++i) {
    if (w[i] == "--algorithm" || w[i] == "--dir") {
      if (i + 1 >= w.size()) {
        why = w[i] + " needs a value";
        return std::nullopt;
      }
      std::string& target = w[i] == "--dir" ? a.dir : a.algorithm;
      target = w[++i];
    } else if (w[i].starts_with("--")) {
      why = "unknown option " + w[i];
      return std::nullopt;
    } else {
      positional.push_back(w[i]);
    }
  }
  if (positional.size() != 2) {
    why = "dkim keygen needs DOMAIN and SELECTOR";
    return std::nullopt;
  }
  a.domain = positional[0];
  a.selector = positional[1];
  if (!relayd::valid_domain(a.domain)) {
    why = "bad domain " + relayd::quoted(a.domain);
    return std::nullopt;
  }
  if (!relayd::valid_domain(a.selector)) {
    why = "bad selector " + relayd::quoted(a.selector);
    return std::nullopt;
  }
  if (a.algorithm != "rsa1024" && a.algorithm != "rsa2048" && a.algorithm != "rsa4096" &&
      a.algorithm != "ed25519") {
    why = "unknown algorithm " + relayd::quoted(a.algorithm) +
          " (rsa2048, rsa1024, rsa4096 or ed25519)";
    return std::nullopt;
  }
  if (a.dir.empty()) {
    why = "--dir must not be empty";
    return std::nullopt;
  }
  return a;
}

// The private key in PKCS#8 PEM; "" when OpenSSL fails.
std::string generate_pem(const std::string& algorithm) {
  EVP_PKEY* k = algorithm == "ed25519"
                    ? EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519")
                    : EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA",
                                        static_cast<size_t>(std::stoul(algorithm.substr(3))));
  if (k == nullptr) return {};
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key(k, &EVP_PKEY_free);
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), &BIO_free);
  if (!bio ||
      PEM_write_bio_PrivateKey(bio.get(), key.get(), nullptr, nullptr, 0, nullptr, nullptr) != 1)
    return {};
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio.get(), &data);
  return n > 0 ? std::string(data, static_cast<std::size_t>(n)) : std::string();
}

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "relayctl: %s\n", what.c_str());
  std::exit(1);
}

std::string errno_text(const std::string& what) {
  return what + ": " + std::strerror(errno);
}

// The configured run-as user's ids, when relayctl runs as root and one is set.
std::optional<std::pair<uid_t, gid_t>> key_owner(const std::optional<std::string>& config_path) {
  if (::geteuid() != 0) return std::nullopt;
  const std::string path = config_path.value_or(default_config);
  if (!config_path && !std::filesystem::exists(path)) return std::nullopt;
  auto cfg = relayd::load_config(path);
  if (!cfg) die(cfg.error());
  if (cfg->user.empty()) return std::nullopt;
  passwd pw{};
  passwd* found = nullptr;
  std::vector<char> buf(16384);
  if (::getpwnam_r(cfg->user.c_str(), &pw, buf.data(), buf.size(), &found) != 0 || !found)
    die(path + ": user: no user named " + relayd::quoted(cfg->user));
  return std::pair{pw.pw_uid, pw.pw_gid};
}

// Writes `pem` to `path` as described at the top; dies with the reason.
void write_key(const std::string& dir, const std::string& path, const std::string& pem,
               const std::optional<std::pair<uid_t, gid_t>>& owner) {
  std::error_code ec;
  if (!std::filesystem::exists(dir, ec)) {
    std::filesystem::create_directories(dir, ec);
    if (ec) die(dir + ": " + ec.message());
    ::chmod(dir.c_str(), 0750);
    if (owner && ::chown(dir.c_str(), 0, owner->second) != 0) die(errno_text(dir + ": chown"));
  }
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0)
    die(path + ": a key is already there (not overwritten; pick another selector to rotate)");
  unsigned char rnd[6];
  RAND_bytes(rnd, sizeof rnd);
  char suffix[16];
  std::snprintf(suffix, sizeof suffix, "%02x%02x%02x%02x%02x%02x", rnd[0], rnd[1], rnd[2], rnd[3],
                rnd[4], rnd[5]);
  const std::string tmp = path + ".tmp-" + suffix;
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) die(errno_text(tmp));
  auto fail = [&](const std::string& what) {
    const std::string msg = errno_text(what);
    ::close(fd);
    ::unlink(tmp.c_str());
    die(msg);
  };
  if (::fchmod(fd, 0600) != 0) fail(tmp + ": chmod");  // whatever the umask was
  for (std::size_t done = 0; done < pem.size();) {
    const ssize_t n = ::write(fd, pem.data() + done, pem.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) fail(tmp + ": write");
    done += static_cast<std::size_t>(n);
  }
  if (owner && ::fchown(fd, owner->first, owner->second) != 0) fail(tmp + ": chown");
  if (::fsync(fd) != 0) fail(tmp + ": fsync");
  if (::renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, path.c_str(), RENAME_NOREPLACE) != 0) {
    fail(path);
  }
  ::close(fd);
  if (const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

std::string field(const json::object& o, std::string_view k) {
  const auto* v = o.if_contains(k);
  return v && v->is_string() ? std::string(v->get_string()) : std::string();
}

}  // namespace

bool dkim_words_ok(const std::vector<std::string>& w) {
  auto bad = [](const std::string& why) {
    std::fprintf(stderr, "relayctl: %s\n", why.c_str());
    return false;
  };
  if (w.empty()) return bad("dkim needs keygen or check");
  if (w[0] == "check") {
    if (w.size() == 1 || (w.size() == 2 && w[1] == "--json")) return true;
    return bad("dkim check takes only --json");
  }
  if (w[0] == "keygen") {
    std::string why;
    if (parse_keygen(w, why)) return true;
    return bad(why);
  }
  return bad("unknown dkim command '" + w[0] + "'");
}

int dkim_keygen(const std::vector<std::string>& words,
                const std::optional<std::string>& config_path) {
  std::string why;
  const auto a = *parse_keygen(words, why);  // dkim_words_ok() accepted them
  const auto owner = key_owner(config_path);
  const std::string path =
      (std::filesystem::path(a.dir) / (a.domain + "." + a.selector + ".key")).string();
  const std::string pem = generate_pem(a.algorithm);
  if (pem.empty()) die("key generation failed (" + a.algorithm + ")");
  auto pub = relayd::dkim::public_key_from_pem(pem);
  if (!pub) die("generated key: " + pub.error());
  write_key(a.dir, path, pem, owner);
  std::fprintf(stderr,
               "relayctl: wrote %s (%s); publish this record, then add to relayd.toml:\n"
               "  [[dkim]]\n  domain = \"%s\"\n  selector = \"%s\"\n  key = \"%s\"\n",
               path.c_str(), a.algorithm.c_str(), a.domain.c_str(), a.selector.c_str(),
               path.c_str());
  std::printf("%s\n", relayd::dkim::zone_line(a.domain, a.selector, *pub).c_str());
  return 0;
}

int dkim_check(control_client& c, bool as_json) {
  c.send(proto::make_request(proto::verb::dkim_check));
  std::vector<json::object> entries;
  for (;;) {
    auto o = c.read_object();
    if (o.contains(key::ok)) {
      check_ok(o);
      break;
    }
    entries.push_back(std::move(o));
  }
  bool all_ok = true;
  if (!as_json && !entries.empty())
    std::printf("%-24s %-12s %-15s %s\n", "DOMAIN", "SELECTOR", "STATE", "KEY / REASON");
  for (const auto& e : entries) {
    const std::string state = field(e, key::state);
    all_ok = all_ok && state == "ok";
    if (as_json) {
      std::printf("%s\n", json::serialize(e).c_str());
      continue;
    }
    const std::string reason = field(e, key::reason);
    std::printf("%-24s %-12s %-15s %s\n", field(e, key::domain).c_str(),
                field(e, key::selector).c_str(), state.c_str(), field(e, key::key_file).c_str());
    if (!reason.empty()) std::printf("%-54s%s\n", "", reason.c_str());
  }
  if (entries.empty() && !as_json) std::printf("No [[dkim]] entries in relayd's configuration\n");
  return all_ok ? 0 : 1;
}

}  // namespace relayctl
