// DANE for SMTP (RFC 7672) when [delivery] dane = true: which MX hosts must be
// reached over TLS verified by their TLSA records, and the OpenSSL set-up that
// verifies them. decide_dane is pure (DNS facts in, one decision out); the rest
// arms a context or a connection and never throws. Precedence (DESIGN "Outbound
// TLS policy"): a host with usable TLSA records is DANE's, whatever MTA-STS or
// [delivery] tls say; any other host gets the normal policy.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "dns/mx_resolver.hpp"
#include "relayd/delivery_types.hpp"
#include "relayd/net.hpp"

namespace boost::asio::ssl {
class context;
}

namespace relayd {

class outbound;

enum class dane_mode {
  none,     // DANE does not apply: the normal policy ([delivery] tls, MTA-STS)
  enforce,  // usable TLSA records: TLS is mandatory and verified by them
  defer,    // the TLSA lookup failed (bogus or unanswered): do not use this host
};

struct dane_decision {
  dane_mode mode = dane_mode::none;
  std::vector<dns::tlsa_record> records;  // enforce: the usable records
  std::string why;  // for logs; defer: the reason the recipients get
  // enforce: the names a DANE-TA certificate may carry (RFC 7672 3.2.2): the
  // TLSA base domain first, then the MX host name when a CNAME led elsewhere.
  std::vector<std::string> names;
};

// The TLSA base name of an MX host (RFC 7672 2.2.3).
std::string tlsa_name(std::string_view mx_host, std::uint16_t port);

// Where the TLSA records of an MX host are looked up, in order (RFC 7672
// 2.2.2): an alias (`canonical` not empty: the name a secure CNAME chain led
// to) first at the expanded name, then, when that has none, at the MX host name.
std::vector<std::string> tlsa_bases(const std::string& mx_host, const std::string& canonical);

// Whether the TLSA records of a host are looked up at all: only for MX delivery
// (not a relayhost) when the MX RRset and the host's addresses are secure (RFC
// 7672 2.2.1, 2.2.2).
bool wants_tlsa(bool mx_secure, bool host_secure);

// RFC 7672 2.2: ok and secure with a usable record: enforce; a failed lookup
// (SERVFAIL, timeout, malformed reply): defer; an insecure answer, no records,
// or only unusable records (2.2: then as if none were published): none.
dane_decision decide_dane(const std::string& tlsa_base, const dns::tlsa_result& r);

// The decision for one MX host of `mx` (resolved with dnssec): looks up its TLSA
// records when wants_tlsa() says so. Never throws.
awaitable<dane_decision> dane_for_host(dns::mx_resolver& dns, const dns::mx_result& mx,
                                       const std::string& mx_host, std::uint16_t port);

// Turns on OpenSSL's DANE support in the context DANE connections use.
void enable_dane(boost::asio::ssl::context& ctx);

// Arms a connection made with that context: the TLSA records, the MX host name
// as the reference identifier for DANE-TA (RFC 7672 3.2.2), no name checks for
// DANE-EE (3.1.1). Returns "" or what failed.
std::string arm_dane(outbound& stream, const std::string& mx_host,
                     const std::vector<dns::tlsa_record>& records);
// The same for a decision: its records, and its names (all accepted for DANE-TA).
std::string arm_dane(outbound& stream, const std::string& mx_host, const dane_decision& d);

// "TLSv1.3 with cipher TLS_AES_256_GCM_SHA384, DANE-EE(3) 1 1 matched" for the
// session log line of a DANE-verified connection.
std::string dane_session_summary(outbound& stream);

// The outcome for a host DANE refused: 4.7.5 with "DANE: <why>" (TLS), or for
// a failed TLSA lookup 4.4.3 (DNS).
recipient_outcome dane_failed(std::string_view relay, std::string_view why, bool dns_lookup);

}  // namespace relayd
