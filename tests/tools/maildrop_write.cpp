// Test tool: writes one drop file with relayd's own writer
// (relayd/maildrop_file.hpp), as `sendmail` does when relayd is down, so the
// e2e tests exercise the real writer. The message comes on stdin as is (the
// caller gives CRLF line endings); prints the file's name. Exit 0 when the
// file is durable, 64 on bad arguments, 75 when the writer refused or failed
// (its reason on stderr).
//
//   maildrop_write DIR [-f SENDER] [-R full|hdrs] [-V ENVID] [-8] [-U]
//                  [-N NOTIFY_BITS] [-O ORCPT] RCPT... < message
//   (-N and -O apply to the recipients that follow them)
//   --seed-spool SPOOL (first): also commits the message into the spool under
//   the file's name, as the importer does, and stops there: the state a crash
//   between the importer's commit and its unlink leaves behind.
#include <cstdio>
#include <future>
#include <cstdlib>
#include <iostream>
#include <iterator>
#include <string>
#include <string_view>

#include "queue/clock.hpp"
#include "queue/spool.hpp"
#include "relayd/maildrop_file.hpp"

namespace {

// Commits `message` under the drop name `name`, as the importer would.
bool seed(const std::string& spool_dir, const std::string& name, const smtp::envelope& env,
          const std::string& message) {
  queue::spool_options o;
  o.dir = spool_dir;
  o.min_free_disk = 0;
  auto s = queue::spool::open(o);
  if (!s) {
    std::cerr << "maildrop_write: " << s.error() << "\n";
    return false;
  }
  queue::envelope_record rec;
  rec.id = (*s)->new_id();
  rec.arrival_us = queue::wall_clock_us();
  rec.sender = env.sender;
  for (const auto& r : env.recipients)
    rec.recipients.push_back({.address = r.address, .next_attempt_us = rec.arrival_us});
  rec.size = message.size();
  std::promise<queue::result> p;
  (*s)->enqueue_drop(name, std::move(rec), message, [&p](queue::result r) { p.set_value(r); });
  const auto r = p.get_future().get();
  if (r.code != queue::status::ok) std::cerr << "maildrop_write: " << r.detail << "\n";
  return r.code == queue::status::ok;
}

}  // namespace

#if defined(__SANITIZE_ADDRESS__)
// Sanitizer builds only. A set-group-id program (or one started with changed
// ids) is not dumpable, and LeakSanitizer cannot inspect such a process: it
// stops with a fatal error at exit. Leaks are checked by the unit tests.
extern "C" const char* __asan_default_options() { return "detect_leaks=0"; }
#endif

int main(int argc, char** argv) {
  std::string seed_spool;
  if (argc > 2 && std::string_view(argv[1]) == "--seed-spool") {
    seed_spool = argv[2];
    argv += 2;
    argc -= 2;
  }
  if (argc < 3) {
    std::cerr << "usage: maildrop_write DIR [-f SENDER] [-R full|hdrs] [-V ENVID] [-8] [-U] "
                 "[-N BITS] [-O ORCPT] RCPT... < message\n";
    return 64;
  }
  smtp::envelope env;
  std::uint8_t notify = 0;
  std::string orcpt;
  for (int i = 2; i < argc; ++i) {
    const std::string_view a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::cerr << "maildrop_write: " << a << " needs a value\n";
        std::exit(64);
      }
      return argv[++i];
    };
    if (a == "-f") {
      env.sender = value();
    } else if (a == "-R") {
      const auto v = value();
      env.ret = v == "full" ? smtp::dsn_ret::full : smtp::dsn_ret::headers;
    } else if (a == "-V") {
      env.envid = value();
    } else if (a == "-8") {
      env.body = smtp::body_type::eight_bit_mime;
    } else if (a == "-U") {
      env.smtputf8 = true;
    } else if (a == "-N") {
      notify = static_cast<std::uint8_t>(std::stoi(value()));
    } else if (a == "-O") {
      orcpt = value();
    } else {
      env.recipients.push_back({std::string(a), notify, orcpt});
    }
  }
  const std::string message((std::istreambuf_iterator<char>(std::cin)), {});
  auto name = relayd::maildrop::write(argv[1], env, message);
  if (!name) {
    std::cerr << "maildrop_write: " << name.error() << "\n";
    return 75;
  }
  if (!seed_spool.empty() && !seed(seed_spool, *name, env, message)) return 75;
  std::cout << *name << "\n";
  return 0;
}
