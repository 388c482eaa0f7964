// Implements tls_rpt.hpp. The JSON is built and read with Boost.JSON; the
// compression is zlib's deflate with a gzip wrapper (windowBits 15 + 16).
#include "relayd/tls_rpt.hpp"

#include <zlib.h>

#include <algorithm>
#include <array>
#include <boost/json.hpp>
#include <cctype>
#include <ctime>

#include "smtp/base64.hpp"
#include "smtp/message.hpp"
#include "smtp/text.hpp"

namespace relayd::tls_rpt {
namespace json = boost::json;

namespace {

constexpr std::array<std::string_view, 3> policy_names{"sts", "tlsa", "no-policy-found"};
constexpr std::array<std::string_view, 11> result_names{
    "starttls-not-supported", "certificate-host-mismatch", "certificate-expired",
    "certificate-not-trusted", "validation-failure",      "tlsa-invalid",
    "dnssec-invalid",         "dane-required",             "sts-policy-fetch-error",
    "sts-policy-invalid",     "sts-webpki-invalid"};

std::optional<policy_type> parse_policy_type(std::string_view s) {
  for (std::size_t i = 0; i < policy_names.size(); ++i)
    if (policy_names[i] == s) return static_cast<policy_type>(i);
  return std::nullopt;
}

// "2016-04-01T00:00:00Z"
std::string rfc3339(std::int64_t t) {
  const std::time_t tt = static_cast<std::time_t>(t);
  std::tm tm{};
  ::gmtime_r(&tt, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

json::array string_array(const std::vector<std::string>& v) {
  json::array a;
  for (const auto& s : v) a.emplace_back(s);
  return a;
}

json::object policy_object(const policy& p) {
  json::object o;
  o["policy-type"] = to_string(p.type);
  o["policy-string"] = string_array(p.strings);
  o["policy-domain"] = p.domain;
  if (p.type == policy_type::sts) o["mx-host"] = string_array(p.mx_patterns);
  return o;
}

// The failure-details entries: the optional fields only when known.
json::array failure_array(const std::map<domain_day::failure_key, std::uint64_t>& m) {
  json::array a;
  for (const auto& [k, n] : m) {
    json::object f;
    f["result-type"] = to_string(k.kind);
    if (!k.sending_ip.empty()) f["sending-mta-ip"] = k.sending_ip;
    if (!k.mx_host.empty()) f["receiving-mx-hostname"] = k.mx_host;
    if (!k.mx_ip.empty()) f["receiving-ip"] = k.mx_ip;
    f["failed-session-count"] = n;
    if (!k.detail.empty()) f["additional-information"] = k.detail;
    a.push_back(std::move(f));
  }
  return a;
}

// Reading the stored form back: every field checked, never a throw.
struct reader {
  std::string error;

  const json::value* field(const json::object& o, std::string_view key) {
    const json::value* v = o.if_contains(key);
    if (!v && error.empty()) error = "missing \"" + std::string(key) + "\"";
    return v;
  }
  std::optional<std::string> text(const json::object& o, std::string_view key) {
    const json::value* v = field(o, key);
    if (!v) return std::nullopt;
    if (!v->is_string()) {
      if (error.empty()) error = "\"" + std::string(key) + "\" is not a string";
      return std::nullopt;
    }
    return std::string(v->get_string());
  }
  std::optional<std::uint64_t> count(const json::object& o, std::string_view key) {
    const json::value* v = field(o, key);
    if (!v) return std::nullopt;
    if (v->is_uint64()) return v->get_uint64();
    if (v->is_int64() && v->get_int64() >= 0) return static_cast<std::uint64_t>(v->get_int64());
    if (error.empty()) error = "\"" + std::string(key) + "\" is not a count";
    return std::nullopt;
  }
  std::optional<std::vector<std::string>> texts(const json::object& o, std::string_view key) {
    const json::value* v = field(o, key);
    if (!v) return std::nullopt;
    if (!v->is_array()) {
      if (error.empty()) error = "\"" + std::string(key) + "\" is not an array";
      return std::nullopt;
    }
    std::vector<std::string> out;
    for (const auto& e : v->get_array()) {
      if (!e.is_string()) {
        if (error.empty()) error = "\"" + std::string(key) + "\" holds a non-string";
        return std::nullopt;
      }
      out.emplace_back(e.get_string());
    }
    return out;
  }
};

// RFC 3986 percent-decoding of a mailto: address; nullopt for a bad escape.
std::optional<std::string> percent_decode(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out += s[i];
      continue;
    }
    if (i + 2 >= s.size() || !std::isxdigit(static_cast<unsigned char>(s[i + 1])) ||
        !std::isxdigit(static_cast<unsigned char>(s[i + 2])))
      return std::nullopt;
    out += static_cast<char>(std::stoi(std::string(s.substr(i + 1, 2)), nullptr, 16));
    i += 2;
  }
  return out;
}

}  // namespace

std::string_view to_string(policy_type t) { return policy_names[static_cast<std::size_t>(t)]; }
std::string_view to_string(result_type r) { return result_names[static_cast<std::size_t>(r)]; }

std::optional<result_type> parse_result_type(std::string_view s) {
  for (std::size_t i = 0; i < result_names.size(); ++i)
    if (result_names[i] == s) return static_cast<result_type>(i);
  return std::nullopt;
}

void domain_day::add(const session& s) {
  auto it = std::ranges::find_if(policies_, [&](const counts& c) { return c.applied == s.applied; });
  if (it == policies_.end()) {
    policies_.push_back(counts{s.applied, 0, 0, {}});
    it = policies_.end() - 1;
  }
  if (s.success) {
    ++it->successes;
    return;
  }
  ++it->failures;
  ++it->failure_details[failure_key{s.failure, s.mx_host, s.mx_ip, s.sending_ip, s.detail}];
}

std::string domain_day::encode() const {
  json::array out;
  for (const auto& c : policies_) {
    json::object o;
    o["policy"] = policy_object(c.applied);
    o["successes"] = c.successes;
    o["failures"] = c.failures;
    o["failure-details"] = failure_array(c.failure_details);
    out.push_back(std::move(o));
  }
  return json::serialize(out);
}

std::expected<domain_day, std::string> domain_day::decode(std::string_view text) {
  boost::system::error_code ec;
  const json::value doc = json::parse(text, ec);
  if (ec) return std::unexpected("not JSON: " + ec.message());
  if (!doc.is_array()) return std::unexpected("not a JSON array");
  domain_day day;
  reader r;
  for (const auto& entry : doc.get_array()) {
    if (!entry.is_object()) return std::unexpected("an entry is not an object");
    const json::object& o = entry.get_object();
    counts c;
    const json::value* p = r.field(o, "policy");
    if (p && !p->is_object()) return std::unexpected("\"policy\" is not an object");
    if (p) {
      const json::object& po = p->get_object();
      auto type = r.text(po, "policy-type");
      auto domain = r.text(po, "policy-domain");
      auto strings = r.texts(po, "policy-string");
      if (!r.error.empty()) return std::unexpected(r.error);
      auto t = parse_policy_type(*type);
      if (!t) return std::unexpected("unknown policy-type \"" + *type + "\"");
      c.applied = policy{*t, *domain, *strings, {}};
      if (*t == policy_type::sts) {
        auto mx = r.texts(po, "mx-host");
        if (!mx) return std::unexpected(r.error);
        c.applied.mx_patterns = *mx;
      }
    }
    auto ok = r.count(o, "successes");
    auto bad = r.count(o, "failures");
    const json::value* details = r.field(o, "failure-details");
    if (!r.error.empty()) return std::unexpected(r.error);
    c.successes = *ok;
    c.failures = *bad;
    if (!details->is_array()) return std::unexpected("\"failure-details\" is not an array");
    for (const auto& d : details->get_array()) {
      if (!d.is_object()) return std::unexpected("a failure detail is not an object");
      const json::object& fo = d.get_object();
      auto kind_name = r.text(fo, "result-type");
      auto n = r.count(fo, "failed-session-count");
      if (!r.error.empty()) return std::unexpected(r.error);
      auto kind = parse_result_type(*kind_name);
      if (!kind) return std::unexpected("unknown result-type \"" + *kind_name + "\"");
      auto optional_text = [&](std::string_view key) -> std::string {
        const json::value* v = fo.if_contains(key);
        return v && v->is_string() ? std::string(v->get_string()) : std::string();
      };
      failure_key k{*kind, optional_text("receiving-mx-hostname"), optional_text("receiving-ip"),
                    optional_text("sending-mta-ip"), optional_text("additional-information")};
      c.failure_details[std::move(k)] += *n;
    }
    day.policies_.push_back(std::move(c));
  }
  return day;
}

std::expected<destinations, std::string> parse_record(const std::vector<std::string>& txt) {
  std::vector<std::string_view> ours;
  for (const auto& t : txt)
    if (t.starts_with("v=TLSRPTv1;") || t == "v=TLSRPTv1") ours.push_back(t);
  if (ours.empty()) return std::unexpected("no v=TLSRPTv1 record");
  if (ours.size() > 1) return std::unexpected("more than one v=TLSRPTv1 record");
  destinations out;
  std::string_view rest = ours.front();
  bool seen_rua = false;
  while (!rest.empty()) {
    const std::size_t semi = rest.find(';');
    const std::string_view field = smtp::text::trim(rest.substr(0, semi));
    rest = semi == std::string_view::npos ? std::string_view() : rest.substr(semi + 1);
    if (field.empty() || field == "v=TLSRPTv1") continue;
    const std::size_t eq = field.find('=');
    if (eq == std::string_view::npos) return std::unexpected("malformed field \"" + std::string(field) + "\"");
    const std::string_view name = smtp::text::trim(field.substr(0, eq));
    if (name != "rua") continue;  // extensions are ignored (RFC 8460 3)
    if (seen_rua) return std::unexpected("more than one rua");
    seen_rua = true;
    std::string_view uris = field.substr(eq + 1);
    while (!uris.empty()) {
      const std::size_t comma = uris.find(',');
      const std::string_view uri = smtp::text::trim(uris.substr(0, comma));
      uris = comma == std::string_view::npos ? std::string_view() : uris.substr(comma + 1);
      if (uri.empty()) continue;
      if (smtp::text::istarts_with(uri, "mailto:")) {
        std::string_view addr = uri.substr(7);
        addr = addr.substr(0, addr.find('?'));  // a mailto query (subject=...) is not ours
        auto decoded = percent_decode(addr);
        if (!decoded || decoded->find('@') == std::string::npos || decoded->empty())
          return std::unexpected("bad mailto URI \"" + std::string(uri) + "\"");
        out.mailto.push_back(std::move(*decoded));
      } else if (smtp::text::istarts_with(uri, "https://")) {
        out.https.emplace_back(uri);
      } else {
        return std::unexpected("unsupported rua URI \"" + std::string(uri) + "\"");
      }
    }
  }
  if (out.mailto.empty() && out.https.empty()) return std::unexpected("no rua destination");
  return out;
}

std::string report_json(const report_info& info, std::string_view policy_domain,
                        const domain_day& day) {
  json::object report;
  report["organization-name"] = info.organization;
  json::object range;
  range["start-datetime"] = rfc3339(info.day_start);
  range["end-datetime"] = rfc3339(info.day_start + 86399);
  report["date-range"] = std::move(range);
  report["contact-info"] = info.contact;
  report["report-id"] = info.report_id;
  json::array policies;
  for (const auto& c : day.policies()) {
    json::object p;
    json::object pol = policy_object(c.applied);
    pol["policy-domain"] = policy_domain;
    p["policy"] = std::move(pol);
    json::object summary;
    summary["total-successful-session-count"] = c.successes;
    summary["total-failure-session-count"] = c.failures;
    p["summary"] = std::move(summary);
    if (!c.failure_details.empty()) p["failure-details"] = failure_array(c.failure_details);
    policies.push_back(std::move(p));
  }
  report["policies"] = std::move(policies);
  return json::serialize(report);
}

std::string report_filename(const report_info& info, std::string_view policy_domain) {
  std::string unique;
  for (char c : info.report_id)
    if (std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.') unique += c;
  return info.submitter + "!" + std::string(policy_domain) + "!" +
         std::to_string(info.day_start) + "!" + std::to_string(info.day_start + 86399) + "!" +
         unique + ".json.gz";
}

std::expected<std::string, std::string> gzip(std::string_view data) {
  z_stream z{};
  if (deflateInit2(&z, Z_BEST_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
    return std::unexpected("zlib: deflateInit2 failed");
  std::string out(deflateBound(&z, static_cast<uLong>(data.size())), '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  z.avail_in = static_cast<uInt>(data.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  const int rc = deflate(&z, Z_FINISH);
  const std::size_t written = out.size() - z.avail_out;
  deflateEnd(&z);
  if (rc != Z_STREAM_END) return std::unexpected("zlib: deflate did not finish");
  out.resize(written);
  return out;
}

std::expected<std::string, std::string> report_message(const report_info& info,
                                                       std::string_view policy_domain,
                                                       const domain_day& day,
                                                       std::string_view to,
                                                       std::string_view message_id,
                                                       std::int64_t now) {
  auto packed = gzip(report_json(info, policy_domain, day));
  if (!packed) return std::unexpected(packed.error());
  const std::string boundary = "tlsrpt-" + info.report_id;
  const std::string domain(policy_domain);
  std::string m;
  m += "From: " + info.contact + "\r\n";
  m += "To: " + std::string(to) + "\r\n";
  m += "Date: " + smtp::format_date(now) + "\r\n";
  m += "Message-ID: " + std::string(message_id) + "\r\n";
  m += "Subject: Report Domain: " + domain + " Submitter: " + info.submitter +
       " Report-ID: <" + info.report_id + ">\r\n";
  m += "TLS-Report-Domain: " + domain + "\r\n";
  m += "TLS-Report-Submitter: " + info.submitter + "\r\n";
  m += "MIME-Version: 1.0\r\n";
  m += "Content-Type: multipart/report; report-type=\"tlsrpt\";\r\n\tboundary=\"" + boundary +
       "\"\r\n\r\n";
  m += "This is a multipart message in MIME format.\r\n\r\n";
  m += "--" + boundary + "\r\n";
  m += "Content-Type: text/plain; charset=us-ascii\r\n\r\n";
  m += "This is an aggregate TLS report (RFC 8460) from " + info.organization + " for " +
       domain + ",\r\n" + rfc3339(info.day_start) + " to " + rfc3339(info.day_start + 86399) +
       ".\r\n\r\n";
  m += "--" + boundary + "\r\n";
  const std::string name = report_filename(info, policy_domain);
  m += "Content-Type: application/tlsrpt+gzip; name=\"" + name + "\"\r\n";
  m += "Content-Transfer-Encoding: base64\r\n";
  m += "Content-Disposition: attachment; filename=\"" + name + "\"\r\n\r\n";
  const std::string b64 = smtp::base64::encode(*packed);
  for (std::size_t at = 0; at < b64.size(); at += 76) m += b64.substr(at, 76) + "\r\n";
  m += "\r\n--" + boundary + "--\r\n";
  return m;
}

}  // namespace relayd::tls_rpt
