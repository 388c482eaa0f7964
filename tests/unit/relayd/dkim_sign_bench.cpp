// Not a test: times dkim_signer::sign on one message (the Issue 13 profile).
//   relayd_dkim_sign_bench KEY.pem [ITERATIONS] [BODY_BYTES]
// Prints the DKIM-Signature fields for t=1700000000 (to compare outputs
// byte for byte across builds), then the CPU µs per sign().
#include <time.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "relayd/dkim_sign.hpp"

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s KEY.pem [ITERATIONS] [BODY_BYTES]\n", argv[0]);
    return 2;
  }
  const int n = argc > 2 ? std::atoi(argv[2]) : 20000;
  const std::size_t body_bytes = argc > 3 ? std::strtoul(argv[3], nullptr, 10) : 2048;
  relayd::config::dkim_entry e;
  e.domain = "example.org";
  e.selector = "sel";
  e.key = argv[1];
  auto signer = relayd::dkim_signer::load({e});
  if (!signer) {
    std::fprintf(stderr, "%s\n", signer.error().c_str());
    return 1;
  }
  std::string msg =
      "Received: from client.example.net (client [192.0.2.1]) by mx.example.org\r\n"
      "\tfor <rcpt@example.com>; Wed, 2 Dec 2026 17:00:00 +0000\r\n"
      "From: <sender@example.org>\r\nTo: <rcpt@example.com>\r\n"
      "Date: Wed, 2 Dec 2026 17:00:00 +0000\r\nMessage-Id: <1234.5678@example.org>\r\n"
      "Subject: benchmark   message\r\nMIME-Version: 1.0\r\n\r\n";
  while (msg.size() < body_bytes + 400) msg += "La la la la la la la la la la la la la la la la la la la la la la la la la la\r\n";
  const auto once = (*signer)->sign(msg, "sender@example.org", 1700000000);
  std::fputs(once.fields.c_str(), stdout);
  std::printf("log=%s\n", once.log.c_str());
  std::size_t sink = 0;
  auto cpu = [] {  // this process's CPU time: the figure under a shared machine's load
    timespec t{};
    ::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return std::chrono::seconds(t.tv_sec) + std::chrono::nanoseconds(t.tv_nsec);
  };
  const auto t0 = cpu();
  for (int i = 0; i < n; ++i) sink += (*signer)->sign(msg, "sender@example.org", 1700000000 + i).fields.size();
  const auto t1 = cpu();
  std::printf("sign(): %.2f CPU us/message (%d messages of %zu bytes, %zu)\n",
              std::chrono::duration<double, std::micro>(t1 - t0).count() / n, n, msg.size(), sink);
}
