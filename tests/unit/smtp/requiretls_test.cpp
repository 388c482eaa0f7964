// REQUIRETLS (RFC 8689) in the smtp/ module: the MAIL parameter, when the
// server session offers and accepts it (under TLS and on the local socket
// only), the client's capability and MAIL line and its refusal to send a
// REQUIRETLS message to a server that cannot take it, and the redacted DSN.
#include <gtest/gtest.h>

#include <string>

#include "smtp/client_session.hpp"
#include "smtp/command.hpp"
#include "smtp/dsn.hpp"
#include "smtp/server_session.hpp"

namespace smtp {
namespace {

TEST(RequireTlsCommand, ParsesAndEncodesTheMailParameter) {
  auto c = command::parse("MAIL FROM:<a@b.example> requiretls SMTPUTF8");
  ASSERT_TRUE(c) << to_string(c.error());
  EXPECT_TRUE(c->requiretls);
  EXPECT_EQ(c->encode(), "MAIL FROM:<a@b.example> SMTPUTF8 REQUIRETLS\r\n");
  auto back = command::parse(c->encode().substr(0, c->encode().size() - 2));
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, *c);
  EXPECT_FALSE(command::parse("MAIL FROM:<a@b.example>")->requiretls);
}

TEST(RequireTlsCommand, RefusesAValueOrTwice) {
  EXPECT_EQ(command::parse("MAIL FROM:<a@b.example> REQUIRETLS=YES").error(),
            parse_error::bad_parameter);
  EXPECT_EQ(command::parse("MAIL FROM:<a@b.example> REQUIRETLS REQUIRETLS").error(),
            parse_error::bad_parameter);
  // RCPT has no such parameter.
  EXPECT_EQ(command::parse("RCPT TO:<a@b.example> REQUIRETLS").error(),
            parse_error::unknown_parameter);
}

// A server session fed whole lines; returns everything it answered.
struct server {
  explicit server(bool tls_active, bool local = false) {
    session_options o;
    o.hostname = "mx.test";
    o.starttls = true;
    o.tls_active = tls_active;
    o.new_id = [] { return std::string("ID1"); };
    o.now = [] { return std::int64_t{1700000000}; };
    client_info c;
    c.ip = local ? "" : "192.0.2.7";
    c.relay_allowed = true;
    if (local) c.local = local_identity{1000, 1000, 42, "alice", {}, {}};
    s = std::make_unique<server_session>(std::move(o), std::move(c));
    s->start();
    s->clear_output();
  }
  std::string say(std::string_view line) {
    std::string in = std::string(line) + "\r\n";
    std::string_view rest = in;
    while (!rest.empty()) {
      auto step = s->feed(rest);
      rest.remove_prefix(step.consumed);
      if (step.what == server_session::event::message) {
        env = s->message_envelope();
        (void)s->take_message();
        s->message_queued();
      }
      if (step.what == server_session::event::starttls || step.what == server_session::event::close)
        break;
    }
    std::string out = s->output();
    s->clear_output();
    return out;
  }
  std::unique_ptr<server_session> s;
  envelope env;
};

TEST(RequireTlsServer, NotOfferedBeforeStartTlsAndRefused) {
  server srv(false);
  const std::string ehlo = srv.say("EHLO client.test");
  EXPECT_NE(ehlo.find("STARTTLS"), std::string::npos);
  EXPECT_EQ(ehlo.find("REQUIRETLS"), std::string::npos) << ehlo;
  EXPECT_EQ(srv.say("MAIL FROM:<a@src.test> REQUIRETLS"),
            "530 5.7.10 REQUIRETLS needs a TLS session: issue STARTTLS first\r\n");
  // The refusal leaves no transaction behind: a plain MAIL works.
  EXPECT_EQ(srv.say("MAIL FROM:<a@src.test>").substr(0, 3), "250");
}

TEST(RequireTlsServer, OfferedAfterStartTlsAndStoredInTheEnvelope) {
  server srv(false);
  srv.say("EHLO client.test");
  EXPECT_EQ(srv.say("STARTTLS").substr(0, 3), "220");
  srv.s->tls_started();
  const std::string ehlo = srv.say("EHLO client.test");
  EXPECT_NE(ehlo.find("250 REQUIRETLS\r\n"), std::string::npos) << ehlo;
  EXPECT_EQ(srv.say("MAIL FROM:<a@src.test> REQUIRETLS").substr(0, 3), "250");
  EXPECT_EQ(srv.say("RCPT TO:<b@dst.test>").substr(0, 3), "250");
  EXPECT_EQ(srv.say("DATA").substr(0, 3), "354");
  srv.say("Subject: x\r\n\r\nbody\r\n.");
  EXPECT_TRUE(srv.env.requiretls);
  EXPECT_EQ(srv.env.sender, "a@src.test");
}

TEST(RequireTlsServer, OfferedOnTheLocalSocketAndUnderImplicitTls) {
  for (bool local : {true, false}) {
    server srv(!local, local);
    EXPECT_NE(srv.say("EHLO client.test").find("REQUIRETLS"), std::string::npos);
    EXPECT_EQ(srv.say("MAIL FROM:<a@src.test> REQUIRETLS").substr(0, 3), "250");
  }
}

TEST(RequireTlsServer, PlainMailLeavesTheFlagUnset) {
  server srv(true);
  srv.say("EHLO client.test");
  srv.say("MAIL FROM:<a@src.test>");
  srv.say("RCPT TO:<b@dst.test>");
  srv.say("DATA");
  srv.say("Subject: x\r\n\r\nbody\r\n.");
  EXPECT_EQ(srv.env.sender, "a@src.test");
  EXPECT_FALSE(srv.env.requiretls);
}

// The client: greeting and EHLO with `extensions`, under TLS when `tls`.
struct client {
  client(bool tls, std::string extensions) {
    client_options o;
    o.helo_name = "relay.test";
    o.implicit_tls = tls;
    s = std::make_unique<client_session>(o);
    feed("220 mx.test ESMTP\r\n");
    s->clear_output();
    feed("250-mx.test\r\n" + extensions + "250 8BITMIME\r\n");
    s->clear_output();
  }
  client_session::event feed(std::string in) {
    auto step = s->feed(in);
    return step.what;
  }
  std::unique_ptr<client_session> s;
};

outgoing_message message(bool requiretls) {
  outgoing_message m;
  m.sender = "a@src.test";
  m.recipients = {"b@dst.test"};
  m.body = "Subject: x\r\n\r\nbody\r\n";
  m.size = m.body.size();
  m.requiretls = requiretls;
  return m;
}

TEST(RequireTlsClient, ReadsTheCapability) {
  reply r{250, "", "mx.test\nREQUIRETLS\nPIPELINING"};
  EXPECT_TRUE(parse_capabilities(r).requiretls);
  EXPECT_FALSE(parse_capabilities(reply{250, "", "mx.test\nPIPELINING"}).requiretls);
}

TEST(RequireTlsClient, MailCarriesTheParameter) {
  client c(true, "250-REQUIRETLS\r\n");
  ASSERT_EQ(c.s->phase(), client_phase::ready);
  ASSERT_EQ(c.s->send(message(true)), client_session::event::need_more);
  EXPECT_EQ(c.s->output(), "MAIL FROM:<a@src.test> REQUIRETLS\r\n");
}

TEST(RequireTlsClient, AServerWithoutItGetsNothing) {
  client c(true, "");
  ASSERT_EQ(c.s->send(message(true)), client_session::event::transaction_done);
  EXPECT_EQ(c.s->output(), "");
  auto r = c.s->take_result();
  ASSERT_EQ(r.recipients.size(), 1u);
  EXPECT_EQ(r.recipients[0].status, delivery_status::permanent);
  EXPECT_EQ(r.recipients[0].response.enhanced, "5.7.30");
  EXPECT_FALSE(r.recipients[0].from_server);
}

TEST(RequireTlsClient, APlaintextConnectionGetsNothing) {
  client c(false, "250-REQUIRETLS\r\n");
  ASSERT_EQ(c.s->send(message(true)), client_session::event::transaction_done);
  EXPECT_EQ(c.s->output(), "");
  EXPECT_EQ(c.s->take_result().recipients[0].response.enhanced, "5.7.10");
}

TEST(RequireTlsClient, APlainMessageDoesNotAskForIt) {
  client c(true, "250-REQUIRETLS\r\n");
  ASSERT_EQ(c.s->send(message(false)), client_session::event::need_more);
  EXPECT_EQ(c.s->output(), "MAIL FROM:<a@src.test>\r\n");
}

TEST(RequireTlsDsn, RedactedNoticeHasNoPartOfTheOriginal) {
  dsn_request req;
  req.reporting_mta = "relay.test";
  req.queue_id = "Q1";
  req.original_sender = "a@src.test";
  req.now = 1700000000;
  req.original = "Subject: secret subject\r\n\r\nsecret body\r\n";
  req.include_body = true;
  dsn_recipient r;
  r.address = "b@dst.test";
  r.status = "5.7.30";
  req.recipients.push_back(r);
  const std::string full = compose_dsn(req);
  EXPECT_NE(full.find("secret subject"), std::string::npos);
  req.redacted = true;
  const std::string redacted = compose_dsn(req);
  EXPECT_EQ(redacted.find("secret"), std::string::npos) << redacted;
  EXPECT_NE(redacted.find("Status: 5.7.30"), std::string::npos);
  EXPECT_NE(redacted.find("REQUIRETLS"), std::string::npos) << "the text says why";
  EXPECT_EQ(redacted.find("message/rfc822"), std::string::npos);
}

}  // namespace
}  // namespace smtp
