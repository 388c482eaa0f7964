// Implements auth_users.hpp. The file format: one "user:hash" per line; empty
// lines and lines starting with '#' are skipped; a CR before the LF is ignored.
// Each hash must be one libcrypt accepts as strong (crypt_checksalt: yescrypt,
// gost-yescrypt, scrypt, bcrypt, sha512-crypt, sha256-crypt); DES and MD5
// hashes are refused. Passwords go through crypt_r with a fresh crypt_data per
// call, and the copies are wiped afterwards.
#include "relayd/auth_users.hpp"

#include <crypt.h>
#include <openssl/crypto.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>

#include "relayd/read_file.hpp"

namespace relayd {
namespace {

// A user name as it may appear in a message: printable ASCII, else escaped.
std::string shown(std::string_view s) {
  std::string out = "\"";
  for (unsigned char c : s.substr(0, 64)) {
    if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
      out += static_cast<char>(c);
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    }
  }
  if (s.size() > 64) out += "...";
  return out + "\"";
}

bool blank(std::string_view line) {
  return line.find_first_not_of(" \t") == std::string_view::npos;
}

}  // namespace

std::expected<auth_users, std::string> auth_users::parse(std::string_view text,
                                                         std::string_view origin) {
  auth_users result;
  std::unordered_map<std::string, std::size_t> line_of;
  std::size_t number = 0;
  while (!text.empty()) {
    ++number;
    const std::size_t eol = text.find('\n');
    std::string_view line = text.substr(0, eol);
    text.remove_prefix(eol == std::string_view::npos ? text.size() : eol + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (blank(line)) continue;
    if (line[line.find_first_not_of(" \t")] == '#') continue;

    const auto fail = [&](const std::string& what) {
      return std::unexpected(std::string(origin) + ":" + std::to_string(number) + ": " + what);
    };
    const std::size_t colon = line.find(':');
    if (colon == std::string_view::npos) return fail("expected user:hash");
    const std::string_view user = line.substr(0, colon);
    const std::string_view hash = line.substr(colon + 1);
    if (user.empty()) return fail("empty user name");
    for (unsigned char c : user) {
      if (c <= 0x20 || c == 0x7f) return fail("space or control character in user name");
    }
    if (hash.empty()) return fail("user " + shown(user) + ": empty hash");
    if (hash.find(':') != std::string_view::npos)
      return fail("user " + shown(user) + ": expected user:hash, found more fields");
    for (unsigned char c : hash) {
      if (c <= 0x20 || c == 0x7f) return fail("user " + shown(user) + ": space in hash");
    }
    const std::string hash_text(hash);
    // Without a "$id$" prefix it is DES (legacy) or, more likely, a plain password.
    const int check = hash.front() == '$' ? crypt_checksalt(hash_text.c_str()) : CRYPT_SALT_INVALID;
    switch (check) {
      case CRYPT_SALT_OK:
        break;
      case CRYPT_SALT_METHOD_LEGACY:
        return fail("user " + shown(user) +
                    ": legacy hash method (DES or MD5) is too weak; use yescrypt ($y$) or "
                    "sha512-crypt ($6$)");
      default:
        return fail("user " + shown(user) +
                    ": not a crypt(3) hash (use yescrypt $y$ or sha512-crypt $6$, e.g. from "
                    "`mkpasswd -m yescrypt` or `openssl passwd -6`)");
    }
    const auto [it, added] = line_of.emplace(std::string(user), number);
    if (!added)
      return fail("user " + shown(user) + " is already on line " + std::to_string(it->second));
    if (result.decoy_.empty()) result.decoy_ = hash_text;
    result.users_.emplace(std::string(user), hash_text);
  }
  return result;
}

std::expected<auth_users, std::string> auth_users::load(const std::string& path) {
  auto read = read_file(path);
  if (!read) return std::unexpected(read.error());
  std::string& text = *read;
  auto users = parse(text, path);
  OPENSSL_cleanse(text.data(), text.size());
  return users;
}

bool auth_users::verify(std::string_view user, std::string_view password) const {
  const auto it = users_.find(std::string(user));
  const bool known = it != users_.end();
  const std::string& hash = known ? it->second : decoy_;
  if (hash.empty()) return false;  // no users at all
  // crypt_r takes a C string: a NUL inside the password cannot match.
  const bool nul = password.find('\0') != std::string_view::npos;
  std::string phrase(password);
  auto data = std::make_unique<crypt_data>();  // zeroed, as crypt_r requires
  const char* out = crypt_r(phrase.c_str(), hash.c_str(), data.get());
  const bool same = out != nullptr && out[0] != '*' && std::strlen(out) == hash.size() &&
                    CRYPTO_memcmp(out, hash.data(), hash.size()) == 0;
  OPENSSL_cleanse(phrase.data(), phrase.size());
  OPENSSL_cleanse(data.get(), sizeof *data);
  return same && known && !nul;
}

}  // namespace relayd
