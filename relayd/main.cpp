// relayd entry point: command line, configuration, logging, then the daemon.
//   relayd [--config FILE]        run in the foreground (default /etc/relayd/relayd.toml)
//   relayd --check-config FILE    validate only: exit 0, or 2 with "FILE: KEY: problem"
#include <spdlog/spdlog.h>

#include <malloc.h>
#include <unistd.h>

#include <chrono>
#include <cstddef>
#include <cstdio>
#include <memory>
#include <exception>
#include <cstring>
#include <string>
#include <string_view>
#include <utility>

#include "relayd/config.hpp"
#include "relayd/daemon.hpp"
#include "relayd/log_sink.hpp"

namespace {

constexpr const char* default_config = "/etc/relayd/relayd.toml";

int usage(FILE* out, int code) {
  std::fprintf(out,
               "usage: relayd [--config FILE]\n"
               "       relayd --check-config FILE\n"
               "       relayd --version\n");
  return code;
}

}  // namespace

int main(int argc, char** argv) {
  // Message buffers (the DATA content, the message with its Received: header,
  // LMDB's copy of the value) are 100 KiB-35 MiB, over glibc's default mmap and
  // trim thresholds: every message then mapped fresh pages and faulted them in,
  // and freeing them gave them back to the kernel (madvise). Keeping such blocks
  // in the heap cut relayd's CPU per 100 KiB message by ~40 % (BENCHMARKS.md);
  // at most 32 MiB of free heap per arena stays mapped.
  ::mallopt(M_MMAP_THRESHOLD, 32 << 20);
  ::mallopt(M_TRIM_THRESHOLD, 32 << 20);

  std::string config_path = default_config;
  bool check_only = false;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    if ((a == "--config" || a == "-c" || a == "--check-config") && i + 1 < argc) {
      check_only = check_only || a == "--check-config";
      config_path = argv[++i];
    } else if (a == "--version") {
      std::printf("relayd 0.1.0\n");
      return 0;
    } else if (a == "--help" || a == "-h") {
      return usage(stdout, 0);
    } else {
      std::fprintf(stderr, "relayd: unknown argument '%s'\n", argv[i]);
      return usage(stderr, 2);
    }
  }

  auto cfg = relayd::load_config(config_path);
  if (!cfg) {
    std::fprintf(stderr, "%s\n", cfg.error().c_str());
    return 2;
  }
  if (check_only) {
    std::printf("%s: configuration OK\n", config_path.c_str());
    return 0;
  }

  // Log lines are formatted by the caller and written in batches by the sink's
  // own thread (relayd/log_sink.hpp): the I/O thread never writes to stderr and
  // pays no wake-up per line; no line is dropped. `flush_logs` writes what is
  // left on every way out of main (a critical line before exit is kept).
  // Under journald the sink prefixes each line with its priority ("<3>") and
  // the journal records the time and PID itself.
  const bool journal = relayd::stderr_is_journal();
  auto logger = std::make_shared<spdlog::logger>(
      "relayd",
      std::make_shared<relayd::batched_stderr_sink>(std::chrono::milliseconds(10), journal));
  // The pid is written into the pattern once: %P would cost a getpid() per line.
  logger->set_pattern(journal ? std::string("%v")
                              : fmt::format("%Y-%m-%dT%H:%M:%S.%e relayd[{}] %l: %v", ::getpid()));
  logger->set_level(relayd::spdlog_level(cfg->log.level));  // [log] level; a reload sets it again
  spdlog::set_default_logger(logger);
  struct flush_logs {
    ~flush_logs() { spdlog::shutdown(); }  // drains the queue, joins the thread
  } flush_at_exit;
  try {
    return relayd::run_daemon(std::move(*cfg), config_path);
  } catch (const std::exception& e) {
    // A start-up step that throws (e.g. an unreadable relayhost_password_file)
    // says what and exits 1 instead of aborting.
    spdlog::critical("{}", e.what());
    return 1;
  }
}
