// Implements local_aliases.hpp: the aliases file parser (logical lines, names,
// targets), the expansion done once at load time (recursion with loop and depth
// checks, self-aliases kept literally, duplicates dropped), and the per-message
// rewriting (recipients, masqueraded sender and From:). A bad file is an error
// value naming its line; nothing here throws on input or keeps half a table.
#include "relayd/local_aliases.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <unordered_set>
#include <utility>

#include "relayd/config.hpp"
#include "relayd/read_file.hpp"
#include "smtp/address.hpp"
#include "smtp/replies.hpp"
#include "smtp/text.hpp"

namespace relayd {
namespace {

using smtp::text::lower;

// ---- addresses ----

// The part before the last '@' (a quoted local part may hold an '@'), or all.
std::string_view local_part(std::string_view address) {
  const auto at = address.rfind('@');
  return at == std::string_view::npos ? address : address.substr(0, at);
}
std::string_view domain_part(std::string_view address) {
  const auto at = address.rfind('@');
  return at == std::string_view::npos ? std::string_view{} : address.substr(at + 1);
}

// The name a local part is looked up by: unquoted ("\"a b\"" -> "a b"), lower-case.
std::string lookup_key(std::string_view local) {
  std::string out;
  if (local.size() >= 2 && local.front() == '"' && local.back() == '"') {
    for (std::size_t i = 1; i + 1 < local.size(); ++i) {
      if (local[i] == '\\' && i + 2 < local.size()) ++i;
      out += local[i];
    }
  } else {
    out = local;
  }
  return lower(std::move(out));
}

// "user@Example.ORG" -> "user@example.org": the form addresses are queued and
// compared in (local parts keep their case, RFC 5321 2.4).
std::string normal_address(std::string_view address) {
  const auto at = address.rfind('@');
  if (at == std::string_view::npos) return std::string(address);
  return std::string(address.substr(0, at + 1)) + lower(std::string(address.substr(at + 1)));
}

bool domain_in(std::string_view domain, const std::vector<std::string>& domains) {
  return std::ranges::any_of(domains,
                             [&](const std::string& d) { return smtp::text::iequals(d, domain); });
}

// ---- the file ----

struct target {
  std::string text;  // bare name, or full address with its domain lower-cased
  bool bare = false;
  std::size_t line = 0;
};

struct entry {
  std::string name;  // as written (unquoted)
  std::size_t line = 0;
  std::vector<target> targets;
};

class parser {
 public:
  parser(std::string_view origin, const alias_options& o) : origin_(origin), options_(o) {}

  std::expected<std::vector<entry>, std::string> run(std::string_view text);

 private:
  // One logical line: its pieces and the physical line each starts on.
  struct logical {
    std::string text;
    std::vector<std::pair<std::size_t, std::size_t>> starts;  // (offset in text, line)
    std::size_t line_at(std::size_t offset) const {
      std::size_t line = starts.front().second;
      for (const auto& [off, l] : starts)
        if (off <= offset) line = l;
      return line;
    }
  };

  std::string error(std::size_t line, std::string_view what) const {
    return std::string(origin_) + ":" + std::to_string(line) + ": " + std::string(what);
  }
  std::expected<entry, std::string> parse_entry(const logical& l) const;
  std::expected<std::optional<target>, std::string> parse_target(std::string_view piece,
                                                                  std::size_t line,
                                                                  const std::string& name) const;

  std::string_view origin_;
  const alias_options& options_;
};

std::expected<std::vector<entry>, std::string> parser::run(std::string_view text) {
  std::vector<logical> lines;
  std::size_t number = 0;
  while (!text.empty()) {
    const auto nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
    ++number;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    const std::string_view content = smtp::text::trim(line);
    if (content.empty() || content.front() == '#') continue;  // blank line or comment
    if (smtp::text::is_blank(line.front())) {
      if (lines.empty()) return std::unexpected(error(number, "continuation line without an alias before it"));
      lines.back().starts.emplace_back(lines.back().text.size(), number);
      lines.back().text += ' ';
      lines.back().text += content;
      continue;
    }
    lines.push_back(logical{std::string(content), {{0, number}}});
  }
  std::vector<entry> out;
  std::unordered_map<std::string, std::size_t> seen;  // lower-case name -> its line
  for (const auto& l : lines) {
    auto e = parse_entry(l);
    if (!e) return std::unexpected(e.error());
    const auto [it, fresh] = seen.emplace(lower(e->name), e->line);
    if (!fresh)
      return std::unexpected(error(e->line, "duplicate alias \"" + e->name + "\" (first at line " +
                                                std::to_string(it->second) + ")"));
    out.push_back(std::move(*e));
  }
  return out;
}

std::expected<entry, std::string> parser::parse_entry(const logical& l) const {
  const std::string_view text = l.text;
  entry e;
  e.line = l.starts.front().second;
  std::size_t i = 0;
  if (text.front() == '"') {
    for (i = 1; i < text.size() && text[i] != '"'; ++i) {
      if (text[i] == '\\' && i + 1 < text.size()) ++i;
      e.name += text[i];
    }
    if (i == text.size()) return std::unexpected(error(e.line, "unterminated quoted alias name"));
    ++i;
    while (i < text.size() && smtp::text::is_blank(text[i])) ++i;
    if (i == text.size() || text[i] != ':')
      return std::unexpected(error(e.line, "missing ':' after the alias name \"" + e.name + "\""));
  } else {
    i = text.find(':');
    if (i == std::string_view::npos)
      return std::unexpected(error(e.line, "missing ':' (want NAME: TARGET, TARGET...)"));
    e.name = smtp::text::trim(text.substr(0, i));
    if (std::ranges::any_of(e.name, smtp::text::is_blank))
      return std::unexpected(error(e.line, "alias name \"" + e.name + "\" has a blank (quote it)"));
    if (e.name.find('@') != std::string::npos)
      return std::unexpected(
          error(e.line, "alias name \"" + e.name + "\" must be a local name, without @domain"));
  }
  if (e.name.empty()) return std::unexpected(error(e.line, "empty alias name"));
  // Targets: comma-separated, commas inside quotes or <...> do not count.
  std::size_t start = ++i;
  bool quoted = false, angle = false;
  for (; i <= text.size(); ++i) {
    const char c = i < text.size() ? text[i] : ',';
    if (quoted) {
      if (c == '\\') ++i;
      else if (c == '"') quoted = false;
      continue;
    }
    if (c == '"') quoted = true;
    else if (c == '<') angle = true;
    else if (c == '>') angle = false;
    else if (c == ',' && !angle) {
      auto t = parse_target(smtp::text::trim(text.substr(start, i - start)), l.line_at(start), e.name);
      if (!t) return std::unexpected(t.error());
      if (*t) e.targets.push_back(std::move(**t));
      start = i + 1;
    }
  }
  if (quoted) return std::unexpected(error(l.line_at(start), "unterminated quoted string"));
  if (e.targets.empty())
    return std::unexpected(error(e.line, "alias \"" + e.name + "\" has no target"));
  return e;
}

std::expected<std::optional<target>, std::string> parser::parse_target(
    std::string_view piece, std::size_t line, const std::string& name) const {
  if (piece.empty()) return std::nullopt;  // "a: b," or "a: b,, c"
  const std::string who = "alias \"" + name + "\": ";
  if (piece.size() >= 2 && piece.front() == '<' && piece.back() == '>')
    piece = smtp::text::trim(piece.substr(1, piece.size() - 2));
  const std::string_view bare = piece.starts_with('"') ? piece.substr(1) : piece;
  if (smtp::text::istarts_with(bare, ":include:"))
    return std::unexpected(error(line, who + ":include: is not supported; list the addresses here"));
  if (bare.starts_with('|'))
    return std::unexpected(error(line, who + "\"" + std::string(piece) +
                                           "\": |command targets are not supported "
                                           "(relayd delivers no mail locally)"));
  if (bare.starts_with('/'))
    return std::unexpected(error(line, who + "\"" + std::string(piece) +
                                           "\": /file targets are not supported "
                                           "(relayd delivers no mail locally)"));
  const auto at = piece.rfind('@');
  const auto quote_end = piece.rfind('"');
  const bool full = at != std::string_view::npos && (quote_end == std::string_view::npos || at > quote_end);
  const std::string mailbox = full ? std::string(piece) : std::string(piece) + "@example.invalid";
  if (auto ok = smtp::check_mailbox(mailbox, true); !ok)
    return std::unexpected(error(line, who + "bad " + (full ? "address" : "name") + " \"" +
                                           std::string(piece) + "\" (" +
                                           std::string(smtp::to_string(ok.error())) + ")"));
  return target{full ? normal_address(piece) : std::string(piece), !full, line};
}

// ---- expansion ----

class expander {
 public:
  expander(const std::vector<entry>& entries, std::string_view origin, const alias_options& o)
      : entries_(entries), origin_(origin), options_(o) {
    for (std::size_t i = 0; i < entries.size(); ++i) index_.emplace(lower(entries[i].name), i);
  }

  std::expected<std::unordered_map<std::string, std::vector<std::string>>, std::string> run() {
    for (const auto& [key, i] : index_)
      if (auto r = expand(key); !r) return std::unexpected(r.error());
    // An alias left with no address is no alias: its mail is refused (or goes
    // to local.fallback) instead of being queued for nobody.
    std::erase_if(done_, [](const auto& kv) { return kv.second.empty(); });
    std::ranges::sort(warnings_);
    warnings_.erase(std::unique(warnings_.begin(), warnings_.end()), warnings_.end());
    return std::move(done_);
  }
  std::vector<std::string> warnings() { return std::move(warnings_); }

 private:
  // The expansion of alias `key`, memoised; chain_ holds the aliases being expanded.
  std::expected<const std::vector<std::string>*, std::string> expand(const std::string& key) {
    if (auto it = done_.find(key); it != done_.end()) return &it->second;
    const entry& e = entries_[index_.at(key)];
    chain_.push_back(key);
    std::vector<std::string> out;
    std::size_t depth = 1;  // aliases on the longest path from this one, itself included
    for (const target& t : e.targets) {
      const bool lookup = t.bare || domain_in(domain_part(t.text), options_.local_domains);
      const std::string name = lookup ? lookup_key(t.bare ? t.text : local_part(t.text)) : "";
      const std::string literal =
          t.bare ? t.text + "@" + options_.qualify_domain : t.text;
      if (lookup && name != key && !index_.contains(name) &&
          domain_in(domain_part(literal), options_.local_domains)) {
        // A local address that is no alias leads nowhere (no local mailboxes).
        warnings_.push_back(fail(t.line, "alias \"" + e.name + "\": " + literal +
                                             " is a local address but no alias: left out"));
        continue;
      }
      if (!lookup || name == key || !index_.contains(name)) {
        // Not an alias, or the alias itself ("root: root"): delivered as written.
        out.push_back(literal);
        continue;
      }
      if (std::ranges::find(chain_, name) != chain_.end())
        return std::unexpected(fail(t.line, "alias loop: " + chain_text(name)));
      // Checked before recursing (bounds the stack) and after (an alias
      // expanded earlier may hide a long chain behind it).
      const auto too_deep = [&] {
        return fail(t.line, "aliases nested deeper than " + std::to_string(max_alias_depth) +
                                ": " + chain_text(name) + " -> ...");
      };
      if (chain_.size() >= max_alias_depth) return std::unexpected(too_deep());
      auto sub = expand(name);
      if (!sub) return sub;
      if (chain_.size() + depth_.at(name) > max_alias_depth) return std::unexpected(too_deep());
      depth = std::max(depth, depth_.at(name) + 1);
      out.insert(out.end(), (*sub)->begin(), (*sub)->end());
    }
    chain_.pop_back();
    depth_.emplace(key, depth);
    // Duplicates dropped, first one kept (addresses are already normalised).
    std::unordered_set<std::string> seen;
    std::erase_if(out, [&](const std::string& a) { return !seen.insert(a).second; });
    return &done_.emplace(key, std::move(out)).first->second;
  }

  std::string chain_text(const std::string& last) const {
    std::string s;
    for (const auto& k : chain_) s += entries_[index_.at(k)].name + " -> ";
    return s + entries_[index_.at(last)].name;
  }
  std::string fail(std::size_t line, std::string_view what) const {
    return std::string(origin_) + ":" + std::to_string(line) + ": " + std::string(what);
  }

  const std::vector<entry>& entries_;
  std::string_view origin_;
  const alias_options& options_;
  std::unordered_map<std::string, std::size_t> index_;  // lower-case name -> entry
  std::unordered_map<std::string, std::vector<std::string>> done_;
  std::unordered_map<std::string, std::size_t> depth_;  // of each alias in done_
  std::vector<std::string> chain_;
  std::vector<std::string> warnings_;
};

// ---- From: ----

bool domain_char(char c) {
  const auto u = static_cast<unsigned char>(c);
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '.' || u >= 0x80;
}

// One field body with addresses in `domains` moved to `new_domain`, skipping
// quoted strings and (nested) comments, where an '@' is not an address's.
std::string rewrite_domains(std::string_view f, const std::vector<std::string>& domains,
                            std::string_view new_domain) {
  std::string out;
  out.reserve(f.size());
  bool quoted = false;
  int comment = 0;
  for (std::size_t i = 0; i < f.size(); ++i) {
    const char c = f[i];
    if (quoted || comment > 0) {
      out += c;
      if (c == '\\' && i + 1 < f.size()) out += f[++i];
      else if (quoted && c == '"') quoted = false;
      else if (!quoted && c == '(') ++comment;
      else if (!quoted && c == ')') --comment;
      continue;
    }
    if (c == '"') quoted = true;
    if (c == '(') comment = 1;
    out += c;
    if (c != '@') continue;
    std::size_t j = i + 1;
    while (j < f.size() && domain_char(f[j])) ++j;
    if (domain_in(f.substr(i + 1, j - i - 1), domains)) {
      out += new_domain;
      i = j - 1;
    }
  }
  return out;
}

}  // namespace

alias_options alias_options_from(const config& cfg) {
  return {cfg.local.domain, cfg.local.domains};
}

std::expected<alias_table, std::string> alias_table::parse(std::string_view text,
                                                           std::string_view origin,
                                                           const alias_options& options) {
  auto entries = parser(origin, options).run(text);
  if (!entries) return std::unexpected(entries.error());
  expander x(*entries, origin, options);
  auto expansions = x.run();
  if (!expansions) return std::unexpected(expansions.error());
  alias_table t;
  t.expansions_ = std::move(*expansions);
  t.warnings_ = x.warnings();
  return t;
}

std::expected<alias_table, std::string> alias_table::load(const std::string& path,
                                                          const alias_options& options) {
  auto text = read_file(path);
  if (!text) return std::unexpected(text.error());
  return parse(*text, path, options);
}

const std::vector<std::string>* alias_table::expand(std::string_view local) const {
  const auto it = expansions_.find(lookup_key(local));
  return it == expansions_.end() ? nullptr : &it->second;
}

bool in_domains(std::string_view address, const std::vector<std::string>& domains) {
  const auto at = address.rfind('@');
  return at != std::string_view::npos && domain_in(address.substr(at + 1), domains);
}

std::expected<std::string, std::string> alias_source::load() {
  const std::string& path = cfg_.local.aliases;
  if (path.empty()) {
    set(std::make_shared<const alias_table>());
    return "local.aliases is empty: no aliases";
  }
  struct stat st{};
  if (::stat(path.c_str(), &st) != 0 && errno == ENOENT) {
    set(std::make_shared<const alias_table>());
    return "aliases " + path + ": not found: no aliases (local recipients go to local.fallback " +
           "or are refused)";
  }
  auto t = alias_table::load(path, alias_options_from(cfg_));
  if (!t) return std::unexpected(t.error());
  auto table = std::make_shared<const alias_table>(std::move(*t));
  std::string line = "aliases " + path + ": " + std::to_string(table->size()) + " aliases";
  for (const auto& w : table->warnings()) line += "; " + w;
  set(std::move(table));
  return line;
}

local_addresses::local_addresses(const config& cfg, std::shared_ptr<const alias_table> table)
    : cfg_(cfg), table_(table ? std::move(table) : std::make_shared<const alias_table>()) {
  sender_domains_ = cfg.local.domains;
  sender_domains_.push_back(lower(cfg.local.domain));
}

local_addresses::verdict local_addresses::resolve(std::string_view address,
                                                  std::vector<std::string>& out) const {
  if (!in_domains(address, cfg_.local.domains)) return verdict::not_local;
  if (const auto* e = table_->expand(local_part(address))) {
    out = *e;
    return verdict::expanded;
  }
  const std::string& fallback = cfg_.local.fallback;
  if (fallback.empty()) return verdict::unknown;
  const auto* e = in_domains(fallback, cfg_.local.domains) ? table_->expand(local_part(fallback))
                                                           : nullptr;
  out = e ? *e : std::vector<std::string>{normal_address(fallback)};
  return verdict::expanded;
}

std::optional<smtp::reply> local_addresses::check_recipient(std::string_view address) const {
  std::vector<std::string> ignored;
  if (resolve(address, ignored) == verdict::unknown)
    return smtp::replies::unknown_local_recipient(address);
  return std::nullopt;
}

std::vector<smtp::envelope_recipient> local_addresses::recipients(const smtp::envelope& env) const {
  std::vector<smtp::envelope_recipient> out;
  std::unordered_set<std::string> seen;
  auto add = [&](smtp::envelope_recipient r) {
    if (seen.insert(normal_address(r.address)).second) out.push_back(std::move(r));
  };
  for (const auto& r : env.recipients) {
    std::vector<std::string> to;
    // `unknown` was refused at RCPT; were it not, the address is kept as given.
    if (resolve(r.address, to) != verdict::expanded) {
      add(r);
      continue;
    }
    for (auto& a : to) {
      const bool same = a == normal_address(r.address);
      add({.address = same ? r.address : std::move(a),
           .notify = r.notify,
           .orcpt = same || !r.orcpt.empty() ? r.orcpt : "rfc822;" + r.address});
    }
  }
  return out;
}

std::string local_addresses::sender(const smtp::envelope& env) const {
  if (!env.local || cfg_.local.masquerade.empty() || !in_domains(env.sender, sender_domains_))
    return env.sender;
  return std::string(local_part(env.sender)) + "@" + cfg_.local.masquerade;
}

std::string local_addresses::message(const smtp::envelope& env, std::string message) const {
  if (!env.local || cfg_.local.masquerade.empty()) return message;
  return masquerade_from_header(std::move(message), sender_domains_, cfg_.local.masquerade);
}

std::string masquerade_from_header(std::string message, const std::vector<std::string>& domains,
                                   std::string_view new_domain) {
  const auto blank = message.find("\r\n\r\n");
  const std::size_t header_end = blank == std::string::npos ? message.size() : blank + 2;
  std::string out;
  out.reserve(message.size() + 64);
  std::size_t pos = 0;
  while (pos < header_end) {
    auto eol = message.find("\r\n", pos);
    eol = eol == std::string::npos || eol >= header_end ? header_end : eol + 2;
    const std::string_view line(message.data() + pos, eol - pos);
    std::size_t colon = 4;
    while (colon < line.size() && smtp::text::is_blank(line[colon])) ++colon;
    if (!smtp::text::istarts_with(line, "from") || colon >= line.size() || line[colon] != ':') {
      out += line;
      pos = eol;
      continue;
    }
    // The field and its folded continuation lines.
    std::size_t end = eol;
    while (end < header_end && smtp::text::is_blank(message[end])) {
      const auto next = message.find("\r\n", end);
      end = next == std::string::npos || next >= header_end ? header_end : next + 2;
    }
    out.append(line.substr(0, colon + 1));
    out += rewrite_domains(std::string_view(message).substr(pos + colon + 1, end - pos - colon - 1),
                           domains, new_domain);
    pos = end;
  }
  out.append(message, header_end);
  return out;
}

}  // namespace relayd
