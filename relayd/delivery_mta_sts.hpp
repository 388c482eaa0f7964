// MTA-STS (RFC 8461) for MX delivery: which policy applies to a recipient
// domain. Looks up `_mta-sts.DOMAIN` TXT through the daemon's c-ares resolver,
// fetches https://mta-sts.DOMAIN/.well-known/mta-sts.txt when the record's id is
// new or the cached policy expired (certificate verified against the system CAs
// or SSL_CERT_FILE, SNI, 64 KiB, 20 s, no redirects, text/plain only) and keeps
// policies in the spool (queue::spool::store_mta_sts) so they survive restarts.
// A failed fetch keeps an unexpired cached policy; without one the domain has
// no policy (delivery as before) and the reason is logged. Never throws.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "relayd/delivery_mta_sts_policy.hpp"
#include "relayd/delivery_types.hpp"
#include "relayd/net.hpp"

namespace dns {
class mx_resolver;
}
namespace queue {
class spool;
}

namespace relayd {

struct config;

// The policy that applies to one delivery attempt.
struct mta_sts_verdict {
  std::string domain;
  mta_sts::mode what = mta_sts::mode::none;  // none: no policy (or mode none)
  std::vector<std::string> mx;               // the policy's patterns
  std::string id;                            // the TXT id it was fetched under
  std::string text;                          // the policy file (TLS-RPT's policy-string)
  // No policy because fetching a new one failed (TLS-RPT, RFC 8460 4.3.2.3):
  // the kind of failure and why; none otherwise.
  enum class fetch_problem { none, fetch_error, invalid, webpki_invalid };
  fetch_problem problem = fetch_problem::none;
  std::string problem_text;
  bool enforced() const { return what == mta_sts::mode::enforce; }
  bool testing() const { return what == mta_sts::mode::testing; }
  bool allows(std::string_view mx_host) const;
  // "*.example.org, mx.example.net" for messages.
  std::string patterns() const;
};

// Outcomes under a policy (deferred, never bounced): the MX host `relay` is not
// one of the enforced policy's patterns (4.7.5)...
recipient_outcome mta_sts_mx_refused(const mta_sts_verdict& v, std::string_view relay,
                                     std::string_view mx_host);
// ...or its set-up failed for want of TLS or a valid certificate: `o` says why
// and now also which policy required it.
void mta_sts_required(recipient_outcome& o, const mta_sts_verdict& v);

class mta_sts_source {
 public:
  // `spool` keeps the policies; both outlive the source (the daemon's wiring).
  mta_sts_source(asio::io_context& io, const config& cfg, dns::mx_resolver& dns,
                 queue::spool& spool);
  ~mta_sts_source();
  mta_sts_source(const mta_sts_source&) = delete;
  mta_sts_source& operator=(const mta_sts_source&) = delete;

  // The policy for `domain` (a recipient domain). One lookup per domain at a
  // time: callers arriving meanwhile get its answer.
  awaitable<mta_sts_verdict> policy_for(std::string domain);

 private:
  struct state;
  std::shared_ptr<state> s_;
};

}  // namespace relayd
