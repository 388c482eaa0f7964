// TLS reporting (RFC 8460) on the delivery path: what connector::open() hands
// to tls_rpt_service::record() for each outbound session to an MX host. The
// policy that applied to the host (DANE's usable TLSA records, else the
// MTA-STS policy in testing or enforce mode, else "no-policy-found"), and the
// session's outcome: a success when TLS was negotiated and the policy held, a
// failure with the RFC's result type otherwise. Nothing is recorded without a
// service ([delivery] tls_rpt off) or for a relayhost (no recipient MX).
#pragma once

#include <optional>
#include <string>

#include "relayd/tls_rpt.hpp"

namespace relayd {

class tls_rpt_service;
class outbound;
struct mta_sts_verdict;
struct dane_decision;

// The result type of a TLS handshake that failed or of a certificate that did
// not verify, from OpenSSL's verify result (X509_V_*): expired or not yet
// valid, host mismatch, DANE's TLSA records not matching (tlsa-invalid), an
// untrusted chain; validation-failure for anything else (X509_V_OK included:
// the handshake failed for another reason). Pure.
tls_rpt::result_type certificate_result(long verify_result);

// One host of one delivery attempt, as TLS-RPT sees it.
class tls_rpt_hop {
 public:
  // `service` null: every call does nothing (and nothing is worked out).
  tls_rpt_hop(tls_rpt_service* service, const std::string& domain, const mta_sts_verdict& sts,
              const dane_decision& dane, std::string mx_host, std::string mx_ip);

  // The policy a session to the host is counted under: `dane` is the host's
  // decision (enforce and defer make it "tlsa"), `sts` the domain's verdict
  // (enforced, testing, or one that could not be had: "sts"). Pure.
  static tls_rpt::policy policy_of(const std::string& domain, const mta_sts_verdict& sts,
                                   const dane_decision& dane);

  // The session is ready (the greeting and EHLO went through, with or without
  // TLS). `tried_tls`: STARTTLS was asked for on this connection.
  void ready(outbound& stream, bool tried_tls);
  // The TLS handshake failed (the certificate, DANE, or the protocol).
  void tls_failed(outbound& stream);
  // Any other failure the policy decided; `stream` null before connecting.
  void failed(tls_rpt::result_type kind, outbound* stream, std::string detail);

 private:
  void record(bool success, tls_rpt::result_type kind, outbound* stream, std::string detail);

  tls_rpt_service* service_;
  tls_rpt::policy applied_;
  // The MTA-STS policy could not be had (fetch, syntax, its HTTPS certificate):
  // every session to the domain is this failure (RFC 8460 4.3.2.3).
  std::optional<tls_rpt::result_type> policy_failure_;
  std::string policy_detail_;
  std::string mx_host_, mx_ip_;
};

}  // namespace relayd
