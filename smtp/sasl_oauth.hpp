// The client responses of the two OAuth2 SASL mechanisms a smarthost may offer,
// before base64: XOAUTH2 (Google's and Microsoft's: "user=U^Aauth=Bearer T^A^A")
// and OAUTHBEARER (RFC 7628: GS2 header "n,a=U," then "^Aauth=Bearer T^A^A").
// Pure functions of their arguments; they cannot fail. The result holds the
// access token: wipe it after use and never log it.
#pragma once

#include <string>
#include <string_view>

namespace smtp {

enum class sasl_mechanism : unsigned char { password, xoauth2, oauthbearer };

std::string xoauth2_response(std::string_view user, std::string_view token);
// The authzid in the GS2 header escapes ',' as "=2C" and '=' as "=3D" (RFC 5801).
std::string oauthbearer_response(std::string_view user, std::string_view token);
// The dummy response to an RFC 7628 error challenge (3.2.3): a single ^A.
// XOAUTH2 answers its error challenge with an empty response instead.
inline constexpr std::string_view oauthbearer_error_ack = "\x01";

}  // namespace smtp
