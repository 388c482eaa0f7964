// Opening the spool: one process at a time (the lock names the process that
// holds it), and, seen from inside (spool_core.hpp), what happens when the map
// fills up while the databases are being created or upgraded.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>

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

// A second process cannot open a spool that one has open; the refusal names
// the holder's PID; once the holder is gone the spool opens again.
TEST(spool_open, a_second_process_is_refused_with_the_holders_pid) {
  temp_dir d;
  const auto o = options_in(d);
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::close(ready[0]);
    auto s = queue::spool::open(o);
    const char c = s ? '1' : '0';
    if (::write(ready[1], &c, 1) != 1) ::_exit(2);
    ::pause();  // holds the spool until killed
    ::_exit(0);
  }
  ::close(ready[1]);
  char c = 0;
  const bool child_ready = ::read(ready[0], &c, 1) == 1 && c == '1';
  ::close(ready[0]);
  if (!child_ready) {
    ::kill(child, SIGKILL);
    ::waitpid(child, nullptr, 0);
    FAIL() << "the child could not open the spool";
  }

  auto again = queue::spool::open(o);
  const bool refused = !again;
  const std::string error = refused ? again.error() : "";
  again = std::unexpected(std::string("closed"));  // before the holder goes
  ::kill(child, SIGKILL);
  int status = 0;
  ::waitpid(child, &status, 0);
  ASSERT_TRUE(refused);
  EXPECT_EQ(error, "spool " + o.dir.string() + " is in use by relayd pid " + std::to_string(child));

  auto s = open_or_fail(o);
  ASSERT_TRUE(s);
  EXPECT_EQ(enqueue_sync(*s, make_record(*s, 10), "body").code, queue::status::ok);
}

}  // namespace
