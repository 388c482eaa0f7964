// relayctl: the admin tool, a thin client of relayd's control socket (JSON
// lines, see relayd/control_protocol.hpp), modelled on postqueue/postsuper. This
// file parses the arguments; control_client.cpp talks to the socket and
// relayctl_print.cpp runs and prints the commands.
// Exit codes: 0 success, 1 failed action (unknown ID, daemon not running: one
// line on stderr), 2 usage.
#include <cstdio>
#include <cstdlib>
#include <expected>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cli/control_client.hpp"
#include "cli/newaliases.hpp"
#include "cli/relayctl_dkim.hpp"
#include "cli/relayctl_health.hpp"
#include "cli/relayctl_print.hpp"
#include "relayd/config.hpp"
#include "relayd/control_protocol.hpp"

namespace {

constexpr const char* default_config = "/etc/relayd/relayd.toml";
constexpr const char* default_socket = "/run/relayd/control.sock";

int usage(int code) {
  std::fprintf(code ? stderr : stdout,
               "usage: relayctl [-c CONFIG] [-S SOCKET] COMMAND\n"
               "  -p            list the queue (like postqueue -p)\n"
               "  -j            list the queue, one JSON object per message\n"
               "  -f            flush: attempt every deferred message now\n"
               "  -d ID|ALL     delete messages\n"
               "  -r ID|ALL     requeue: attempt now with the current configuration\n"
               "  -h ID|ALL     hold (no delivery until released)\n"
               "  -H ID|ALL     release held messages\n"
               "  -s ID         show a message: envelope, recipients, raw content\n"
               "  dead list [--json]     list the dead spool (failed messages)\n"
               "  dead show ID           a dead entry: envelope, failures, raw content\n"
               "  dead replay ID|ALL     put failed recipients back in the queue, attempt now\n"
               "  dead purge ID|ALL      delete dead entries\n"
               "  stats [--json]         counts per state, oldest message age, spool use\n"
               "  health [--spool-warn PCT] [--spool-crit PCT] [--age-warn DUR] [--age-crit DUR]\n"
               "         [--deferred-warn N] [--deferred-crit N] [--dead-warn N] [--dead-crit N]\n"
               "                         one line; exit 0 OK, 1 WARNING, 2 CRITICAL (Nagios)\n"
               "  aliases-reload         check [local] aliases, then have relayd reload it\n"
               "                         (newaliases; exit 65: bad file, 75: not reloaded)\n"
               "  dkim keygen DOMAIN SELECTOR [--algorithm rsa2048|rsa1024|rsa4096|ed25519]\n"
               "              [--dir DIR]  write DIR/DOMAIN.SELECTOR.key, print its TXT record\n"
               "  dkim check [--json]    compare each [[dkim]] selector's DNS record with its key\n"
               "                         (exit 1 unless every one is ok)\n");
  return code;
}

std::string socket_from_config(const std::string& path, bool required) {
  if (!required && !std::filesystem::exists(path)) return default_socket;
  auto cfg = relayd::load_config(path);
  if (!cfg) {
    // Not a usage error: the command was fine, the file it needs is not.
    std::fprintf(stderr, "relayctl: %s\n", cfg.error().c_str());
    std::exit(1);
  }
  return cfg->control.socket;
}

// Whether the words after "dead" / "stats" make sense (if not, says why on
// stderr: the caller prints the usage).
bool words_ok(const std::string& command, const std::vector<std::string>& w) {
  auto bad = [&](const std::string& why) {
    std::fprintf(stderr, "relayctl: %s\n", why.c_str());
    return false;
  };
  if (command == "stats") {
    if (w.empty() || (w.size() == 1 && w[0] == "--json")) return true;
    return bad("stats takes only --json");
  }
  if (w.empty()) return bad("dead needs list, show, replay or purge");
  const std::string& sub = w[0];
  if (sub == "list") {
    if (w.size() == 1 || (w.size() == 2 && w[1] == "--json")) return true;
    return bad("dead list takes only --json");
  }
  if (sub == "show" || sub == "replay" || sub == "purge") {
    if (w.size() == 2) return true;
    return bad("dead " + sub + (sub == "show" ? " needs one ID" : " needs one ID or ALL"));
  }
  return bad("unknown dead command '" + sub + "'");
}

}  // namespace

int main(int argc, char** argv) {
  std::optional<std::string> config_path, socket_path;
  std::string command, arg;
  std::vector<std::string> words;  // after "dead" or "stats"
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "relayctl: %s needs an argument\n", argv[i]);
        std::exit(usage(2));
      }
      return argv[++i];
    };
    if (a == "-c") {
      config_path = next();
    } else if (a == "-S") {
      socket_path = next();
    } else if (a == "--help") {
      return usage(0);
    } else if (command == "dead" || command == "stats" || command == "dkim" ||
               command == "health") {
      words.emplace_back(a);
    } else if (!command.empty()) {
      std::fprintf(stderr, "relayctl: one command at a time ('%s' after '%s')\n", argv[i],
                   command.c_str());
      return usage(2);
    } else if (a == "-p" || a == "-j" || a == "-f") {
      command = a;
    } else if (a == "-d" || a == "-s" || a == "-r" || a == "-h" || a == "-H") {
      command = a;
      arg = next();
    } else if (a == "dead" || a == "stats" || a == "aliases-reload" || a == "dkim" ||
               a == "health") {
      command = a;
    } else {
      std::fprintf(stderr, "relayctl: unknown command '%s'\n", argv[i]);
      return usage(2);
    }
  }
  if (command.empty()) return usage(2);
  if ((command == "dead" || command == "stats") && !words_ok(command, words)) return usage(2);
  if (command == "dkim" && !relayctl::dkim_words_ok(words)) return usage(2);
  std::expected<relayctl::health_thresholds, std::string> thresholds;
  if (command == "health" && !(thresholds = relayctl::parse_health_flags(words))) {
    std::fprintf(stderr, "relayctl: %s\n", thresholds.error().c_str());
    return usage(2);
  }
  if (command == "dkim" && words[0] == "keygen") return relayctl::dkim_keygen(words, config_path);

  if (command == "aliases-reload") {
    auto cfg = relayd::load_config(config_path.value_or(default_config));
    if (!cfg) {
      std::fprintf(stderr, "relayctl: %s\n", cfg.error().c_str());
      return 1;
    }
    if (socket_path) cfg->control.socket = *socket_path;
    return newaliases_main(*cfg, true);
  }
  std::string path = socket_path ? *socket_path
                     : config_path ? socket_from_config(*config_path, true)
                                   : socket_from_config(default_config, false);
  using namespace relayctl;
  if (command == "health") return health(path, *thresholds);
  namespace verb = relayd::control_protocol::verb;
  control_client c(path);
  if (command == "-p") return print_queue(c);
  if (command == "-j") return print_queue_json(c);
  if (command == "-d") return delete_messages(c, arg);
  if (command == "-f") return queue_action(c, verb::flush, "");
  if (command == "-r") return queue_action(c, verb::requeue, arg);
  if (command == "-h") return queue_action(c, verb::hold, arg);
  if (command == "-H") return queue_action(c, verb::release, arg);
  if (command == "stats") return stats(c, !words.empty());
  if (command == "dkim") return dkim_check(c, words.size() == 2);
  if (command == "dead") {
    if (words[0] == "list") return dead_list(c, words.size() == 2);
    if (words[0] == "show") return dead_show(c, words[1]);
    return dead_action(c, words[0], words[1]);
  }
  return show_message(c, arg);
}
