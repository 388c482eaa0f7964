// Implements relayctl_destinations.hpp.
#include "cli/relayctl_destinations.hpp"

#include <boost/json.hpp>
#include <cstdio>
#include <ctime>

#include "relayd/config_values.hpp"
#include "relayd/control_protocol.hpp"

namespace relayctl {
namespace json = boost::json;
namespace proto = relayd::control_protocol;
namespace key = proto::key;

namespace {

bool bad(const std::string& why) {
  std::fprintf(stderr, "relayctl: %s\n", why.c_str());
  return false;
}

std::string until_text(std::int64_t t) {
  if (t < 0) return "resume";
  if (t == 0) return "-";
  std::time_t tt = static_cast<std::time_t>(t);
  std::tm tm{};
  localtime_r(&tt, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
  return buf;
}

int list(control_client& c, bool as_json) {
  c.send(proto::make_request(proto::verb::destinations));
  std::vector<json::object> rows;
  for (;;) {
    auto o = c.read_object();
    if (o.contains(key::ok)) {
      check_ok(o);
      break;
    }
    rows.push_back(std::move(o));
  }
  if (as_json) {
    for (const auto& r : rows) std::printf("%s\n", json::serialize(r).c_str());
    return 0;
  }
  if (rows.empty()) {
    std::printf("No destinations: the queue is empty and nothing is suspended\n");
    return 0;
  }
  std::printf("%-32s %-20s %6s %6s %5s %-7s %-10s %-19s\n", "DESTINATION", "POLICY", "QUEUED",
              "FLIGHT", "CONN", "RATE", "STATE", "UNTIL");
  for (const auto& r : rows) {
    const auto policy = proto::get_string(r, key::policy);
    const auto rate = proto::get_string(r, key::rate);
    std::printf("%-32s %-20s %6lld %6lld %5lld %-7s %-10s %-19s\n",
                proto::get_string(r, key::destination).c_str(),
                policy.empty() ? "-" : policy.c_str(),
                static_cast<long long>(proto::get_int(r, key::queued)),
                static_cast<long long>(proto::get_int(r, key::in_flight)),
                static_cast<long long>(proto::get_int(r, key::connections)),
                rate.empty() ? "-" : rate.c_str(), proto::get_string(r, key::state).c_str(),
                until_text(proto::get_int(r, key::until)).c_str());
    if (auto why = proto::get_string(r, key::reason); !why.empty())
      std::printf("    reason: %s\n", why.c_str());
    if (auto reply = proto::get_string(r, key::last_reply); !reply.empty())
      std::printf("    last reply: %s\n", reply.c_str());
    if (auto tls = proto::get_string(r, key::tls_policy); !tls.empty())
      std::printf("    tls: policy %s, %s at %s\n", tls.c_str(),
                  proto::get_string(r, key::tls_outcome).c_str(),
                  until_text(proto::get_int(r, key::tls_at)).c_str());
  }
  return 0;
}

}  // namespace

bool destinations_words_ok(const std::string& command, const std::vector<std::string>& w) {
  if (command == "destinations") {
    if (w.empty() || (w.size() == 1 && w[0] == "--json")) return true;
    return bad("destinations takes only --json");
  }
  if (w.empty() || w[0].starts_with("-")) return bad(command + " needs a destination");
  if (command == "resume") return w.size() == 1 || bad("resume takes one destination");
  if (w.size() == 1) return true;
  if (w.size() == 3 && w[1] == "--for") {
    auto d = relayd::parse_duration(w[2]);
    if (!d) return bad("--for: " + d.error());
    if (d->count() == 0) return bad("--for: must be at least 1s");
    return true;
  }
  return bad("suspend takes a destination and optionally --for DURATION");
}

int destinations_main(control_client& c, const std::string& command,
                      const std::vector<std::string>& w) {
  if (command == "destinations") return list(c, w.size() == 1);
  json::object req;
  if (command == "suspend") {
    const std::int64_t seconds = w.size() == 3 ? relayd::parse_duration(w[2])->count() : 0;
    req = proto::make_request(proto::verb::suspend, w[0]);
    if (seconds) req[key::timeout] = seconds;
  } else {
    req = proto::make_request(proto::verb::resume, w[0]);
  }
  c.send(req);
  auto reply = c.read_ok();
  const auto name = proto::get_string(reply, key::destination);
  if (command == "suspend")
    std::printf("%s: suspended %s\n", name.c_str(),
                w.size() == 3 ? ("for " + w[2]).c_str() : "until relayctl resume");
  else
    std::printf("%s: resumed, %lld message(s) to deliver now\n", name.c_str(),
                static_cast<long long>(proto::get_int(reply, key::count)));
  return 0;
}

}  // namespace relayctl
