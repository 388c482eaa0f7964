// The spool's MTA-STS policy cache (store_mta_sts, mta_sts_record): a record
// survives a reopen (a restart), a new one replaces it, an empty one deletes it,
// and a domain that cannot be a key is refused, never a crash.
#include <gtest/gtest.h>

#include <string>

#include "queue/spool.hpp"
#include "tests/unit/queue/spool_test_util.hpp"

namespace {

using namespace queue_test;
using queue::status;

queue::result store_sync(queue::spool& s, std::string domain, std::string record) {
  sync_call<queue::result> c;
  s.store_mta_sts(std::move(domain), std::move(record), c.callback());
  return std::get<0>(c.f.get());
}

TEST(spool_mta_sts, a_record_survives_a_reopen) {
  temp_dir d;
  {
    auto s = open_or_fail(options_in(d));
    ASSERT_TRUE(s);
    EXPECT_FALSE(s->mta_sts_record("example.org"));
    ASSERT_EQ(store_sync(*s, "example.org", "policy one").code, status::ok);
    EXPECT_EQ(s->mta_sts_record("example.org"), "policy one");
    EXPECT_FALSE(s->mta_sts_record("example.net"));
  }
  auto s = open_or_fail(options_in(d));
  ASSERT_TRUE(s);
  EXPECT_EQ(s->mta_sts_record("example.org"), "policy one");
}

TEST(spool_mta_sts, a_new_record_replaces_and_an_empty_one_deletes) {
  temp_dir d;
  auto s = open_or_fail(options_in(d));
  ASSERT_TRUE(s);
  ASSERT_EQ(store_sync(*s, "example.org", "one").code, status::ok);
  ASSERT_EQ(store_sync(*s, "example.org", "two").code, status::ok);
  EXPECT_EQ(s->mta_sts_record("example.org"), "two");
  ASSERT_EQ(store_sync(*s, "example.org", "").code, status::ok);
  EXPECT_FALSE(s->mta_sts_record("example.org"));
  EXPECT_EQ(store_sync(*s, "example.org", "").code, status::ok);  // deleting nothing is fine
}

TEST(spool_mta_sts, a_domain_that_cannot_be_a_key_is_refused) {
  temp_dir d;
  auto s = open_or_fail(options_in(d));
  ASSERT_TRUE(s);
  EXPECT_EQ(store_sync(*s, "", "x").code, status::error);
  EXPECT_EQ(store_sync(*s, std::string(300, 'a'), "x").code, status::error);
  EXPECT_FALSE(s->mta_sts_record(""));
  EXPECT_FALSE(s->mta_sts_record(std::string(300, 'a')));
  // The spool still works.
  ASSERT_EQ(store_sync(*s, "example.org", "ok").code, status::ok);
  EXPECT_EQ(s->mta_sts_record("example.org"), "ok");
}

}  // namespace
