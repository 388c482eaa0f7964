// Fuzz target: the /metrics endpoint's request judgement (classify_metrics_head
// and route_metrics_request, relayd/metrics_http_route.cpp), which faces the
// network. Every answer must be a status the server knows how to send, HEAD-only
// only with 200, and feeding the input in pieces (as reads arrive) must settle.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "relayd/metrics_http.hpp"

namespace {
void check(const relayd::http_route& r) {
  switch (r.status) {
    case 200: case 400: case 404: case 405: case 431: case 505: break;
    default: std::abort();
  }
  if (r.head_only && r.status != 200) std::abort();
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  check(relayd::route_metrics_request(input));
  // As the server reads: grow the buffer in pieces until an answer is decided.
  std::string buf;
  const std::size_t piece = size == 0 ? 1 : 1 + data[0] % 64;
  for (std::size_t at = 0; at < size; at += piece) {
    buf.append(input.substr(at, piece));
    if (auto r = relayd::classify_metrics_head(buf)) {
      check(*r);
      break;
    }
    if (buf.size() > relayd::metrics_server::max_head) std::abort();  // must have answered 431
  }
  return 0;
}
