// Implements sendmail_wait.hpp over a unix_stream: one JSON request line, one
// JSON answer line (control_protocol.hpp). The answer is read with the wait's
// timeout plus a margin, so a daemon that never answers still ends the wait.
#include "cli/sendmail_wait.hpp"

#include <sysexits.h>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <cstdio>

#include "cli/sendmail_socket.hpp"
#include "relayd/control_protocol.hpp"

namespace sendmail {
namespace proto = relayd::control_protocol;
namespace json = boost::json;

namespace {

// The reply as one quoted field: '"' and '\' escaped, line breaks as spaces.
std::string quoted(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += (c == '\r' || c == '\n') ? ' ' : c;
  }
  return out + "\"";
}

}  // namespace

wait_report read_wait_answer(const json::object& answer) {
  wait_report r;
  const bool final = proto::get_bool(answer, proto::key::final);
  bool any_failed = false, all_delivered = true;
  const auto* list = answer.if_contains(proto::key::recipients);
  const auto* arr = list ? list->if_array() : nullptr;
  if (!arr || arr->empty()) {
    r.lines.push_back("no recipients in relayd's answer");
    r.exit_status = EX_TEMPFAIL;
    return r;
  }
  for (const auto& v : *arr) {
    const auto* o = v.if_object();
    if (!o) continue;
    const std::string state = proto::get_string(*o, proto::key::state);
    any_failed |= state == proto::state::failed;
    all_delivered &= state == proto::state::delivered;
    r.lines.push_back("to=<" + proto::get_string(*o, proto::key::address) + "> status=" + state +
                      " reply=" + quoted(proto::get_string(*o, proto::key::last_reply)));
  }
  if (any_failed) r.exit_status = EX_UNAVAILABLE;
  else if (final && all_delivered) r.exit_status = EX_OK;
  else r.exit_status = EX_TEMPFAIL;
  return r;
}

int wait_for_delivery(const std::string& control_socket, const std::string& queue_id,
                      std::chrono::seconds timeout) {
  auto fail = [&](const std::string& why) {
    std::fprintf(stderr, "sendmail: queued as %s, but cannot wait for its delivery: %s\n",
                 queue_id.c_str(), why.c_str());
    return EX_TEMPFAIL;
  };
  if (queue_id.empty()) return fail("relayd's reply named no queue ID");
  unix_stream s;
  const std::chrono::milliseconds io(10'000);
  if (auto c = s.connect(control_socket, io); !c) return fail(c.error());
  std::string req = json::serialize(proto::make_wait_request(queue_id, timeout.count())) + "\n";
  if (auto w = s.write_all(req, io); !w) return fail(w.error());
  auto line = s.read_line(timeout + std::chrono::seconds(30));
  if (!line) return fail(line.error());
  json::error_code ec;
  auto v = json::parse(*line, ec);
  if (ec || !v.is_object()) return fail("bad answer from relayd");
  const auto& o = v.as_object();
  if (!proto::get_bool(o, proto::key::ok)) return fail(proto::get_string(o, proto::key::error));
  auto report = read_wait_answer(o);
  for (const auto& l : report.lines) std::printf("%s\n", l.c_str());
  std::fflush(stdout);
  if (report.exit_status == EX_TEMPFAIL && !proto::get_bool(o, proto::key::final))
    std::fprintf(stderr, "sendmail: %s: not every recipient is final after %llds\n",
                 queue_id.c_str(), static_cast<long long>(timeout.count()));
  return report.exit_status;
}

}  // namespace sendmail
