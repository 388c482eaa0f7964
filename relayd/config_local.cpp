// relayd/config_local.cpp: the host side of relayd.toml (config_loader.hpp): [local]
// (the local submission socket, the maildrop directory, local domains, aliases,
// masquerading, which users may submit and which senders each may use) and [control]
// (relayctl's socket and the admin group).
#include <toml++/toml.h>

#include <string>
#include <utility>
#include <vector>

#include "relayd/config_loader.hpp"
#include "smtp/text.hpp"

namespace relayd::config_detail {

field loader::control_section() {
  return section("control", {
                                {"socket", socket_path(c_.control.socket, false)},
                                {"admin_group", group_name(c_.control.admin_group)},
                            });
}

field loader::local_section() {
  return section(
      "local",
      {
          {"socket", socket_path(c_.local.socket, true)},
          {"maildrop", non_empty_path(c_.local.maildrop)},
          {"maildrop_group", group_name(c_.local.maildrop_group)},
          {"domain", domain(c_.local.domain)},
          {"domains",
           [this](const toml::node& n, const std::string& key) {
             auto items = strings(n, key);
             if (!items) return;
             std::vector<std::string> out;
             for (const auto& [text, node] : *items) {
               if (!valid_domain(text)) return fail(*node, key, "bad domain " + quoted(text));
               out.push_back(smtp::text::lower(text));
             }
             c_.local.domains = std::move(out);
           }},
          {"aliases", optional_path(c_.local.aliases)},
          {"fallback", optional_address(c_.local.fallback)},
          {"masquerade", domain(c_.local.masquerade)},
          {"allowed_users",
           [this](const toml::node& n, const std::string& key) {
             auto items = strings(n, key);
             if (!items) return;
             std::vector<std::string> out;
             for (const auto& [text, node] : *items) {
               if (text.empty() || !valid_user_name(text))
                 return fail(*node, key, "bad user name " + quoted(text));
               out.push_back(text);
             }
             c_.local.allowed_users = std::move(out);
           }},
          {"senders",
           [this](const toml::node& n, const std::string& key) {
             const toml::table* t = n.as_table();
             if (t == nullptr) return wrong_type(n, key, "a table of user = [senders]");
             for (auto&& [user, v] : *t) {
               const std::string name(user.str()), item_key = key + "." + name;
               if (name.empty() || !valid_user_name(name))
                 return fail(user.source(), item_key, "bad user name " + quoted(name));
               auto items = strings(v, item_key);
               if (!items) return;
               std::vector<std::string> patterns;
               for (const auto& [text, node] : *items) {
                 const bool ok =
                     text.starts_with("*@") ? valid_domain(text.substr(2)) : valid_address(text);
                 if (!ok)
                   return fail(*node, item_key,
                               "bad sender " + quoted(text) + " (use user@domain or *@domain)");
                 patterns.push_back(text);
               }
               c_.local.senders.emplace_back(name, std::move(patterns));
             }
           }},
      });
}

}  // namespace relayd::config_detail
