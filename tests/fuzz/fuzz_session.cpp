// Fuzz target: the inbound server session, bytes in, replies out. The input is
// fed in chunks whose sizes come from the first byte, and every event is
// answered as the pump answers it (messages queued or refused, STARTTLS
// handshakes, credential checks), so the whole state machine is reachable.
//
// Input: byte 0: bits 0-5 chunk size - 1, 64 an options byte follows, 128 the
// client may relay. Options byte: 1 STARTTLS offered, 2 TLS from the start,
// 4 AUTH, 8 AUTH without TLS, 16 AUTH required, 32 one AUTH failure allowed.
// The password "pass" for the user "user" is accepted; anything else refused.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "smtp/server_session.hpp"

#define CHECK(ok) \
  ((ok) ? void() : (std::fprintf(stderr, "check failed, line %d: %s\n", __LINE__, #ok), std::abort()))

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::size_t chunk = 1 + data[0] % 64;
  const bool relay = (data[0] & 0x80) != 0;
  std::uint8_t flags = 0;
  std::size_t header = 1;
  if (data[0] & 0x40) {
    if (size < 2) return 0;
    flags = data[1];
    header = 2;
  }
  std::string_view in(reinterpret_cast<const char*>(data + header), size - header);

  smtp::session_options o;
  o.hostname = "fuzz.test";
  o.max_message_size = 4096;
  o.max_recipients = 5;
  int n = 0;
  o.new_id = [&n] { return "ID" + std::to_string(++n); };
  o.now = [] { return std::int64_t{1'700'000'000}; };
  o.starttls = flags & 1;
  o.tls_active = flags & 2;
  o.auth = flags & 4;
  o.auth_without_tls = flags & 8;
  o.auth_required = flags & 16;
  o.max_auth_failures = flags & 32 ? 1 : 3;
  const std::size_t max_failures = o.max_auth_failures;
  smtp::client_info client{"127.0.0.1", "", relay};
  smtp::server_session s(std::move(o), client);
  s.start();
  bool tls = flags & 2;
  CHECK(s.tls_active() == tls);
  while (!in.empty()) {
    auto piece = in.substr(0, chunk);
    auto step = s.feed(piece);
    CHECK(step.consumed <= piece.size());
    in.remove_prefix(step.consumed);
    using event = smtp::server_session::event;
    if (step.what == event::close) break;
    if (step.what == event::message) {
      CHECK(!s.message_envelope().recipients.empty());
      (void)s.take_message();
      if (n % 2) s.message_queued();
      else s.message_failed(smtp::reply{452, "4.3.1", "full"});
    }
    if (step.what == event::starttls) {
      CHECK(!tls);
      // The pump drops what it read after STARTTLS, then does the handshake.
      in.remove_prefix(piece.size() - step.consumed);
      s.tls_started();
      tls = true;
      CHECK(s.tls_active());
    }
    if (step.what == event::auth) {
      const std::string user = s.auth_user();
      const bool ok = user == "user" && s.auth_password() == "pass";
      const std::size_t failures = s.auth_failures();
      s.auth_result(ok);
      CHECK(s.auth_password().empty());  // wiped
      if (ok) CHECK(s.authenticated_user() == "user");
      else CHECK(s.auth_failures() == failures + 1);
    }
    CHECK(s.auth_failures() <= max_failures);
    CHECK(s.output().find("cGFzcw") == std::string::npos);  // base64 "pass" never echoed
    CHECK(s.output().size() <= 1 << 20);  // replies stay bounded
    s.clear_output();
  }
  return 0;
}
