// Implements delivery_tls_rpt.hpp.
#include "relayd/delivery_tls_rpt.hpp"

#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>

#include <fmt/format.h>

#include <utility>

#include "relayd/delivery_dane.hpp"
#include "relayd/delivery_mta_sts.hpp"
#include "relayd/delivery_stream.hpp"
#include "relayd/tls_rpt_service.hpp"

namespace relayd {
namespace {

using tls_rpt::result_type;

// "3 1 1 0123ab..." (RFC 8460 4.4: TLSA records as presentation text).
std::string tlsa_text(const dns::tlsa_record& r) {
  std::string out = fmt::format("{} {} {} ", r.usage, r.selector, r.mtype);
  for (unsigned char c : r.data) out += fmt::format("{:02x}", c);
  return out;
}

// The policy file's lines, without the line ends and empty lines.
std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::size_t at = 0;
  while (at < text.size()) {
    std::size_t nl = text.find('\n', at);
    if (nl == std::string::npos) nl = text.size();
    std::string line = text.substr(at, nl - at);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (!line.empty()) out.push_back(std::move(line));
    at = nl + 1;
  }
  return out;
}

}  // namespace

result_type certificate_result(long v) {
  switch (v) {
    case X509_V_ERR_CERT_HAS_EXPIRED:
    case X509_V_ERR_CERT_NOT_YET_VALID:
      return result_type::certificate_expired;
    case X509_V_ERR_HOSTNAME_MISMATCH:
    case X509_V_ERR_IP_ADDRESS_MISMATCH:
      return result_type::certificate_host_mismatch;
    case X509_V_ERR_DANE_NO_MATCH:
      return result_type::tlsa_invalid;
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
    case X509_V_ERR_CERT_UNTRUSTED:
    case X509_V_ERR_CERT_REJECTED:
    case X509_V_ERR_INVALID_CA:
    case X509_V_ERR_CERT_SIGNATURE_FAILURE:
    case X509_V_ERR_CERT_REVOKED:
      return result_type::certificate_not_trusted;
    default:
      return result_type::validation_failure;
  }
}

tls_rpt::policy tls_rpt_hop::policy_of(const std::string& domain, const mta_sts_verdict& sts,
                                       const dane_decision& dane) {
  tls_rpt::policy p;
  p.domain = domain;
  if (dane.mode != dane_mode::none) {
    p.type = tls_rpt::policy_type::tlsa;
    for (const auto& r : dane.records) p.strings.push_back(tlsa_text(r));
  } else if (sts.enforced() || sts.testing()) {
    p.type = tls_rpt::policy_type::sts;
    p.strings = lines_of(sts.text);
    p.mx_patterns = sts.mx;
  } else if (sts.problem != mta_sts_verdict::fetch_problem::none) {
    p.type = tls_rpt::policy_type::sts;
  }
  return p;
}

tls_rpt_hop::tls_rpt_hop(tls_rpt_service* service, const std::string& domain,
                         const mta_sts_verdict& sts, const dane_decision& dane,
                         std::string mx_host, std::string mx_ip)
    : service_(service) {
  if (!service_) return;  // reporting off, or a smarthost: nothing to describe
  mx_host_ = std::move(mx_host);
  mx_ip_ = std::move(mx_ip);
  applied_ = policy_of(domain, sts, dane);
  if (dane.mode == dane_mode::none && !sts.enforced() && !sts.testing() &&
      sts.problem != mta_sts_verdict::fetch_problem::none) {
    using problem = mta_sts_verdict::fetch_problem;
    policy_failure_ = sts.problem == problem::invalid          ? result_type::sts_policy_invalid
                      : sts.problem == problem::webpki_invalid ? result_type::sts_webpki_invalid
                                                               : result_type::sts_policy_fetch_error;
    policy_detail_ = sts.problem_text;
  }
}

void tls_rpt_hop::record(bool success, result_type kind, outbound* stream, std::string detail) {
  if (!service_) return;
  tls_rpt::session s;
  s.applied = applied_;
  s.success = success && !policy_failure_;
  s.failure = policy_failure_.value_or(kind);
  if (policy_failure_) detail = policy_detail_;
  s.mx_host = mx_host_;
  s.mx_ip = mx_ip_;
  if (stream) s.sending_ip = stream->local_address();
  if (!s.success) s.detail = std::move(detail);
  service_->record(s);
}

void tls_rpt_hop::ready(outbound& stream, bool tried_tls) {
  const auto tls = stream.tls_session();
  if (!tls) {
    // Plaintext by our own choice ([delivery] tls = none, no policy): not a TLS session.
    if (tried_tls || applied_.type != tls_rpt::policy_type::no_policy_found)
      record(false, result_type::starttls_not_supported, &stream, "STARTTLS not offered");
    return;
  }
  // DANE sessions only get here verified by the TLSA records; without a
  // policy any negotiated TLS counts (RFC 8460 4.4, "no-policy-found").
  if (tls->verified || applied_.type != tls_rpt::policy_type::sts) {
    record(true, result_type::validation_failure, &stream, "");
    return;
  }
  record(false, certificate_result(SSL_get_verify_result(stream.native_ssl())), &stream,
         tls->problem);
}

void tls_rpt_hop::tls_failed(outbound& stream) {
  record(false, certificate_result(SSL_get_verify_result(stream.native_ssl())), &stream,
         stream.tls_error());
}

void tls_rpt_hop::failed(result_type kind, outbound* stream, std::string detail) {
  record(false, kind, stream, std::move(detail));
}

}  // namespace relayd
