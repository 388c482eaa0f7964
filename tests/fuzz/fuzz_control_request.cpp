// Fuzz target: the control socket's request parser (relayd/control_protocol.hpp),
// which reads whatever a local client writes. A request that parses must name a
// protocol verb with the arguments it takes, and rebuilding it with relayctl's
// make_request must parse back to the same request; an error must be a valid reply.
#include <algorithm>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "relayd/control_protocol.hpp"

namespace proto = relayd::control_protocol;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view line(reinterpret_cast<const char*>(data), size);
  auto req = proto::parse_request(line);
  if (!req) {
    boost::json::error_code ec;
    auto v = boost::json::parse(proto::error_line(req.error()), ec);
    if (ec || !v.is_object() || proto::get_bool(v.as_object(), proto::key::ok)) std::abort();
    return 0;
  }
  auto verbs = proto::verbs();
  auto spec = std::find_if(verbs.begin(), verbs.end(),
                           [&](const proto::verb_spec& s) { return s.name == req->verb; });
  if (spec == verbs.end()) std::abort();
  boost::json::object again;
  switch (spec->args) {
    case proto::takes::nothing:
      if (req->which) std::abort();
      again = proto::make_request(req->verb);
      break;
    case proto::takes::id:
      again = proto::make_request(req->verb, req->id);
      break;
    case proto::takes::targets:
      if (!req->which || req->which->all != req->which->ids.empty()) std::abort();
      again = proto::make_request(req->verb, *req->which);
      break;
  }
  auto back = proto::parse_request(boost::json::serialize(again));
  if (!back || back->verb != req->verb || back->id != req->id) std::abort();
  if (req->which && (back->which->all != req->which->all || back->which->ids != req->which->ids))
    std::abort();
  return 0;
}
