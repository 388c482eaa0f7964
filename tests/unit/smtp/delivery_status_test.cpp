// smtp/delivery_status: the client's failure policy on its own: what a reply
// decides for a recipient, which replies throttle a destination, the DSN status
// of a reply with and without an enhanced code, and the names of the enums.
#include "smtp/delivery_status.hpp"

#include <gtest/gtest.h>

namespace smtp {
namespace {

TEST(delivery_status, reply_class_decides_the_status) {
  EXPECT_EQ(status_of(reply{250, "2.0.0", "ok"}), delivery_status::delivered);
  EXPECT_EQ(status_of(reply{251, "", "forwarded"}), delivery_status::delivered);
  EXPECT_EQ(status_of(reply{450, "4.2.0", "busy"}), delivery_status::temporary);
  EXPECT_EQ(status_of(reply{550, "5.1.1", "no such user"}), delivery_status::permanent);
  // Not a final answer to a command that wanted one: retry later, never bounce.
  EXPECT_EQ(status_of(reply{354, "", "go ahead"}), delivery_status::temporary);
}

TEST(delivery_status, throttling_classification) {
  EXPECT_TRUE(is_throttling(reply{421, "", "bye"}));
  EXPECT_TRUE(is_throttling(reply{421, "4.3.2", "shutting down"}));
  EXPECT_TRUE(is_throttling(reply{450, "4.7.1", "greylisted"}));
  EXPECT_TRUE(is_throttling(reply{451, "4.7.650", "rate limited"}));
  EXPECT_FALSE(is_throttling(reply{451, "4.3.0", "local error"}));
  EXPECT_FALSE(is_throttling(reply{451, "", "rate limited"}));
  EXPECT_FALSE(is_throttling(reply{550, "5.7.1", "denied"}));
}

TEST(delivery_status, dsn_status_prefers_the_enhanced_code) {
  EXPECT_EQ(dsn_status(reply{550, "5.1.1", "x"}), "5.1.1");
  EXPECT_EQ(dsn_status(reply{451, "", "x"}), "4.0.0");
  EXPECT_EQ(dsn_status(reply{250, "", "x"}), "2.0.0");
  EXPECT_EQ(dsn_status(reply{554, "", "x"}), "5.0.0");
}

TEST(delivery_status, names) {
  EXPECT_EQ(to_string(delivery_status::delivered), "delivered");
  EXPECT_EQ(to_string(delivery_status::temporary), "temporary");
  EXPECT_EQ(to_string(delivery_status::permanent), "permanent");
  EXPECT_EQ(to_string(failure_cause::auth_rejected), "authentication rejected");
  EXPECT_EQ(to_string(failure_cause::tls_unavailable), "TLS unavailable");
  EXPECT_EQ(to_string(failure_cause::connection_lost), "connection lost");
}

}  // namespace
}  // namespace smtp
