// Opening the spool, seen from inside (spool_core.hpp): what happens when the
// map fills up while the databases are being created or upgraded.
#include <gtest/gtest.h>

#include "queue/lmdb.hpp"
#include "queue/spool.hpp"
#include "queue/spool_core.hpp"
#include "queue/spool_diag.hpp"
#include "tests/unit/queue/spool_test_util.hpp"

namespace {

using namespace queue_test;

// MDB_MAP_FULL while init_databases() still has its write transaction (as when
// a full version 1 spool gets its new databases): the map grows once that
// transaction has ended, and opening goes on. Growing it under the live
// transaction made LMDB refuse (EINVAL), resize() then closed the environment
// and the transaction was aborted on a freed environment.
TEST(spool_open, map_full_while_creating_the_databases_grows_the_map) {
  temp_dir d;
  const auto o = options_in(d);
  {
    queue::detail::spool_core core(o);
    core.fail_next_commits(MDB_MAP_FULL, 1);
    auto opened = core.open();
    ASSERT_TRUE(opened) << opened.error();
    EXPECT_EQ(core.stats().map_resizes, 1u);
    EXPECT_GT(core.stats().map_size, o.initial_map_size);
  }
  auto s = open_or_fail(o);
  ASSERT_TRUE(s);
  EXPECT_EQ(enqueue_sync(*s, make_record(*s, 10), "body").code, queue::status::ok);
}

}  // namespace
