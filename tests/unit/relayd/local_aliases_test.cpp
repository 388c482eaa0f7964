// relayd/local_aliases: the aliases file (syntax, recursion, loops, self-aliases,
// continuation lines, refused targets, errors with line numbers), the RCPT
// check and the recipients queued for local domains, and sender masquerading
// in the envelope and the From: header. No I/O but temporary files for load().
#include "relayd/local_aliases.hpp"

#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "relayd/config.hpp"

namespace relayd {
namespace {

using list = std::vector<std::string>;

const alias_options opts{"example.org", {"host.example.org", "localhost"}};

alias_table parse_ok(std::string_view text) {
  auto t = alias_table::parse(text, "aliases", opts);
  EXPECT_TRUE(t) << t.error();
  return t ? std::move(*t) : alias_table{};
}

std::string parse_error(std::string_view text) {
  auto t = alias_table::parse(text, "aliases", opts);
  EXPECT_FALSE(t) << "parsed, " << (t ? t->size() : 0) << " aliases";
  return t ? std::string() : t.error();
}

list expansion(const alias_table& t, std::string_view name) {
  const auto* e = t.expand(name);
  return e ? *e : list{"<not an alias>"};
}

TEST(AliasFile, NamesTargetsCommentsAndBlankLines) {
  const auto t = parse_ok(
      "# the admin\n"
      "\n"
      "admin: ops@corp.test\n"
      "   # an indented comment\n"
      "sales:  a@corp.test ,b@corp.test,<c@corp.test>\r\n"
      "\"john doe\": john@corp.test\n");
  EXPECT_EQ(t.size(), 3u);
  EXPECT_EQ(expansion(t, "admin"), list{"ops@corp.test"});
  EXPECT_EQ(expansion(t, "sales"), (list{"a@corp.test", "b@corp.test", "c@corp.test"}));
  EXPECT_EQ(expansion(t, "\"John Doe\""), list{"john@corp.test"});
  EXPECT_EQ(t.expand("nobody"), nullptr);
}

TEST(AliasFile, NamesAreCaseInsensitiveAndDomainsLowerCased) {
  const auto t = parse_ok("MAILER-DAEMON: Ops@Corp.TEST\n");
  EXPECT_EQ(expansion(t, "mailer-daemon"), list{"Ops@corp.test"});
  EXPECT_EQ(expansion(t, "Mailer-Daemon"), list{"Ops@corp.test"});
}

TEST(AliasFile, ContinuationLinesJoinTheEntry) {
  const auto t = parse_ok(
      "team: a@corp.test,\n"
      "\tb@corp.test,\n"
      "  c@corp.test\n"
      "other: d@corp.test\n");
  EXPECT_EQ(expansion(t, "team"), (list{"a@corp.test", "b@corp.test", "c@corp.test"}));
  EXPECT_EQ(expansion(t, "other"), list{"d@corp.test"});
}

TEST(AliasFile, RecursiveExpansionQualifiesBareNames) {
  const auto t = parse_ok(
      "postmaster: root\n"
      "MAILER-DAEMON: postmaster\n"
      "abuse: root, security\n"
      "root: admin@corp.test, backup\n");
  EXPECT_EQ(expansion(t, "mailer-daemon"), (list{"admin@corp.test", "backup@example.org"}));
  // "security" is no alias: qualified with the bare-address domain.
  EXPECT_EQ(expansion(t, "abuse"),
            (list{"admin@corp.test", "backup@example.org", "security@example.org"}));
}

TEST(AliasFile, LocalDomainAddressesAreExpandedToo) {
  const auto t = parse_ok(
      "ops: root@LOCALHOST\n"
      "root: admin@corp.test\n");
  EXPECT_EQ(expansion(t, "ops"), list{"admin@corp.test"});
}

TEST(AliasFile, SelfAliasIsDeliveredLiterally) {
  const auto t = parse_ok(
      "root: root, admin@corp.test\n"
      "postmaster: root\n"
      "lp: lp@localhost\n");
  EXPECT_EQ(expansion(t, "root"), (list{"root@example.org", "admin@corp.test"}));
  EXPECT_EQ(expansion(t, "postmaster"), (list{"root@example.org", "admin@corp.test"}));
  EXPECT_EQ(expansion(t, "lp"), list{"lp@localhost"});
}

TEST(AliasFile, LocalAddressesThatAreNoAliasLeadNowhere) {
  // The shipped file before the admin address is set: root is no alias.
  const alias_options local_qualify{"host.example.org", {"host.example.org", "localhost"}};
  auto t = alias_table::parse(
      "postmaster: root\n"
      "MAILER-DAEMON: postmaster\n"
      "abuse: root, security@corp.test\n"
      "lp: lp\n",
      "aliases", local_qualify);
  ASSERT_TRUE(t) << t.error();
  EXPECT_EQ(t->expand("postmaster"), nullptr);  // refused at RCPT, not queued for nobody
  EXPECT_EQ(t->expand("mailer-daemon"), nullptr);
  EXPECT_EQ(expansion(*t, "abuse"), list{"security@corp.test"});
  EXPECT_EQ(expansion(*t, "lp"), list{"lp@host.example.org"});  // asked for by name
  EXPECT_EQ(t->warnings(),
            (list{"aliases:1: alias \"postmaster\": root@host.example.org is a local address but "
                  "no alias: left out",
                  "aliases:3: alias \"abuse\": root@host.example.org is a local address but no "
                  "alias: left out"}));
}

TEST(AliasFile, DuplicatesRemovedFirstKept) {
  const auto t = parse_ok(
      "all: a, b, a@corp.test, A@CORP.test, b\n"
      "a: x@corp.test, y@corp.test\n"
      "b: y@corp.test, z@corp.test\n");
  EXPECT_EQ(expansion(t, "all"), (list{"x@corp.test", "y@corp.test", "z@corp.test",
                                       "a@corp.test", "A@corp.test"}));
}

TEST(AliasFile, LoopIsAnErrorNamingTheChain) {
  const auto e = parse_error(
      "a: b\n"
      "b: c\n"
      "c: x@corp.test, a\n");
  EXPECT_NE(e.find("alias loop"), std::string::npos) << e;
  // Whichever alias the loop is found from, it names the three of them in order.
  EXPECT_TRUE(e.find("a -> b -> c -> a") != std::string::npos ||
              e.find("b -> c -> a -> b") != std::string::npos ||
              e.find("c -> a -> b -> c") != std::string::npos)
      << e;
  EXPECT_TRUE(e.starts_with("aliases:1: ") || e.starts_with("aliases:2: ") ||
              e.starts_with("aliases:3: "))
      << e;
}

TEST(AliasFile, TwoAliasLoopThroughALocalAddress) {
  const auto e = parse_error("a: b@localhost\nb: a\n");
  EXPECT_NE(e.find("alias loop"), std::string::npos) << e;
}

TEST(AliasFile, DepthLimit) {
  std::string text;
  for (std::size_t i = 0; i < max_alias_depth + 5; ++i)
    text += "n" + std::to_string(i) + ": n" + std::to_string(i + 1) + "\n";
  const auto e = parse_error(text);
  EXPECT_NE(e.find("nested deeper than 20"), std::string::npos) << e;
  // Just under the limit is fine.
  text.clear();
  for (std::size_t i = 0; i + 1 < max_alias_depth; ++i)
    text += "n" + std::to_string(i) + ": n" + std::to_string(i + 1) + "\n";
  const auto t = parse_ok(text);
  EXPECT_EQ(expansion(t, "n0"), list{"n" + std::to_string(max_alias_depth - 1) + "@example.org"});
}

TEST(AliasFile, UnsupportedTargetsNameTheLine) {
  EXPECT_EQ(parse_error("root: a@corp.test\nlist: :include:/etc/list\n"),
            "aliases:2: alias \"list\": :include: is not supported; list the addresses here");
  auto e = parse_error("root: a@corp.test\n\nbounce: \"|/usr/bin/procmail\"\n");
  EXPECT_TRUE(e.starts_with("aliases:3: alias \"bounce\": ")) << e;
  EXPECT_NE(e.find("|command targets are not supported"), std::string::npos) << e;
  e = parse_error("log: a@corp.test,\n  /var/log/mail.txt\n");
  EXPECT_TRUE(e.starts_with("aliases:2: ")) << e;  // the continuation line that holds it
  EXPECT_NE(e.find("/file targets are not supported"), std::string::npos) << e;
  e = parse_error("pipe: |cat\n");
  EXPECT_NE(e.find("|command"), std::string::npos) << e;
}

TEST(AliasFile, SyntaxErrorsNameTheLine) {
  EXPECT_EQ(parse_error("ok: a@corp.test\nno colon here\n"),
            "aliases:2: missing ':' (want NAME: TARGET, TARGET...)");
  EXPECT_EQ(parse_error("  indented: a@corp.test\n"),
            "aliases:1: continuation line without an alias before it");
  EXPECT_EQ(parse_error("a: x@corp.test\n# c\nb:\n"), "aliases:3: alias \"b\" has no target");
  EXPECT_EQ(parse_error("a: x@corp.test\nA: y@corp.test\n"),
            "aliases:2: duplicate alias \"A\" (first at line 1)");
  EXPECT_EQ(parse_error("root@host: x@corp.test\n"),
            "aliases:1: alias name \"root@host\" must be a local name, without @domain");
  EXPECT_EQ(parse_error("two words: x@corp.test\n"),
            "aliases:1: alias name \"two words\" has a blank (quote it)");
  EXPECT_EQ(parse_error("\"open: x@corp.test\n"), "aliases:1: unterminated quoted alias name");
  auto e = parse_error("a: x@corp.test\nb: bad@@corp.test\n");
  EXPECT_TRUE(e.starts_with("aliases:2: alias \"b\": bad address \"bad@@corp.test\"")) << e;
  e = parse_error("a: x@corp.test\nb: x@-bad-.test\n");
  EXPECT_TRUE(e.starts_with("aliases:2: alias \"b\": bad address")) << e;
}

TEST(AliasFile, LoadNamesTheFile) {
  const auto dir = std::filesystem::temp_directory_path() / ("aliases-test-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const auto path = (dir / "aliases").string();
  std::ofstream(path) << "root: admin@corp.test\nbad\n";
  auto t = alias_table::load(path, opts);
  ASSERT_FALSE(t);
  EXPECT_EQ(t.error(), path + ":2: missing ':' (want NAME: TARGET, TARGET...)");
  t = alias_table::load((dir / "missing").string(), opts);
  ASSERT_FALSE(t);
  EXPECT_NE(t.error().find("cannot open"), std::string::npos) << t.error();
  std::filesystem::remove_all(dir);
}

// ---- a connection's local addresses ----

config local_config() {
  auto c = parse_config("hostname = \"host.example.org\"\n[local]\nmasquerade = \"corp.test\"\n");
  EXPECT_TRUE(c) << c.error();
  return *c;
}

std::shared_ptr<const alias_table> table(std::string_view text) {
  return std::make_shared<const alias_table>(parse_ok(text));
}

TEST(LocalAddresses, DefaultsFromTheConfig) {
  const auto cfg = local_config();
  // Bare names become user@hostname, a local domain, so they meet the aliases.
  EXPECT_EQ(cfg.local.domain, "host.example.org");
  EXPECT_EQ(cfg.local.domains, (list{"host.example.org", "localhost"}));
}

TEST(LocalAddresses, UnknownLocalUserRefusedUnlessFallback) {
  auto cfg = local_config();
  const local_addresses local(cfg, table("root: admin@corp.test\n"));
  EXPECT_EQ(local.check_recipient("root@host.example.org"), std::nullopt);
  EXPECT_EQ(local.check_recipient("ROOT@Host.Example.ORG"), std::nullopt);
  EXPECT_EQ(local.check_recipient("someone@elsewhere.test"), std::nullopt);
  const auto r = local.check_recipient("nobody@LOCALHOST");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->to_string(),
            "550 5.1.1 <nobody@LOCALHOST>: Recipient address rejected: user unknown in local "
            "recipient table");
  cfg.local.fallback = "catchall@corp.test";
  const local_addresses with_fallback(cfg, table("root: admin@corp.test\n"));
  EXPECT_EQ(with_fallback.check_recipient("nobody@localhost"), std::nullopt);
}

TEST(LocalAddresses, NoTableRefusesEveryLocalRecipient) {
  const auto cfg = local_config();
  const local_addresses local(cfg, nullptr);
  EXPECT_TRUE(local.check_recipient("root@localhost"));
  EXPECT_EQ(local.check_recipient("root@example.org"), std::nullopt);  // not in local.domains
}

TEST(LocalAddresses, RecipientsExpandedWithOrcpt) {
  auto cfg = local_config();
  cfg.local.fallback = "catchall@corp.test";
  const local_addresses local(
      cfg, table("root: admin@corp.test, ops@corp.test\npostmaster: root\nself: self\n"));
  smtp::envelope env;
  env.recipients = {
      {.address = "Root@host.example.org", .notify = smtp::notify_failure, .orcpt = ""},
      {.address = "postmaster@localhost", .notify = 0, .orcpt = "rfc822;pm@original.test"},
      {.address = "friend@elsewhere.test", .notify = 0, .orcpt = ""},
      {.address = "stranger@localhost", .notify = 0, .orcpt = ""},
      {.address = "self@localhost", .notify = 0, .orcpt = ""},
      {.address = "ops@corp.test", .notify = 0, .orcpt = ""},
  };
  const std::vector<smtp::envelope_recipient> want = {
      {.address = "admin@corp.test", .notify = smtp::notify_failure,
       .orcpt = "rfc822;Root@host.example.org"},
      {.address = "ops@corp.test", .notify = smtp::notify_failure,
       .orcpt = "rfc822;Root@host.example.org"},
      // postmaster's expansion is a duplicate of root's: queued once.
      {.address = "friend@elsewhere.test", .notify = 0, .orcpt = ""},
      {.address = "catchall@corp.test", .notify = 0, .orcpt = "rfc822;stranger@localhost"},
      {.address = "self@example.org", .notify = 0, .orcpt = "rfc822;self@localhost"},
      // ops@corp.test given again: already there.
  };
  EXPECT_EQ(local.recipients(env), want);
}

TEST(LocalAddresses, FallbackThatIsALocalAliasIsExpanded) {
  auto cfg = local_config();
  cfg.local.fallback = "root@localhost";
  const local_addresses local(cfg, table("root: admin@corp.test\n"));
  smtp::envelope env;
  env.recipients = {{.address = "x@localhost", .notify = 0, .orcpt = ""}};
  ASSERT_EQ(local.recipients(env).size(), 1u);
  EXPECT_EQ(local.recipients(env)[0].address, "admin@corp.test");
}

TEST(Masquerade, SenderOfLocalSubmissionsOnly) {
  const auto cfg = local_config();
  const local_addresses local(cfg, nullptr);
  smtp::envelope env;
  env.sender = "www-data@Host.Example.Org";
  EXPECT_EQ(local.sender(env), "www-data@Host.Example.Org");  // from the network: unchanged
  env.local = smtp::local_identity{.uid = 33, .user = "www-data"};
  EXPECT_EQ(local.sender(env), "www-data@corp.test");
  env.sender = "cron@example.org";  // the bare-address domain is local too
  EXPECT_EQ(local.sender(env), "cron@example.org");
  auto bare_domain = cfg;
  bare_domain.local.domain = "example.org";
  EXPECT_EQ(local_addresses(bare_domain, nullptr).sender(env), "cron@corp.test");
  env.sender = "app@elsewhere.test";
  EXPECT_EQ(local.sender(env), "app@elsewhere.test");
  env.sender = "";
  EXPECT_EQ(local.sender(env), "");
  auto off = cfg;
  off.local.masquerade = "";
  env.sender = "www-data@host.example.org";
  EXPECT_EQ(local_addresses(off, nullptr).sender(env), "www-data@host.example.org");
}

TEST(Masquerade, FromHeaderKeepsDisplayNameCommentsAndOtherFields) {
  const std::vector<std::string> domains{"host.example.org", "localhost"};
  const std::string msg =
      "Received: from local by host.example.org\r\n"
      "From: \"Cron @host.example.org\" <root@Host.Example.ORG> (via root@localhost)\r\n"
      "To: admin@host.example.org\r\n"
      "Subject: From: root@host.example.org\r\n"
      "\r\n"
      "From: root@host.example.org in the body\r\n";
  EXPECT_EQ(masquerade_from_header(msg, domains, "corp.test"),
            "Received: from local by host.example.org\r\n"
            "From: \"Cron @host.example.org\" <root@corp.test> (via root@localhost)\r\n"
            "To: admin@host.example.org\r\n"
            "Subject: From: root@host.example.org\r\n"
            "\r\n"
            "From: root@host.example.org in the body\r\n");
}

TEST(Masquerade, FoldedFromWithSeveralAddresses) {
  const std::vector<std::string> domains{"localhost"};
  const std::string msg =
      "from : a@localhost,\r\n"
      "  Bee <b@localhost>, c@other.test\r\n"
      "Subject: x\r\n"
      "\r\n"
      "body\r\n";
  EXPECT_EQ(masquerade_from_header(msg, domains, "corp.test"),
            "from : a@corp.test,\r\n"
            "  Bee <b@corp.test>, c@other.test\r\n"
            "Subject: x\r\n"
            "\r\n"
            "body\r\n");
  // A header-only message, and a From-like field name that is not From:.
  EXPECT_EQ(masquerade_from_header("From: a@localhost\r\n", domains, "corp.test"),
            "From: a@corp.test\r\n");
  EXPECT_EQ(masquerade_from_header("From-Address: a@localhost\r\n\r\n", domains, "corp.test"),
            "From-Address: a@localhost\r\n\r\n");
}

TEST(Masquerade, MessageOnlyForLocalSubmissions) {
  const auto cfg = local_config();
  const local_addresses local(cfg, nullptr);
  smtp::envelope env;
  const std::string msg = "From: Web <www-data@host.example.org>\r\n\r\nhi\r\n";
  EXPECT_EQ(local.message(env, msg), msg);
  env.local = smtp::local_identity{.uid = 33};
  EXPECT_EQ(local.message(env, msg), "From: Web <www-data@corp.test>\r\n\r\nhi\r\n");
}

}  // namespace
}  // namespace relayd
