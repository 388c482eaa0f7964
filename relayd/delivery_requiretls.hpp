// REQUIRETLS (RFC 8689) as pure decisions, no I/O: how a message is tagged at
// receipt (the MAIL parameter, or a "TLS-Required: No" header field), whether a
// connected next hop may carry a tagged message, and what a whole MX/relayhost
// walk ends with when no host may. The connect path only gathers the facts
// (next_hop_facts); MTA-STS and DANE plug in by filling `verification`.
// Promise: a REQUIRETLS message goes only over TLS authenticated for the name
// it was sent to, that name itself authenticated (a relayhost from the
// configuration, DNSSEC, MTA-STS or DANE; an MX answer without DNSSEC is not),
// to a server that advertised REQUIRETLS after STARTTLS. Never throws.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "relayd/delivery_types.hpp"

namespace relayd {

// How the TLS of a connection was authenticated. The connect path fills it;
// MTA-STS and DANE set their own value when their check passed.
enum class tls_verification : std::uint8_t {
  none,             // plaintext
  unauthenticated,  // encrypted; the certificate was not verified (or did not verify)
  webpki,           // chain to the CA store and the next hop's name (RFC 6125)
  mta_sts,          // webpki, and the MX host matched the domain's MTA-STS policy (RFC 8461)
  dane,             // a usable TLSA record matched, DNSSEC-validated (RFC 7672)
};
std::string_view to_string(tls_verification v);  // "none", "unauthenticated", "webpki", ...

// Where the next hop's name came from, i.e. whether a certificate for that name
// proves anything (RFC 8689 4.2.1: an MX answer without DNSSEC must be checked
// with MTA-STS).
enum class next_hop_name : std::uint8_t {
  relayhost,    // the operator's configuration (relayhost, route)
  domain,       // no MX record: the recipient domain's own addresses (implicit MX)
  mx_secure,    // an MX answer validated by DNSSEC
  mx_insecure,  // an MX answer without DNSSEC: whoever answered DNS chose the name
};

struct next_hop_facts {
  tls_verification verification = tls_verification::none;
  next_hop_name name = next_hop_name::mx_insecure;
  bool offers_requiretls = false;  // the EHLO reply under TLS advertised REQUIRETLS
};

// RFC 8689 4.1: the message flags (queue::flag_requiretls, flag_tls_optional)
// for a message received with or without MAIL ... REQUIRETLS. With REQUIRETLS
// the TLS-Required header field is ignored (and left in the message).
std::uint32_t requiretls_flags(bool requiretls_param, std::string_view message);
// Whether the header block of `message` has a "TLS-Required: No" field (name
// and value in any case, folding and spaces allowed; RFC 8689 3).
bool tls_required_no(std::string_view message);

// Whether recipient-side TLS policy (MTA-STS enforce, DANE) binds this message:
// not for "TLS-Required: No" (RFC 8689 4.2.2: TLS is tried, but its failure
// or a policy does not stop delivery). The operator's own [delivery] tls
// setting still applies.
bool recipient_policy_applies(std::uint32_t message_flags);

enum class requiretls_verdict : std::uint8_t {
  send,                    // not a REQUIRETLS message: MAIL goes without the parameter
  send_with_requiretls,    // a REQUIRETLS message, and this hop qualifies
  no_tls,                  // 5.7.10: the connection is not encrypted
  not_verified,            // 5.7.10: the certificate was not verified for the name
  name_not_authenticated,  // 5.7.10: an insecure MX answer, no MTA-STS or DANE
  no_requiretls,           // 5.7.30: the server does not advertise REQUIRETLS
};

struct requiretls_check {
  requiretls_verdict verdict = requiretls_verdict::send;
  bool may_send() const {
    return verdict == requiretls_verdict::send ||
           verdict == requiretls_verdict::send_with_requiretls;
  }
  std::string_view status() const;  // "5.7.10", "5.7.30"; "" when it may send
  std::string text() const;         // why not, for the DSN and the log; "" when it may send
};

// May a message with `message_flags` go over the connection described by `hop`?
requiretls_check check_next_hop(std::uint32_t message_flags, const next_hop_facts& hop);

// The outcome of trying every host of a destination for one REQUIRETLS message
// (RFC 8689 4.2.1: try each MX host; fail only when none qualifies). Hosts that
// answered and did not qualify are counted; a host that could not be reached
// (or failed for a temporary reason) might qualify later, so then the message
// waits instead of failing.
class requiretls_walk {
 public:
  void refused(const requiretls_check& c, std::string relay);  // reached, did not qualify
  void unreachable() { ++unreachable_; }                       // not reached / temporary
  bool any_refused() const { return refused_ != 0; }
  // failed (5.7.10 / 5.7.30, reason "requiretls") when every host tried was
  // refused; deferred (4.7.10 / 4.7.30) when some host could not be asked; the
  // text names the last refusal. Only meaningful when any_refused().
  recipient_outcome outcome() const;

 private:
  std::size_t refused_ = 0, unreachable_ = 0;
  requiretls_check last_;
  std::string last_relay_;
};

}  // namespace relayd
