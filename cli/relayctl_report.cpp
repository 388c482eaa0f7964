// Implements relayctl_report.hpp.
#include "cli/relayctl_report.hpp"

#include <fmt/format.h>
#include <time.h>

#include <boost/json.hpp>
#include <cstdio>

#include "relayd/config_values.hpp"
#include "relayd/control_protocol.hpp"
#include "smtp/text.hpp"

namespace relayctl {
namespace json = boost::json;
namespace proto = relayd::control_protocol;
namespace key = proto::key;

namespace {

std::string utc_text(std::int64_t t) {
  const time_t tt = static_cast<time_t>(t);
  struct tm tm {};
  gmtime_r(&tt, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
  return buf;
}

const json::array& array_of(const json::object& o, std::string_view k) {
  static const json::array none;
  const auto* v = o.if_contains(k);
  return v && v->is_array() ? v->get_array() : none;
}

void section(std::string& out, const std::string& title) {
  out += "\n" + title + "\n" + std::string(title.size(), '-') + "\n";
}

// "count  name" rows of a list of {name_key, "count"} objects.
void count_rows(std::string& out, const json::array& rows, std::string_view name_key) {
  if (rows.empty()) out += "  none\n";
  for (const auto& r : rows) {
    if (!r.is_object()) continue;
    const auto& o = r.get_object();
    out += fmt::format("{:>8}   {}\n", proto::get_int(o, "count"), proto::get_string(o, name_key));
  }
}

}  // namespace

std::expected<report_options, report_usage_error> parse_report_words(const std::vector<std::string>& w) {
  report_options o;
  for (std::size_t i = 0; i < w.size(); ++i) {
    const std::string& a = w[i];
    if (a == "--json") {
      o.json = true;
      continue;
    }
    if (a != "--since" && a != "--until" && a != "--top")
      return std::unexpected(report_usage_error{2, "report takes --since, --until, --top and --json, not '" + a + "'"});
    if (i + 1 >= w.size()) return std::unexpected(report_usage_error{64, a + " needs a value"});
    const std::string& v = w[++i];
    if (a == "--top") {
      const auto n = smtp::text::parse_decimal(v, 1'000'000);
      if (!n || *n == 0)
        return std::unexpected(report_usage_error{64, "--top: want a number from 1 to 1000000, not \"" + v + "\""});
      o.top = static_cast<std::size_t>(*n);
      continue;
    }
    auto d = relayd::parse_duration(v);
    if (!d) return std::unexpected(report_usage_error{64, a + ": " + d.error()});
    (a == "--since" ? o.since_seconds : o.until_seconds) = d->count();
  }
  if (o.since_seconds == 0) return std::unexpected(report_usage_error{64, "--since: must be at least 1s"});
  if (o.until_seconds >= o.since_seconds)
    return std::unexpected(report_usage_error{64, "--until must be less far back than --since"});
  return o;
}

std::string report_text(const json::object& r) {
  std::string out = fmt::format("relayd report from {} to {} UTC\n",
                                utc_text(proto::get_int(r, "since")),
                                utc_text(proto::get_int(r, "until") - 1));
  section(out, "Grand Totals");
  out += fmt::format("{:>8}   received (messages)\n", proto::get_int(r, "received"));
  for (std::string_view k : {"delivered", "deferred", "bounced", "expired", "dead"})
    out += fmt::format("{:>8}   {} (recipients{})\n", proto::get_int(r, k), k,
                       k == "deferred" ? ", attempts" : "");
  out += fmt::format("{:>8}   destinations suspended\n", proto::get_int(r, "suspended"));
  const auto& domains = array_of(r, "domains");
  section(out, fmt::format("Per-Domain Summary (top {} of {})", domains.size(),
                           proto::get_int(r, "domain_count")));
  if (domains.empty()) out += "  none\n";
  else
    out += fmt::format("{:>9} {:>9} {:>9} {:>9} {:>9}  {}\n", "delivered", "deferred", "bounced",
                       "expired", "dead", "domain");
  for (const auto& d : domains) {
    if (!d.is_object()) continue;
    const auto& o = d.get_object();
    out += fmt::format("{:>9} {:>9} {:>9} {:>9} {:>9}  {}\n", proto::get_int(o, "delivered"),
                       proto::get_int(o, "deferred"), proto::get_int(o, "bounced"),
                       proto::get_int(o, "expired"), proto::get_int(o, "dead"),
                       proto::get_string(o, "domain"));
  }
  section(out, "Top Deferral Reasons");
  count_rows(out, array_of(r, "deferral_reasons"), "reason");
  section(out, "Top Bounce Reasons");
  count_rows(out, array_of(r, "bounce_reasons"), "reason");
  section(out, "Messages Received per Submitter");
  count_rows(out, array_of(r, "submitters"), "submitter");
  if (auto n = proto::get_int(r, "damaged_lines"); n != 0)
    out += fmt::format("\n{} damaged record line(s) skipped (see relayd's log)\n", n);
  return out;
}

int report_main(control_client& c, const report_options& o) {
  auto req = proto::make_request(proto::verb::report);
  req[key::since] = o.since_seconds;
  if (o.until_seconds) req[key::before] = o.until_seconds;
  req[key::top] = static_cast<std::int64_t>(o.top);
  c.send(req);
  auto reply = c.read_ok();
  const auto* r = reply.if_contains(key::report);
  if (!r || !r->is_object()) fail("relayd sent no report");
  if (o.json)
    std::printf("%s\n", json::serialize(r->get_object()).c_str());
  else
    std::fputs(report_text(r->get_object()).c_str(), stdout);
  return 0;
}

}  // namespace relayctl
