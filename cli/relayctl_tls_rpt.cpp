// Implements relayctl_tls_rpt.hpp.
#include "cli/relayctl_tls_rpt.hpp"

#include <boost/json.hpp>
#include <cstdio>
#include <ctime>

#include "relayd/control_protocol.hpp"
#include "relayd/tls_rpt_day.hpp"

namespace relayctl {
namespace proto = relayd::control_protocol;

bool tls_rpt_words_ok(const std::vector<std::string>& w, int& code) {
  code = 2;
  if (w.empty() || w[0] != "send" || w.size() > 2) {
    std::fprintf(stderr, "relayctl: tls-rpt takes: send [YYYY-MM-DD]\n");
    return false;
  }
  if (w.size() == 2 && !relayd::parse_day_name(w[1])) {
    std::fprintf(stderr, "relayctl: tls-rpt send: \"%s\" is not a day (YYYY-MM-DD)\n",
                 w[1].c_str());
    code = 64;
    return false;
  }
  return true;
}

int tls_rpt_main(control_client& c, const std::vector<std::string>& w) {
  const std::string day =
      w.size() == 2 ? w[1]
                    : relayd::day_name(relayd::day_start_of(std::time(nullptr)) - 86400);
  c.send(proto::make_request(proto::verb::tls_rpt_send, day));
  auto o = c.read_ok();  // an error: "relayctl: WHY", exit 1
  std::printf("%s", proto::get_string(o, proto::key::summary).c_str());
  return 0;
}

}  // namespace relayctl
