// Fuzz target: the inbound server session, bytes in, replies out. The input is
// fed in chunks whose sizes come from the first byte, and every message the
// session produces is acknowledged, so the whole state machine is reachable.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "smtp/server_session.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::size_t chunk = 1 + data[0] % 64;
  std::string_view in(reinterpret_cast<const char*>(data + 1), size - 1);

  smtp::session_options o;
  o.hostname = "fuzz.test";
  o.max_message_size = 4096;
  o.max_recipients = 5;
  int n = 0;
  o.new_id = [&n] { return "ID" + std::to_string(++n); };
  o.now = [] { return std::int64_t{1'700'000'000}; };
  smtp::client_info client{"127.0.0.1", "", (data[0] & 0x80) != 0};
  smtp::server_session s(std::move(o), client);
  s.start();
  while (!in.empty()) {
    auto piece = in.substr(0, chunk);
    auto step = s.feed(piece);
    if (step.consumed > piece.size()) std::abort();
    in.remove_prefix(step.consumed);
    if (step.what == smtp::server_session::event::close) break;
    if (step.what == smtp::server_session::event::message) {
      if (s.message_envelope().recipients.empty()) std::abort();
      (void)s.take_message();
      if (n % 2) s.message_queued();
      else s.message_failed(smtp::reply{452, "4.3.1", "full"});
    }
    if (s.output().size() > 1 << 20) std::abort();  // replies stay bounded
    s.clear_output();
  }
  return 0;
}
