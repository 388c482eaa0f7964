// relayctl: the admin tool, a thin client of relayd's control socket (JSON
// lines, see relayd/control_protocol.hpp), modelled on postqueue/postsuper. This
// file parses the arguments; control_client.cpp talks to the socket and
// relayctl_print.cpp runs and prints the commands.
// Exit codes: 0 success, 1 failed action (unknown ID, daemon not running: one
// line on stderr), 2 usage, 64 a bad filter value (--older 5x).
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
#include "cli/relayctl_destinations.hpp"
#include "cli/relayctl_dkim.hpp"
#include "cli/relayctl_tls_rpt.hpp"
#include "cli/relayctl_health.hpp"
#include "cli/relayctl_print.hpp"
#include "cli/relayctl_report.hpp"
#include "relayd/config.hpp"
#include "relayd/config_values.hpp"
#include "relayd/control_protocol.hpp"
#include "relayd/queue_filter.hpp"
#include "smtp/text.hpp"

namespace {

constexpr const char* default_config = "/etc/relayd/relayd.toml";
constexpr const char* default_socket = "/run/relayd/control.sock";

int usage(int code) {
  std::fprintf(code ? stderr : stdout,
               "usage: relayctl [-c CONFIG] [-S SOCKET] COMMAND\n"
               "  -p [--shape [--top N]]  list the queue (like postqueue -p); --shape: messages\n"
               "                         per recipient domain and age in minutes (like qshape)\n"
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
               "  filters, for -p -j -f -d -r -h -H and dead list/replay/purge (an action with\n"
               "  a filter and no ID works on every message it matches):\n"
               "    --from ADDR|DOMAIN|'<>'  sender    --to ADDR|DOMAIN  a queued recipient\n"
               "    --domain DOMAIN  a recipient's domain    --older DURATION (30m, 2h, 3d)\n"
               "    --reason TEXT    in a recipient's last reply (any case)\n"
               "    --to, --domain and --reason hold for one and the same recipient\n"
               "  stats [--json]         counts per state, oldest message age, spool use\n"
               "  reload                 have relayd re-read its configuration (as SIGHUP);\n"
               "                         exit 1 with the reason when the file is bad\n"
               "  health [--spool-warn PCT] [--spool-crit PCT] [--age-warn DUR] [--age-crit DUR]\n"
               "         [--deferred-warn N] [--deferred-crit N] [--dead-warn N] [--dead-crit N]\n"
               "                         one line; exit 0 OK, 1 WARNING, 2 CRITICAL (Nagios)\n"
               "  aliases-reload         check [local] aliases, then have relayd reload it\n"
               "                         (newaliases; exit 65: bad file, 75: not reloaded)\n"
               "  dkim keygen DOMAIN SELECTOR [--algorithm rsa2048|rsa1024|rsa4096|ed25519]\n"
               "              [--dir DIR]  write DIR/DOMAIN.SELECTOR.key, print its TXT record\n"
               "  dkim check [--json]    compare each [[dkim]] selector's DNS record with its key\n"
               "  destinations [--json]  per destination: queued, in flight, rate, state, until\n"
               "  suspend DEST [--for DURATION]  no delivery to DEST (until resumed)\n"
               "  resume DEST            end a suspension or backoff, deliver DEST's mail now\n"
               "                         (exit 1 unless every one is ok)\n"
               "  report [--since DURATION] [--until DURATION] [--top N] [--json]\n"
               "                         received, delivered, deferred, bounced per domain, top\n"
               "                         deferral reasons (default: the last 24h; exit 64: bad value)\n"
               "  tls-rpt send [DAY]     send the TLS reports (RFC 8460) of DAY (YYYY-MM-DD,\n"
               "                         UTC; default yesterday) now\n");
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

// A filter option's value, checked; exits 64 (EX_USAGE) with one line on stderr.
void set_filter(relayd::queue_filter& f, std::string_view option, const std::string& value) {
  auto bad = [&](const std::string& why) {
    std::fprintf(stderr, "relayctl: %s\n", why.c_str());
    std::exit(64);
  };
  if (value.empty())
    bad(std::string(option) + " needs a value" + (option == "--from" ? " (<> for the null sender)" : ""));
  if (option == "--older") {
    auto d = relayd::parse_duration(value);
    if (!d) bad("--older: " + d.error());
    f.older_seconds = d->count();
  } else {
    (option == "--from" ? f.from : option == "--to" ? f.to : option == "--domain" ? f.domain : f.reason) =
        value;
  }
  if (auto why = relayd::check_filter(f); !why.empty()) bad(why);
}

bool is_filter_option(std::string_view a) {
  return a == "--from" || a == "--to" || a == "--domain" || a == "--older" || a == "--reason";
}

// Whether the words after "dead" / "stats" make sense (if not, says why on
// stderr: the caller prints the usage).
bool words_ok(const std::string& command, const std::vector<std::string>& w, bool filtered) {
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
    if (w.size() == 2 || (sub != "show" && w.size() == 1 && filtered)) return true;
    return bad("dead " + sub + (sub == "show" ? " needs one ID" : " needs one ID or ALL, or a filter"));
  }
  return bad("unknown dead command '" + sub + "'");
}

}  // namespace

int main(int argc, char** argv) {
  std::optional<std::string> config_path, socket_path;
  std::string command, arg;
  std::vector<std::string> words;  // after "dead" or "stats"
  relayd::queue_filter filter;
  bool shape = false;
  std::optional<std::size_t> top;
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
    } else if (is_filter_option(a) && command != "dkim") {
      set_filter(filter, a, next());
    } else if (a == "--shape" && command == "-p") {
      shape = true;
    } else if (a == "--top" && command == "-p") {
      const std::string n = next();
      const auto v = smtp::text::parse_decimal(n, 1'000'000);
      if (!v || *v == 0) {
        std::fprintf(stderr, "relayctl: --top: want a number from 1 to 1000000, not \"%s\"\n",
                     n.c_str());
        return 64;
      }
      top = static_cast<std::size_t>(*v);
    } else if (command == "dead" || command == "stats" || command == "dkim" ||
               command == "destinations" || command == "suspend" || command == "resume" ||
               command == "health" || command == "report" || command == "tls-rpt") {
      words.emplace_back(a);
    } else if (!command.empty()) {
      std::fprintf(stderr, "relayctl: one command at a time ('%s' after '%s')\n", argv[i],
                   command.c_str());
      return usage(2);
    } else if (a == "-p" || a == "-j" || a == "-f") {
      command = a;
    } else if (a == "-s") {
      command = a;
      arg = next();
    } else if (a == "-d" || a == "-r" || a == "-h" || a == "-H") {
      // ID or ALL; none when a filter follows (every message it matches).
      command = a;
      if (i + 1 < argc && !is_filter_option(argv[i + 1])) arg = next();
    } else if (a == "dead" || a == "stats" || a == "aliases-reload" || a == "dkim" ||
               a == "reload" || a == "destinations" || a == "suspend" || a == "resume" ||
               a == "health" || a == "report" || a == "tls-rpt") {
      command = a;
    } else {
      std::fprintf(stderr, "relayctl: unknown command '%s'\n", argv[i]);
      return usage(2);
    }
  }
  if (command.empty()) return usage(2);
  const bool filtered = !filter.empty();
  if ((command == "dead" || command == "stats") && !words_ok(command, words, filtered))
    return usage(2);
  const bool takes_filter = command == "-p" || command == "-j" || command == "-f" ||
                            command == "-d" || command == "-r" || command == "-h" ||
                            command == "-H" || (command == "dead" && words[0] != "show");
  if (filtered && !takes_filter) {
    std::fprintf(stderr, "relayctl: %s takes no filter\n", command.c_str());
    return usage(2);
  }
  if (top && !shape) {
    std::fprintf(stderr, "relayctl: --top goes with -p --shape\n");
    return usage(2);
  }
  if (arg.empty() && !filtered && (command == "-d" || command == "-r" || command == "-h" || command == "-H")) {
    std::fprintf(stderr, "relayctl: %s needs an ID, ALL or a filter\n", command.c_str());
    return usage(2);
  }
  if (command == "dkim" && !relayctl::dkim_words_ok(words)) return usage(2);
  if (int code = 0; command == "tls-rpt" && !relayctl::tls_rpt_words_ok(words, code))
    return code == 64 ? code : usage(code);
  const bool destination_command =
      command == "destinations" || command == "suspend" || command == "resume";
  if (destination_command && !relayctl::destinations_words_ok(command, words)) return usage(2);
  std::expected<relayctl::health_thresholds, std::string> thresholds;
  if (command == "health" && !(thresholds = relayctl::parse_health_flags(words))) {
    std::fprintf(stderr, "relayctl: %s\n", thresholds.error().c_str());
    return usage(2);
  }
  auto report = command == "report" ? relayctl::parse_report_words(words)
                                    : std::expected<relayctl::report_options, relayctl::report_usage_error>{};
  if (!report) {
    std::fprintf(stderr, "relayctl: %s\n", report.error().why.c_str());
    return report.error().exit_code == 2 ? usage(2) : report.error().exit_code;
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
  if (command == "-p" && shape) return print_shape(c, filter, top.value_or(20));
  if (command == "-p") return print_queue(c, filter);
  if (command == "-j") return print_queue_json(c, filter);
  if (command == "-d") return delete_messages(c, arg, filter);
  if (command == "-f") return queue_action(c, verb::flush, "", filter);
  if (command == "-r") return queue_action(c, verb::requeue, arg, filter);
  if (command == "-h") return queue_action(c, verb::hold, arg, filter);
  if (command == "-H") return queue_action(c, verb::release, arg, filter);
  if (command == "stats") return stats(c, !words.empty());
  if (command == "reload") return reload(c);
  if (command == "report") return report_main(c, *report);
  if (command == "dkim") return dkim_check(c, words.size() == 2);
  if (command == "tls-rpt") return tls_rpt_main(c, words);
  if (destination_command) return destinations_main(c, command, words);
  if (command == "dead") {
    if (words[0] == "list") return dead_list(c, words.size() == 2, filter);
    if (words[0] == "show") return dead_show(c, words[1]);
    return dead_action(c, words[0], words.size() == 2 ? words[1] : "", filter);
  }
  return show_message(c, arg);
}
