// Implements daemon_reload.hpp.
#include "relayd/daemon_reload.hpp"

#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <cerrno>
#include <chrono>
#include <string>
#include <vector>

#include "relayd/auth_users.hpp"
#include "relayd/config_reload.hpp"
#include "relayd/delivery_agent.hpp"
#include "relayd/delivery_scheduler.hpp"
#include "relayd/dkim_sign.hpp"
#include "relayd/inbound_listener.hpp"
#include "relayd/local_aliases.hpp"
#include "relayd/log_sink.hpp"
#include "relayd/metrics.hpp"
#include "relayd/tls_server.hpp"

namespace relayd {
namespace {

std::string joined(const std::vector<std::string>& v, std::string_view separator = ", ") {
  std::string out;
  for (const auto& s : v) {
    if (!out.empty()) out += separator;
    out += s;
  }
  return out;
}

// Every file the new configuration names, loaded and dropped: the reload goes
// ahead only when each one would load. The error names every file that did not.
std::expected<void, std::string> check_files(const config& next) {
  std::vector<std::string> bad;
  if (!next.tls.cert.empty())
    if (auto t = load_server_tls(next.tls.cert, next.tls.key); !t)
      bad.push_back(t.error() + " (keeping the previous certificate)");
  if (!next.auth.users.empty())
    if (auto u = auth_users::load(next.auth.users); !u)
      bad.push_back("auth.users: " + u.error() + " (keeping the previous users)");
  struct stat st{};
  const std::string& aliases = next.local.aliases;
  if (!aliases.empty() && !(::stat(aliases.c_str(), &st) != 0 && errno == ENOENT))
    if (auto a = alias_table::load(aliases, alias_options_from(next)); !a)
      bad.push_back("local.aliases: " + a.error() + " (the previous aliases stay in use)");
  if (!next.dkim.empty())
    if (auto k = dkim_signer::load(next.dkim); !k)
      bad.push_back(k.error() + " (the previous DKIM keys stay in use)");
  if (!bad.empty()) return std::unexpected(joined(bad, "; "));
  return {};
}

double unix_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace

std::expected<std::string, std::string> reload_config(reload_targets& t, std::string_view trigger) {
  auto failed = [&](std::string why) -> std::expected<std::string, std::string> {
    spdlog::error("{}: reload failed, the running configuration stays: {}", trigger, why);
    t.registry.set_config_reload(false, 0);
    return std::unexpected(std::move(why));
  };
  auto fresh = load_config(t.path);
  if (!fresh) return failed(fresh.error());
  auto plan = plan_reload(t.live, std::move(*fresh));
  if (!plan) return failed(t.path + ": " + plan.error());
  if (auto ok = check_files(plan->next); !ok) return failed(ok.error());
  // The last step that may fail; it changes the routes only when it succeeds.
  if (auto ok = t.agent.reconfigure(plan->next); !ok) return failed(ok.error());

  t.live = std::move(plan->next);
  spdlog::default_logger()->set_level(spdlog_level(t.live.log.level));
  t.sched.apply_config();
  t.server.reload(std::string(trigger) + ": ");
  t.agent.reload_credentials();  // the OAuth2 secret and refresh token files
  if (auto loaded = t.aliases.load(); loaded)
    spdlog::info("{}: {}", trigger, *loaded);
  else
    spdlog::error("{}: {} (the previous aliases stay in use)", trigger, loaded.error());
  if (auto loaded = t.dkim.load(); loaded) {
    if (t.dkim.enabled()) spdlog::info("{}: {}", trigger, *loaded);
  } else {
    spdlog::error("{}: {} (the previous DKIM keys stay in use)", trigger, loaded.error());
  }
  for (const auto& key : plan->restart_needed)
    spdlog::warn("{}: {} changed: restart needed (the running value stays until then)", trigger,
                 key);
  t.registry.set_config_reload(true, unix_now());
  std::string summary = t.path + " reloaded";
  summary += plan->changed.empty() ? "; no change takes effect" : "; changed: " + joined(plan->changed);
  if (!plan->restart_needed.empty())
    summary += "; restart needed for: " + joined(plan->restart_needed);
  spdlog::info("{}: {}", trigger, summary);
  return summary;
}

}  // namespace relayd
