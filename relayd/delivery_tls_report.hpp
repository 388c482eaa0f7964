// What relayd says about each outbound TLS session and each TLS policy outcome:
// the one log line per session ("Verified TLS connection established to
// HOST[IP]:25: TLSv1.3 with cipher X policy=mta-sts") and the labels of
// relayd_tls_policy_results_total. Pure: the line is made here and logged by
// the caller's one call to log_tls_session().
#pragma once

#include <string>
#include <string_view>

namespace relayd {

class metrics;

// The policy that governed a session or a refusal ("mta-sts", "dane", "none").
enum class tls_policy_kind { none, mta_sts, dane };
std::string_view to_string(tls_policy_kind k);

// relayd_tls_policy_results_total{result}: success (the policy held),
// failure (an enforced policy refused a host: the mail waits), testing_failure
// (a policy in testing mode would have refused it: delivered anyway).
enum class tls_policy_result { success, failure, testing_failure };
std::string_view to_string(tls_policy_result r);

struct tls_session_summary {
  std::string relay;            // "mx.example.org[192.0.2.1]:25"
  std::string version, cipher;  // "TLSv1.3", "TLS_AES_256_GCM_SHA384"
  bool verified = false;        // chain and name verified
  tls_policy_kind policy = tls_policy_kind::none;
};
// "Verified TLS connection established to ...: TLSv1.3 with cipher ... policy=none"
// ("Untrusted" when not verified).
std::string tls_session_line(const tls_session_summary& s);
void log_tls_session(const tls_session_summary& s);

// Counts one outcome (no-op without metrics).
void count_tls_policy(metrics* m, tls_policy_kind k, tls_policy_result r);

}  // namespace relayd
