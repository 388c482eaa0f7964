// SMTP TLS Reporting (RFC 8460), the parts without I/O: the outcome of one
// outbound TLS session as the delivery path reports it, one UTC day of such
// outcomes per policy domain (what the daemon keeps and stores), the
// `_smtp._tls` TXT record that says where reports go, and the report itself: the
// JSON of RFC 8460 section 4, gzipped, in the multipart/report mail of section
// 5.3. Parsing never throws: a record or a stored day that does not parse is an
// error value naming what is wrong.
#pragma once

#include <cstdint>
#include <expected>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

namespace relayd::tls_rpt {

// RFC 8460 4.3 "policy-type".
enum class policy_type : std::uint8_t { sts, tlsa, no_policy_found };
std::string_view to_string(policy_type t);  // "sts", "tlsa", "no-policy-found"

// RFC 8460 4.3 "result-type" (the failure kinds a sending MTA can see).
enum class result_type : std::uint8_t {
  starttls_not_supported,
  certificate_host_mismatch,
  certificate_expired,
  certificate_not_trusted,
  validation_failure,
  tlsa_invalid,
  dnssec_invalid,
  dane_required,
  sts_policy_fetch_error,
  sts_policy_invalid,
  sts_webpki_invalid,
};
std::string_view to_string(result_type r);  // "starttls-not-supported", ...
std::optional<result_type> parse_result_type(std::string_view s);

// The policy that applied to a session, as RFC 8460 4.4 reports it.
struct policy {
  policy_type type = policy_type::no_policy_found;
  std::string domain;                       // policy-domain (the recipient domain)
  std::vector<std::string> strings;         // policy-string: STS lines or TLSA records
  std::vector<std::string> mx_patterns;     // mx-host: the STS policy's "mx:" values
  bool operator==(const policy&) const = default;
};

// One outbound session to an MX under `applied`: a success, or a failure of
// `failure` kind at `mx_host` [`mx_ip`].
struct session {
  policy applied;
  bool success = true;
  result_type failure = result_type::validation_failure;
  std::string mx_host;          // receiving-mx-hostname
  std::string mx_ip;            // receiving-ip
  std::string sending_ip;       // sending-mta-ip ("" when unknown)
  std::string detail;           // additional-information ("" when none)
};

// One policy domain's outcomes over one UTC day: per policy seen (a policy can
// change during the day), the success and failure counts and the failures
// grouped by (kind, MX host, MX address, sending address, detail).
class domain_day {
 public:
  void add(const session& s);

  struct failure_key {
    result_type kind;
    std::string mx_host, mx_ip, sending_ip, detail;
    auto operator<=>(const failure_key&) const = default;
  };
  struct counts {
    policy applied;
    std::uint64_t successes = 0;
    std::uint64_t failures = 0;
    std::map<failure_key, std::uint64_t> failure_details;
    bool operator==(const counts&) const = default;
  };
  const std::vector<counts>& policies() const { return policies_; }
  bool empty() const { return policies_.empty(); }

  // A compact JSON form for the daemon's store; decode(encode()) == *this.
  std::string encode() const;
  static std::expected<domain_day, std::string> decode(std::string_view json);

  bool operator==(const domain_day&) const = default;

 private:
  std::vector<counts> policies_;
};

// `_smtp._tls.DOMAIN`: the TXT strings found. RFC 8460 3: records not starting
// with "v=TLSRPTv1;" are ignored; exactly one must remain; its "rua" is a
// comma-separated list of mailto: and https: URIs. An error says why the domain
// gets no report.
struct destinations {
  std::vector<std::string> mailto;  // addresses (mailto: removed, %-escapes decoded)
  std::vector<std::string> https;   // URLs as given
};
std::expected<destinations, std::string> parse_record(const std::vector<std::string>& txt);

// The report's frame: who sends it, for which day.
struct report_info {
  std::string organization;   // organization-name
  std::string contact;        // contact-info (the reporting address)
  std::string submitter;      // the submitter domain (Subject, TLS-Report-Submitter)
  std::string report_id;      // report-id, unique per report
  std::int64_t day_start = 0; // UTC midnight, seconds since the epoch
};

// The RFC 8460 4 JSON report of `day` for `policy_domain`.
std::string report_json(const report_info& info, std::string_view policy_domain,
                        const domain_day& day);

// "submitter!policy-domain!begin!end!unique.json.gz" (RFC 8460 5.1; begin and
// end as seconds since the epoch).
std::string report_filename(const report_info& info, std::string_view policy_domain);

// gzip (RFC 1952) of `data`; an error only when zlib itself fails.
std::expected<std::string, std::string> gzip(std::string_view data);

// The whole mail (RFC 8460 5.3): From, To, Date, Message-ID, Subject "Report
// Domain: D Submitter: S Report-ID: <ID>", TLS-Report-Domain,
// TLS-Report-Submitter, multipart/report; report-type="tlsrpt" with a text part
// and the application/tlsrpt+gzip part (base64, 76-column lines). CRLF endings.
std::expected<std::string, std::string> report_message(const report_info& info,
                                                       std::string_view policy_domain,
                                                       const domain_day& day,
                                                       std::string_view to,
                                                       std::string_view message_id,
                                                       std::int64_t now);

}  // namespace relayd::tls_rpt
