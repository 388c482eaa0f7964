// Implements delivery_tls_report.hpp.
#include "relayd/delivery_tls_report.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "relayd/metrics.hpp"

namespace relayd {

std::string_view to_string(tls_policy_kind k) {
  switch (k) {
    case tls_policy_kind::mta_sts: return "mta-sts";
    case tls_policy_kind::dane: return "dane";
    case tls_policy_kind::none: break;
  }
  return "none";
}

std::string_view to_string(tls_policy_result r) {
  switch (r) {
    case tls_policy_result::failure: return "failure";
    case tls_policy_result::testing_failure: return "testing_failure";
    case tls_policy_result::success: break;
  }
  return "success";
}

std::string tls_session_line(const tls_session_summary& s) {
  return fmt::format("{} TLS connection established to {}: {} with cipher {} policy={}",
                     s.verified ? "Verified" : "Untrusted", s.relay, s.version, s.cipher,
                     to_string(s.policy));
}

void log_tls_session(const tls_session_summary& s) {
  spdlog::info("{}", tls_session_line(s));
}

void count_tls_policy(metrics* m, tls_policy_kind k, tls_policy_result r) {
  if (m) m->tls_policy_result(to_string(k), to_string(r));
}

}  // namespace relayd
