// The users who may AUTH to relayd: the [auth] users file of "user:hash" lines
// with crypt(3) hashes (yescrypt "$y$", sha512-crypt "$6$", ...), read at start
// and on SIGHUP. Load errors name the file and line and never show a hash.
// verify() is slow on purpose (it runs the hash) and safe to call from any
// thread; it never says whether the user exists, and never logs.
#pragma once

#include <expected>
#include <string>
#include <string_view>
#include <unordered_map>

namespace relayd {

class auth_users {
 public:
  // "PATH: cannot open: ..." or "PATH:LINE: what is wrong" (the caller adds the key).
  static std::expected<auth_users, std::string> load(const std::string& path);
  // The same from text; `origin` names the source in messages.
  static std::expected<auth_users, std::string> parse(std::string_view text,
                                                      std::string_view origin);

  // True when `password` hashes to the user's hash (compared in constant time).
  // An unknown user costs a hash too, so timing does not tell who exists.
  bool verify(std::string_view user, std::string_view password) const;
  std::size_t size() const { return users_.size(); }

 private:
  std::unordered_map<std::string, std::string> users_;  // name -> crypt(3) hash
  std::string decoy_;  // a user's hash, hashed against for unknown users
};

}  // namespace relayd
