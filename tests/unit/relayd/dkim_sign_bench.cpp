// Not a test: times dkim_signer::sign on one message (the Issue 13 profile).
//   relayd_dkim_sign_bench KEY.pem [ITERATIONS] [BODY_BYTES]
//   relayd_dkim_sign_bench --golden KEY.pem [MESSAGES]
// Prints the DKIM-Signature fields for t=1700000000 (to compare outputs
// byte for byte across builds), then the CPU µs per sign(). --golden prints
// the canonical forms and signature fields of MESSAGES pseudo-random messages
// (fixed seed: odd whitespace, folds, bare LF/CR, repeated fields) instead, so
// two builds' outputs can be compared with cmp.
#include <time.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>

#include "smtp/dkim_canon.hpp"

#include "relayd/dkim_sign.hpp"

namespace {

// A message from a fixed alphabet of troublesome pieces (the same for a seed).
std::string random_message(std::mt19937& rng) {
  static const char* pieces[] = {"From: ", "FROM :", "To:", "Subject:", "Cc: ", "Date:",
                                 "Message-ID:", "X-Other:", "Reply-To:", "List-Id:",
                                 "a", "bc@example.org", "<d@Example.ORG>", " ", "\t", "  \t ",
                                 "\r\n", "\r\n ", "\r\n\t", "\n", "\r", ":", ",", "\"q\"",
                                 "(c)", "\r\n\r\n", "x y", "\r\n\r\n\r\n"};
  std::uniform_int_distribution<std::size_t> pick(0, std::size(pieces) - 1), len(0, 80);
  std::string m = "From: <s@example.org>\r\n";
  for (std::size_t i = 0, n = len(rng); i < n; ++i) m += pieces[pick(rng)];
  return m;
}

int golden(const relayd::dkim_signer& signer, int n) {
  std::mt19937 rng(13);
  for (int i = 0; i < n; ++i) {
    const std::string m = random_message(rng);
    const auto split = smtp::dkim::split(m);
    const auto names = smtp::dkim::signed_names(split.fields);
    std::printf("#%d\n", i);
    for (const auto& f : split.fields) std::printf("[%s]", smtp::dkim::relaxed_header(f).c_str());
    std::printf("\nbody[%s]\n", smtp::dkim::relaxed_body(split.body).c_str());
    std::printf("hash[%s]\n", smtp::dkim::header_hash_input(split.fields, names).c_str());
    const auto r = signer.sign(m, "x@example.org", 1700000000);
    std::printf("%s%s\n", r.fields.c_str(), r.log.c_str());
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const bool gold = argc > 1 && std::string_view(argv[1]) == "--golden";
  if (gold) {
    --argc;
    ++argv;
  }
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s KEY.pem [ITERATIONS] [BODY_BYTES]\n", argv[0]);
    return 2;
  }
  const int n = argc > 2 ? std::atoi(argv[2]) : gold ? 3000 : 20000;
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
  if (gold) return golden(**signer, n);
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
