// Local addresses ([local] in DESIGN "The host's MTA"): the aliases file in
// /etc/aliases format, and what it does to a message from or to this host.
// - alias_table parses the file and expands every alias at load time, so a loop,
//   a chain deeper than max_alias_depth, a `|command`, `/file` or `:include:`
//   target, or bad syntax is an error "FILE:LINE: what" and no table at all;
//   a local address that is no alias is left out with a warning (no local
//   mailboxes); lookups never recurse and never fail.
// - alias_source is the daemon's current table: a reload that fails keeps it.
// - local_addresses applies one table and the [local] keys to a connection:
//   RCPT to an unknown local user is refused (550 5.1.1) unless local.fallback
//   is set; at enqueue local recipients become their expansion (ORCPT keeps the
//   original); local submissions get their sender domain masqueraded in the
//   envelope and the From: header.
// No Asio, no I/O except alias_table::load's one read; relayctl and sendmail link it.
#pragma once

#include <cstddef>
#include <expected>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "smtp/envelope.hpp"
#include "smtp/reply.hpp"

namespace relayd {

struct config;

// An alias expanding through more aliases than this is refused at load time.
inline constexpr std::size_t max_alias_depth = 20;

// What expansion needs from the configuration: the domain for bare names
// (local.domain) and the domains whose addresses are looked up (local.domains).
struct alias_options {
  std::string qualify_domain;
  std::vector<std::string> local_domains;  // lower-case
};
alias_options alias_options_from(const config& cfg);

class alias_table {
 public:
  alias_table() = default;  // no aliases

  // The aliases file's text; `origin` names it in errors ("origin:LINE: what").
  static std::expected<alias_table, std::string> parse(std::string_view text,
                                                       std::string_view origin,
                                                       const alias_options& options);
  // Reads and parses `path` ("PATH: cannot open: ..." when it cannot be read).
  static std::expected<alias_table, std::string> load(const std::string& path,
                                                      const alias_options& options);

  // The final addresses `local_part` expands to (case-insensitive, a quoted
  // local part is unquoted first); nullptr when it is not an alias.
  const std::vector<std::string>* expand(std::string_view local_part) const;
  std::size_t size() const { return expansions_.size(); }
  // "FILE:LINE: what" for each target that was left out: an address in a local
  // domain that is no alias (relayd has no local mailboxes). An alias left with
  // no address at all is not in the table.
  const std::vector<std::string>& warnings() const { return warnings_; }

 private:
  std::unordered_map<std::string, std::vector<std::string>> expansions_;  // lower-case name
  std::vector<std::string> warnings_;
};

// True when the domain of `address` (after its last '@') is one of `domains`
// (lower-case), compared without regard to case.
bool in_domains(std::string_view address, const std::vector<std::string>& domains);

// The daemon's table: the one new sessions take. load() on the main I/O thread
// (SIGHUP, relayctl aliases-reload); current() from any thread (the inbound
// sessions and the maildrop import).
class alias_source {
 public:
  explicit alias_source(const config& cfg) : cfg_(cfg) {}
  // (Re)reads local.aliases. Success: the line to log ("aliases FILE: N aliases";
  // a missing file is no aliases, said so). Failure: the error, and the table in
  // use stays.
  std::expected<std::string, std::string> load();
  std::shared_ptr<const alias_table> current() const {
    std::lock_guard lk(mu_);
    return table_;
  }

 private:
  void set(std::shared_ptr<const alias_table> t) {
    std::lock_guard lk(mu_);
    table_ = std::move(t);
  }

  const config& cfg_;  // outlives this (run_daemon's)
  mutable std::mutex mu_;  // guards table_ (the pointer; the table is const)
  std::shared_ptr<const alias_table> table_ = std::make_shared<const alias_table>();
};

// One connection's local addresses: the table current when it began (a reload
// applies to the next connection) and the [local] keys. Both outlive it.
class local_addresses {
 public:
  local_addresses(const config& cfg, std::shared_ptr<const alias_table> table);

  // For session_options::check_recipient: nullopt accepts (not a local domain,
  // an alias, or local.fallback is set); otherwise 550 5.1.1 user unknown.
  std::optional<smtp::reply> check_recipient(std::string_view address) const;

  // The envelope's recipients as they are queued: each one in a local domain
  // replaced by its expansion (or local.fallback's), ORCPT set to
  // "rfc822;ORIGINAL" when it had none; an address given twice is queued once.
  std::vector<smtp::envelope_recipient> recipients(const smtp::envelope& env) const;

  // Masquerading (local.masquerade), for local submissions only (env.local):
  // the envelope sender and every From: address whose domain is local
  // (local.domains or local.domain) get the masquerade domain. Otherwise the
  // sender and the message are returned unchanged.
  std::string sender(const smtp::envelope& env) const;
  std::string message(const smtp::envelope& env, std::string message) const;

 private:
  enum class verdict { not_local, expanded, unknown };
  verdict resolve(std::string_view address, std::vector<std::string>& out) const;

  const config& cfg_;
  std::shared_ptr<const alias_table> table_;
  std::vector<std::string> sender_domains_;  // local.domains plus local.domain
};

// The From: fields of `message` (header block, CRLF lines, folded fields
// included) with every address in `domains` moved to `new_domain`; display
// names, comments and quoted strings are left alone. Exposed for tests.
std::string masquerade_from_header(std::string message, const std::vector<std::string>& domains,
                                   std::string_view new_domain);

}  // namespace relayd
