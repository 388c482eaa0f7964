// relayctl tls-rpt send [DAY]: have relayd send the TLS reports (RFC 8460) of
// one UTC day now (control verb tls_rpt_send). DAY is YYYY-MM-DD, yesterday
// (UTC) when not given; today gives a partial report and the counts stay. A
// bad DAY gives 64 (EX_USAGE), other bad words 2, a failed request 1.
#pragma once

#include <string>
#include <vector>

#include "cli/control_client.hpp"

namespace relayctl {

// The words after "tls-rpt" make sense (if not, says why on stderr); `code`
// is the exit code then.
bool tls_rpt_words_ok(const std::vector<std::string>& words, int& code);
int tls_rpt_main(control_client& c, const std::vector<std::string>& words);

}  // namespace relayctl
