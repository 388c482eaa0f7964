// The SMTP envelope of one message as received: what MAIL and RCPT said (with
// their DSN parameters, RFC 3461), and who said it. Plain data shared by the
// server session and the spool.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace smtp {

enum class body_type : std::uint8_t { seven_bit = 0, eight_bit_mime = 1 };

// MAIL ... RET= (RFC 3461 4.3): how much of the message a failure notice returns.
enum class dsn_ret : std::uint8_t { unspecified = 0, full = 1, headers = 2 };

// RCPT ... NOTIFY= (RFC 3461 4.1) as bits; 0 when the parameter was absent (the
// MTA's default: failure and delay notices, no success notice).
enum notify_bits : std::uint8_t {
  notify_never = 1u << 0,
  notify_success = 1u << 1,
  notify_failure = 1u << 2,
  notify_delay = 1u << 3,
};

struct envelope_recipient {
  std::string address;  // forward-path without <>
  std::uint8_t notify = 0;  // notify_bits; 0: not given
  // ORCPT (RFC 3461 4.2) with its xtext decoded: "rfc822;user@example.org";
  // empty when not given.
  std::string orcpt;
  bool operator==(const envelope_recipient&) const = default;
};

// Who handed a message in through the local submission socket (SO_PEERCRED plus
// what /proc says about the process); absent for network clients.
struct local_identity {
  std::uint32_t uid = 0;
  std::uint32_t gid = 0;
  std::int32_t pid = 0;    // 0 when unknown (e.g. a drop file)
  std::string user;        // login name of uid, "" when it has none
  std::string executable;  // /proc/PID/exe, "" when unknown
  std::string unit;        // systemd unit from /proc/PID/cgroup, "" when none
  bool operator==(const local_identity&) const = default;
};

struct envelope {
  std::string sender;                          // reverse-path without <>; "" is the null sender
  std::vector<envelope_recipient> recipients;  // in RCPT order, each address once
  body_type body = body_type::seven_bit;
  bool smtputf8 = false;
  // MAIL ... REQUIRETLS (RFC 8689): deliver only over verified TLS to next hops
  // that offer REQUIRETLS too, else fail.
  bool requiretls = false;
  std::uint64_t declared_size = 0;  // SIZE= from MAIL, 0 when absent
  dsn_ret ret = dsn_ret::unspecified;
  std::string envid;                // ENVID= from MAIL, xtext decoded; "" when absent
  std::string client_ip;            // textual address of the client ("" for local)
  std::string helo;                 // the EHLO/HELO argument
  std::optional<local_identity> local;  // set for local submissions
};

// The recipients' addresses, in order.
inline std::vector<std::string> addresses(const envelope& e) {
  std::vector<std::string> out;
  out.reserve(e.recipients.size());
  for (const auto& r : e.recipients) out.push_back(r.address);
  return out;
}

}  // namespace smtp
