// The OAuth2 SASL mechanisms: the XOAUTH2 and OAUTHBEARER strings byte for byte
// (against hand-written base64 of the documented layouts), and the client
// dialogue: initial response, the 334-first form for long tokens, the error
// challenge answered with the mechanism's dummy response, then the 535 as a
// local_fault auth_rejected failure; a server without the mechanism.
#include "smtp/sasl_oauth.hpp"

#include <gtest/gtest.h>

#include <string>

#include "smtp/base64.hpp"
#include "smtp/client_session.hpp"

namespace smtp {
namespace {

TEST(sasl_oauth, xoauth2_layout) {
  EXPECT_EQ(xoauth2_response("someuser@example.com", "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg"),
            std::string("user=someuser@example.com\x01"
                        "auth=Bearer ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg\x01\x01"));
  // The example of Google's XOAUTH2 documentation, encoded.
  EXPECT_EQ(base64::encode(xoauth2_response("someuser@example.com",
                                            "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg")),
            "dXNlcj1zb21ldXNlckBleGFtcGxlLmNvbQFhdXRoPUJlYXJlciB5YTI5LnZGOWRmdDRxbVRjMk52YjNSbGNrQmhkSFJoZG1semRHRXVZMjl0Q2cBAQ==");
}

TEST(sasl_oauth, oauthbearer_layout_and_escaping) {
  EXPECT_EQ(oauthbearer_response("user@example.com", "vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg=="),
            std::string("n,a=user@example.com,\x01"
                        "auth=Bearer vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==\x01\x01"));
  EXPECT_EQ(oauthbearer_response("a,b=c", "t"), std::string("n,a=a=2Cb=3Dc,\x01" "auth=Bearer t\x01\x01"));
}

struct dialogue {
  explicit dialogue(sasl_mechanism m, std::string token, std::string mechs = "XOAUTH2 OAUTHBEARER")
      : s([&] {
          client_options o;
          o.helo_name = "relay.test";
          o.auth_user = "u@example.test";
          o.auth_password = std::move(token);
          o.auth_mechanism = m;
          o.allow_plaintext_auth = true;
          return o;
        }()) {
    feed("220 mx ready\r\n");
    EXPECT_EQ(out(), "EHLO relay.test\r\n");
    last = feed("250-mx\r\n250 AUTH PLAIN LOGIN " + mechs + "\r\n");
  }
  client_session::event feed(const std::string& bytes) {
    auto st = s.feed(bytes);
    EXPECT_EQ(st.consumed, bytes.size());
    return st.what;
  }
  std::string out() {
    std::string o = s.output();
    s.clear_output();
    return o;
  }
  client_session s;
  client_session::event last{};
};

TEST(sasl_oauth, xoauth2_initial_response_then_235) {
  dialogue d(sasl_mechanism::xoauth2, "tok");
  EXPECT_EQ(d.out(), "AUTH XOAUTH2 " + base64::encode(xoauth2_response("u@example.test", "tok")) + "\r\n");
  EXPECT_EQ(d.feed("235 2.7.0 Accepted\r\n"), client_session::event::ready);
  EXPECT_TRUE(d.s.authenticated());
}

TEST(sasl_oauth, long_token_waits_for_the_334) {
  const std::string token(2000, 'T');  // Microsoft's tokens are ~2 KB
  dialogue d(sasl_mechanism::xoauth2, token);
  EXPECT_EQ(d.out(), "AUTH XOAUTH2\r\n");
  d.feed("334 \r\n");
  EXPECT_EQ(d.out(), base64::encode(xoauth2_response("u@example.test", token)) + "\r\n");
  EXPECT_EQ(d.feed("235 2.7.0 Accepted\r\n"), client_session::event::ready);
}

TEST(sasl_oauth, xoauth2_error_challenge_gets_an_empty_response_then_535) {
  dialogue d(sasl_mechanism::xoauth2, "revoked");
  d.out();
  d.feed("334 eyJzdGF0dXMiOiI0MDAiLCJzY2hlbWVzIjoiQmVhcmVyIn0=\r\n");
  EXPECT_EQ(d.out(), "\r\n");
  EXPECT_EQ(d.feed("535-5.7.8 Username and Password not accepted.\r\n535 5.7.8 Learn more\r\n"),
            client_session::event::failed);
  const auto& f = d.s.failure();
  EXPECT_EQ(f.cause, failure_cause::auth_rejected);
  EXPECT_TRUE(f.local_fault);
  EXPECT_EQ(f.response.code, 535);
  EXPECT_EQ(f.status, delivery_status::temporary);
}

TEST(sasl_oauth, oauthbearer_error_challenge_gets_ctrl_a) {
  dialogue d(sasl_mechanism::oauthbearer, "revoked");
  EXPECT_EQ(d.out(),
            "AUTH OAUTHBEARER " + base64::encode(oauthbearer_response("u@example.test", "revoked")) + "\r\n");
  d.feed("334 eyJzdGF0dXMiOiJpbnZhbGlkX3Rva2VuIn0=\r\n");
  EXPECT_EQ(d.out(), "AQ==\r\n");
  EXPECT_EQ(d.feed("535 5.7.8 Authentication credentials invalid\r\n"), client_session::event::failed);
  EXPECT_EQ(d.s.failure().cause, failure_cause::auth_rejected);
}

TEST(sasl_oauth, server_without_the_mechanism_is_our_configuration) {
  dialogue d(sasl_mechanism::oauthbearer, "t", "XOAUTH2");
  EXPECT_EQ(d.last, client_session::event::failed);
  EXPECT_EQ(d.s.failure().cause, failure_cause::auth_unavailable);
  EXPECT_TRUE(d.s.failure().local_fault);
  EXPECT_NE(d.s.failure().response.text.find("AUTH OAUTHBEARER"), std::string::npos);
}

}  // namespace
}  // namespace smtp
