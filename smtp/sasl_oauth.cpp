// Implements sasl_oauth.hpp: the byte layout of the XOAUTH2 and OAUTHBEARER
// initial client responses.
#include "smtp/sasl_oauth.hpp"

namespace smtp {

std::string xoauth2_response(std::string_view user, std::string_view token) {
  std::string out;
  out.reserve(user.size() + token.size() + 24);
  out += "user=";
  out += user;
  out += "\x01" "auth=Bearer ";
  out += token;
  out += "\x01\x01";
  return out;
}

std::string oauthbearer_response(std::string_view user, std::string_view token) {
  std::string out = "n,a=";
  for (char c : user) {
    if (c == ',')
      out += "=2C";
    else if (c == '=')
      out += "=3D";
    else
      out.push_back(c);
  }
  out += ",\x01" "auth=Bearer ";
  out += token;
  out += "\x01\x01";
  return out;
}

}  // namespace smtp
