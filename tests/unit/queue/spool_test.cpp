// The LMDB spool: IDs, durability across reopen, group commit, removal, every
// "full" condition, map growth, commit failures and quarantine of damaged records.
#include "queue/clock.hpp"
#include "queue/spool.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <map>
#include <set>
#include <thread>
#include <vector>

#include "queue/lmdb.hpp"
#include "queue/queue_id.hpp"
#include "queue/spool_diag.hpp"
#include "queue/spool_testing.hpp"
#include "tests/unit/queue/spool_test_util.hpp"

namespace {

using namespace queue_test;
using queue::status;

// 0711: others may pass through to the drop directory inside, never list.
TEST(spool, open_creates_private_directory) {
  temp_dir d;
  auto o = options_in(d);
  auto s = open_or_fail(o);
  ASSERT_TRUE(s);
  struct stat st {};
  ASSERT_EQ(::stat(o.dir.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0711u);
  EXPECT_EQ(s->report().messages, 0u);
  EXPECT_EQ(s->report().quarantined, 0u);
  EXPECT_EQ(s->message_count(), 0u);
  EXPECT_GT(s->used_bytes(), 0u);
}

TEST(spool, open_makes_an_existing_directory_private) {
  temp_dir d;
  auto o = options_in(d);
  ASSERT_EQ(::mkdir(o.dir.c_str(), 0755), 0);
  ASSERT_EQ(::chmod(o.dir.c_str(), 0755), 0);
  auto s = open_or_fail(o);
  ASSERT_TRUE(s);
  struct stat st {};
  ASSERT_EQ(::stat(o.dir.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0711u);
  for (const char* f : {"data.mdb", "lock.mdb", "relayd.lock"}) {
    ASSERT_EQ(::stat((o.dir / f).c_str(), &st), 0) << f;
    EXPECT_EQ(st.st_mode & 07777, 0600u) << f;
  }
}

TEST(spool, one_environment_is_opened_once_per_process) {
  temp_dir d;
  auto o = options_in(d);
  auto s = open_or_fail(o);
  ASSERT_TRUE(s);
  auto again = queue::spool::open(o);
  ASSERT_FALSE(again);
  EXPECT_NE(again.error().find("already open"), std::string::npos) << again.error();
  s.reset();
  EXPECT_TRUE(open_or_fail(o));
}

TEST(spool, open_fails_cleanly_on_a_file) {
  temp_dir d;
  auto o = options_in(d);
  o.dir = d.path() / "file";
  std::FILE* f = std::fopen(o.dir.c_str(), "w");
  ASSERT_NE(f, nullptr);
  std::fclose(f);
  auto s = queue::spool::open(o);
  ASSERT_FALSE(s);
  EXPECT_FALSE(s.error().empty());
}

TEST(spool, ids_are_hex_unique_and_increasing_across_threads) {
  temp_dir d;
  auto s = open_or_fail(options_in(d));
  ASSERT_TRUE(s);
  constexpr int threads = 8, per_thread = 20000;
  std::vector<std::vector<std::string>> got(threads);
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t) {
    ts.emplace_back([&, t] {
      for (int i = 0; i < per_thread; ++i) got[t].push_back(s->new_id());
    });
  }
  for (auto& t : ts) t.join();
  std::set<std::string> all;
  for (const auto& v : got) {
    for (std::size_t i = 0; i < v.size(); ++i) {
      ASSERT_EQ(v[i].size(), 16u);
      ASSERT_EQ(v[i].find_first_not_of("0123456789ABCDEF"), std::string::npos) << v[i];
      if (i > 0) {
        ASSERT_LT(v[i - 1], v[i]);
      }
      all.insert(v[i]);
    }
  }
  EXPECT_EQ(all.size(), static_cast<std::size_t>(threads * per_thread));
}

TEST(spool, ids_increase_across_reopen) {
  temp_dir d;
  auto o = options_in(d);
  std::string last;
  {
    auto s = open_or_fail(o);
    ASSERT_TRUE(s);
    for (int i = 0; i < 1000; ++i) last = s->new_id();
    ASSERT_EQ(enqueue_sync(*s, make_record(*s, 10), "x").code, status::ok);
    last = s->new_id();
  }
  auto s = open_or_fail(o);
  ASSERT_TRUE(s);
  EXPECT_LT(last, s->new_id());
}

TEST(spool, ids_stay_increasing_when_the_clock_is_behind) {
  temp_dir d;
  auto o = options_in(d);
  { ASSERT_TRUE(open_or_fail(o)); }
  // As if an earlier run had a clock ~19 hours ahead of this one.
  const auto now_us = queue::wall_clock_us();
  const std::uint64_t future = (static_cast<std::uint64_t>(now_us) << 4) + (1ull << 40);
  raw_env(o.dir).put("meta", "last_id", key_string(queue::format_id(future)));
  auto s = open_or_fail(o);
  ASSERT_TRUE(s);
  const std::string id = s->new_id();
  EXPECT_GT(*queue::parse_id(id), future);

  // And an envelope key beyond the meta high-water mark counts as well.
  s.reset();
  const std::uint64_t further = future + (1ull << 30);
  {
    queue::envelope_record r;
    raw_env env(o.dir);
    env.put("envelope", key_string(queue::format_id(further)), queue::encode(r));
    env.put("body", key_string(queue::format_id(further)), "body");
  }
  s = open_or_fail(o);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->report().messages, 1u);
  EXPECT_GT(*queue::parse_id(s->new_id()), further);
}

TEST(spool, enqueue_then_reopen_keeps_everything_byte_identical) {
  temp_dir d;
  auto o = options_in(d);
  std::map<std::string, std::pair<queue::envelope_record, std::string>> sent;
  const std::size_t sizes[] = {0, 1, 2, 1000, 4095, 4096, 4097, 100 << 10, 3 << 20};
  std::uint64_t bytes = 0;
  {
    auto s = open_or_fail(o);
    ASSERT_TRUE(s);
    int n = 0;
    for (int round = 0; round < 5; ++round) {
      for (std::size_t size : sizes) {
        auto r = make_record(*s, size, n++);
        r.recipients[1].state = queue::rcpt_state::delivered;
        std::string body = make_body(r.id, size);
        auto res = enqueue_sync(*s, r, body);
        ASSERT_EQ(res.code, status::ok) << res.detail;
        bytes += size;
        sent[r.id] = {r, body};
      }
    }
    EXPECT_EQ(s->message_count(), sent.size());
  }
  auto s = open_or_fail(o);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->report().messages, sent.size());
  EXPECT_EQ(s->report().recipients_pending, sent.size());
  EXPECT_EQ(s->report().bytes, bytes);
  EXPECT_EQ(s->report().quarantined, 0u);
  for (const auto& [id, pair] : sent) {
    auto r = s->get(id);
    ASSERT_TRUE(r) << id;
    EXPECT_EQ(r->id, id);
    EXPECT_EQ(r->sender, pair.first.sender);
    EXPECT_EQ(r->size, pair.first.size);
    EXPECT_EQ(r->flags, pair.first.flags);
    ASSERT_EQ(r->recipients.size(), 2u);
    EXPECT_EQ(r->recipients[0].address, pair.first.recipients[0].address);
    EXPECT_EQ(r->recipients[1].state, queue::rcpt_state::delivered);
    auto b = s->body(id);
    ASSERT_TRUE(b) << id;
    EXPECT_TRUE(*b == pair.second) << id;
  }
  // Lower-case IDs are accepted; junk is not.
  std::string lower = sent.begin()->first;
  std::transform(lower.begin(), lower.end(), lower.begin(), ::tolower);
  EXPECT_TRUE(s->get(lower));
  EXPECT_FALSE(s->get("nope"));
  EXPECT_FALSE(s->body("0000000000000000"));

  // scan() pages in ID order.
  std::vector<std::string> seen;
  std::string after;
  for (;;) {
    std::size_t visited = 0;
    std::string last = s->scan(after, 7, [&](const queue::envelope_record& r) {
      seen.push_back(r.id);
      ++visited;
    });
    EXPECT_LE(visited, 7u);
    if (last.empty()) break;
    EXPECT_EQ(last, seen.back());
    after = last;
  }
  std::vector<std::string> expected;
  for (const auto& [id, _] : sent) expected.push_back(id);
  EXPECT_EQ(seen, expected);
  EXPECT_EQ(s->scan("junk", 10, [](const queue::envelope_record&) { FAIL(); }), "");
}

TEST(spool, concurrent_enqueues_share_commits) {
  temp_dir d;
  auto o = options_in(d);
  auto s = open_or_fail(o);
  ASSERT_TRUE(s);
  constexpr int threads = 20, per_thread = 100;
  std::atomic<int> ok{0};
  std::vector<std::thread> ts;
  const auto before = queue::stats(*s);
  const auto start = std::chrono::steady_clock::now();
  for (int t = 0; t < threads; ++t) {
    ts.emplace_back([&, t] {
      for (int i = 0; i < per_thread; ++i) {
        auto r = make_record(*s, 1024, t * per_thread + i);
        std::string body = make_body(r.id, 1024);
        if (enqueue_sync(*s, std::move(r), std::move(body)).code == status::ok) ++ok;
      }
    });
  }
  for (auto& t : ts) t.join();
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const auto after = queue::stats(*s);
  const std::uint64_t commits = after.commits - before.commits;
  EXPECT_EQ(ok.load(), threads * per_thread);
  EXPECT_EQ(s->message_count(), static_cast<std::uint64_t>(threads * per_thread));
  EXPECT_LT(commits, static_cast<std::uint64_t>(threads * per_thread));
  // A benchmark-friendly line, not an assertion.
  std::printf("[ bench    ] %d threads x 1 KiB: %d enqueues in %.3f s = %.0f/s, %llu commits\n",
              threads, ok.load(), secs, ok.load() / secs, static_cast<unsigned long long>(commits));
  RecordProperty("enqueues_per_second", static_cast<int>(ok.load() / secs));
  RecordProperty("commits", static_cast<int>(commits));
}

// A delivery's results are lazy (spool_core.hpp, is_lazy()): they wait for the
// next enqueue and share its commit, so a relay pays one flush for both. The
// fixture: a spool whose lazy_window is `window`, holding one queued message `a`.
struct lazy_fixture {
  temp_dir d;
  std::unique_ptr<queue::spool> s;
  queue::envelope_record a;
  explicit lazy_fixture(std::chrono::microseconds window) {
    auto o = options_in(d);
    o.lazy_window = window;
    s = open_or_fail(o);
    if (!s) return;
    a = make_record(*s, 1024, 1);
    EXPECT_EQ(enqueue_sync(*s, a, make_body(a.id, 1024)).code, status::ok);
  }
};

TEST(spool, delivery_results_wait_for_an_enqueue_and_share_its_commit) {
  lazy_fixture f(std::chrono::milliseconds(500));
  ASSERT_TRUE(f.s);
  auto& s = f.s;
  const auto& a = f.a;
  const std::string id = a.id;
  const auto before = queue::stats(*s);
  auto delivered = a.recipients;
  for (auto& rc : delivered) rc.state = queue::rcpt_state::delivered;
  sync_call<queue::result, queue::spool::completion> update;
  s->update_recipients(id, {{0, delivered[0]}, {1, delivered[1]}}, 0, update.callback());
  // Alone, the update waits (the window is long here).
  EXPECT_EQ(update.f.wait_for(std::chrono::milliseconds(50)), std::future_status::timeout);
  auto b = make_record(*s, 1024, 2);
  const std::string id_b = b.id;
  ASSERT_EQ(enqueue_sync(*s, std::move(b), make_body(id_b, 1024)).code, status::ok);
  auto [r, became] = update.f.get();
  EXPECT_EQ(r.code, status::ok) << r.detail;
  EXPECT_EQ(became, queue::spool::completion::delivered);
  EXPECT_EQ(queue::stats(*s).commits - before.commits, 1u) << "the update rode with the enqueue";
  EXPECT_FALSE(s->get(id));
  EXPECT_TRUE(s->get(id_b));
}

TEST(spool, delivery_results_alone_are_committed_after_the_window) {
  lazy_fixture f(std::chrono::seconds(1));
  ASSERT_TRUE(f.s);
  auto& s = f.s;
  const auto& a = f.a;
  const std::string id = a.id;
  auto deferred = a.recipients[0];
  deferred.attempts = 1;
  deferred.next_attempt_us = queue::wall_clock_us() + 60'000'000;
  const auto start = std::chrono::steady_clock::now();
  auto [r, became] = update_sync(*s, id, {{0, deferred}});
  const auto waited = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(r.code, status::ok) << r.detail;
  EXPECT_EQ(became, queue::spool::completion::pending);
  EXPECT_GE(waited, std::chrono::seconds(1));
  EXPECT_LT(waited, std::chrono::seconds(10));
  EXPECT_EQ(s->get(id)->recipients[0].attempts, 1u);
  // Durable work does not wait for the window: a remove is answered at once.
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(remove_sync(*s, {id}).second, 1u);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(900));
}

TEST(spool, destructor_finishes_queued_operations) {
  temp_dir d;
  auto o = options_in(d);
  std::atomic<int> ok{0};
  {
    auto s = open_or_fail(o);
    ASSERT_TRUE(s);
    for (int i = 0; i < 300; ++i) {
      auto r = make_record(*s, 100, i);
      std::string body = make_body(r.id, 100);
      s->enqueue(std::move(r), std::move(body), [&ok](queue::result res) {
        if (res.code == status::ok) ++ok;
      });
    }
  }
  EXPECT_EQ(ok.load(), 300);
  auto s = open_or_fail(o);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->report().messages, 300u);
}

TEST(spool, remove_one_unknown_and_all) {
  temp_dir d;
  auto s = open_or_fail(options_in(d));
  ASSERT_TRUE(s);
  std::vector<std::string> ids;
  for (int i = 0; i < 5; ++i) {
    auto r = make_record(*s, 10, i);
    ids.push_back(r.id);
    ASSERT_EQ(enqueue_sync(*s, r, make_body(r.id, 10)).code, status::ok);
  }
  auto [r1, n1] = remove_sync(*s, {ids[0]});
  EXPECT_EQ(r1.code, status::ok);
  EXPECT_EQ(n1, 1u);
  EXPECT_FALSE(s->get(ids[0]));
  EXPECT_FALSE(s->body(ids[0]));
  EXPECT_EQ(s->message_count(), 4u);

  auto [r2, n2] = remove_sync(*s, {ids[0], "0000000000000001", "not-an-id"});
  EXPECT_EQ(r2.code, status::not_found);
  EXPECT_EQ(n2, 0u);

  auto [r3, n3] = remove_sync(*s, {ids[1], ids[1], "junk"});
  EXPECT_EQ(r3.code, status::ok);
  EXPECT_EQ(n3, 1u);

  auto [r4, n4] = remove_sync(*s, {});
  EXPECT_EQ(r4.code, status::ok);
  EXPECT_EQ(n4, 3u);
  EXPECT_EQ(s->message_count(), 0u);
  for (const auto& id : ids) EXPECT_FALSE(s->body(id));

  auto [r5, n5] = remove_sync(*s, {});
  EXPECT_EQ(r5.code, status::not_found);
  EXPECT_EQ(n5, 0u);
}

TEST(spool, bad_and_duplicate_ids_are_errors) {
  temp_dir d;
  auto s = open_or_fail(options_in(d));
  ASSERT_TRUE(s);
  auto r = make_record(*s, 3, 0);
  ASSERT_EQ(enqueue_sync(*s, r, "abc").code, status::ok);
  auto dup = enqueue_sync(*s, r, "def");
  EXPECT_EQ(dup.code, status::error);
  EXPECT_NE(dup.detail.find("exists"), std::string::npos) << dup.detail;
  EXPECT_EQ(*s->body(r.id), "abc");
  r.id = "xyz";
  EXPECT_EQ(enqueue_sync(*s, r, "abc").code, status::error);
  EXPECT_EQ(s->message_count(), 1u);
}

TEST(spool, max_messages_gives_full_and_keeps_data) {
  temp_dir d;
  auto o = options_in(d);
  o.max_messages = 3;
  auto s = open_or_fail(o);
  ASSERT_TRUE(s);
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) {
    auto r = make_record(*s, 50, i);
    ids.push_back(r.id);
    ASSERT_EQ(enqueue_sync(*s, r, make_body(r.id, 50)).code, status::ok);
  }
  auto r = make_record(*s, 50, 9);
  auto full = enqueue_sync(*s, r, make_body(r.id, 50));
  EXPECT_EQ(full.code, status::full);
  EXPECT_NE(full.detail.find("max_messages"), std::string::npos) << full.detail;
  EXPECT_FALSE(s->get(r.id));
  EXPECT_EQ(s->message_count(), 3u);
  for (const auto& id : ids) EXPECT_EQ(*s->body(id), make_body(id, 50));

  // Several at once: exactly the room left is used, the rest are full.
  ASSERT_EQ(remove_sync(*s, {ids[0]}).second, 1u);
  std::atomic<int> oks{0}, fulls{0};
  std::vector<std::promise<void>> ps(6);
  for (int i = 0; i < 6; ++i) {
    auto e = make_record(*s, 10, i);
    s->enqueue(e, "body", [&, i](queue::result res) {
      (res.code == status::ok ? oks : fulls)++;
      ps[i].set_value();
    });
  }
  for (auto& p : ps) p.get_future().wait();
  EXPECT_EQ(oks.load(), 1);
  EXPECT_EQ(fulls.load(), 5);
  EXPECT_EQ(s->message_count(), 3u);
}

TEST(spool, min_free_disk_gives_full) {
  temp_dir d;
  auto o = options_in(d);
  std::string kept;
  {
    auto s = open_or_fail(o);
    ASSERT_TRUE(s);
    auto r = make_record(*s, 20);
    kept = r.id;
    ASSERT_EQ(enqueue_sync(*s, r, make_body(r.id, 20)).code, status::ok);
  }
  o.min_free_disk = 1ull << 62;
  auto s = open_or_fail(o);
  ASSERT_TRUE(s);
  auto r = make_record(*s, 20);
  auto res = enqueue_sync(*s, r, make_body(r.id, 20));
  EXPECT_EQ(res.code, status::full);
  EXPECT_NE(res.detail.find("min_free_disk"), std::string::npos) << res.detail;
  EXPECT_EQ(s->message_count(), 1u);
  EXPECT_EQ(*s->body(kept), make_body(kept, 20));
  // Removing is still possible.
  EXPECT_EQ(remove_sync(*s, {kept}).first.code, status::ok);
}

TEST(spool, tiny_max_size_fills_up_without_losing_anything) {
  temp_dir d;
  auto o = options_in(d);
  o.max_size = 1u << 20;
  std::vector<std::string> stored;
  queue::result last;
  {
    auto s = open_or_fail(o);
    ASSERT_TRUE(s);
    for (int i = 0; i < 64; ++i) {
      auto r = make_record(*s, 100 << 10, i);
      last = enqueue_sync(*s, r, make_body(r.id, 100 << 10));
      if (last.code != status::ok) break;
      stored.push_back(r.id);
    }
    ASSERT_EQ(last.code, status::full) << last.detail;
    EXPECT_NE(last.detail.find("max_size"), std::string::npos) << last.detail;
    ASSERT_GE(stored.size(), 3u);
    EXPECT_EQ(s->message_count(), stored.size());
    EXPECT_LE(queue::stats(*s).map_size, (1u << 20) + (256u << 10));
    // Small messages may still fit while big ones do not; either way, full is
    // an answer, not a failure.
    for (int i = 0; i < 5; ++i) {
      auto r = make_record(*s, 100 << 10, 100 + i);
      EXPECT_EQ(enqueue_sync(*s, r, make_body(r.id, 100 << 10)).code, status::full);
    }
    // Removing works on a full map and makes room again.
    auto [rr, n] = remove_sync(*s, {stored.front()});
    EXPECT_EQ(rr.code, status::ok) << rr.detail;
    EXPECT_EQ(n, 1u);
    stored.erase(stored.begin());
    auto r = make_record(*s, 100 << 10, 200);
    auto again = enqueue_sync(*s, r, make_body(r.id, 100 << 10));
    EXPECT_EQ(again.code, status::ok) << again.detail;
    if (again.code == status::ok) stored.push_back(r.id);
    for (const auto& id : stored) EXPECT_EQ(*s->body(id), make_body(id, 100 << 10));
  }
  auto s = open_or_fail(o);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->report().messages, stored.size());
  for (const auto& id : stored) {
    ASSERT_TRUE(s->get(id)) << id;
    EXPECT_EQ(*s->body(id), make_body(id, 100 << 10));
  }
  // Removing everything works even right at the limit.
  EXPECT_EQ(remove_sync(*s, {}).second, stored.size());
}

TEST(spool, lowered_max_size_refuses_enqueues_but_removes_work) {
  temp_dir d;
  auto o = options_in(d);
  std::vector<std::string> ids;
  {
    auto s = open_or_fail(o);
    ASSERT_TRUE(s);
    for (int i = 0; i < 20; ++i) {
      auto r = make_record(*s, 100 << 10, i);
      ids.push_back(r.id);
      ASSERT_EQ(enqueue_sync(*s, r, make_body(r.id, 100 << 10)).code, status::ok);
    }
  }
  o.max_size = 512u << 10;
  auto s = open_or_fail(o);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->report().messages, 20u);
  auto r = make_record(*s, 100 << 10, 99);
  EXPECT_EQ(enqueue_sync(*s, r, make_body(r.id, 100 << 10)).code, status::full);
  auto [one, n1] = remove_sync(*s, {ids[3]});
  EXPECT_EQ(one.code, status::ok) << one.detail;
  EXPECT_EQ(n1, 1u);
  for (std::size_t i = 0; i < ids.size(); ++i) {
    if (i != 3) {
      EXPECT_EQ(*s->body(ids[i]), make_body(ids[i], 100 << 10));
    }
  }
  auto [all, n2] = remove_sync(*s, {});
  EXPECT_EQ(all.code, status::ok) << all.detail;
  EXPECT_EQ(n2, 19u);
  EXPECT_EQ(s->message_count(), 0u);
}

TEST(spool, map_grows_transparently) {
  temp_dir d;
  auto o = options_in(d);
  o.initial_map_size = 1u << 20;
  std::vector<std::string> ids;
  {
    auto s = open_or_fail(o);
    ASSERT_TRUE(s);
    const auto start_size = queue::stats(*s).map_size;
    EXPECT_LE(start_size, 1u << 20);
    // One by one, then many at once (one batch larger than the whole map).
    for (int i = 0; i < 10; ++i) {
      auto r = make_record(*s, 256 << 10, i);
      ids.push_back(r.id);
      auto res = enqueue_sync(*s, r, make_body(r.id, 256 << 10));
      ASSERT_EQ(res.code, status::ok) << res.detail;
    }
    std::atomic<int> ok{0};
    std::vector<std::promise<void>> ps(30);
    for (int i = 0; i < 30; ++i) {
      auto r = make_record(*s, 256 << 10, 100 + i);
      ids.push_back(r.id);
      std::string body = make_body(r.id, 256 << 10);
      s->enqueue(std::move(r), std::move(body), [&, i](queue::result res) {
        if (res.code == status::ok) ++ok;
        ps[i].set_value();
      });
    }
    for (auto& p : ps) p.get_future().wait();
    EXPECT_EQ(ok.load(), 30);
    const auto st = queue::stats(*s);
    EXPECT_GT(st.map_resizes, 0u);
    EXPECT_GE(st.map_size, 10u << 20);
    EXPECT_GE(s->used_bytes(), 10u << 20);
  }
  auto s = open_or_fail(o);
  ASSERT_TRUE(s);
  // Reopening starts with room for what is there.
  EXPECT_GE(queue::stats(*s).map_size, 10u << 20);
  EXPECT_EQ(s->report().messages, ids.size());
  for (const auto& id : ids) EXPECT_EQ(*s->body(id), make_body(id, 256 << 10));
}

TEST(spool, reads_run_safely_while_the_map_grows) {
  temp_dir d;
  auto o = options_in(d);
  o.initial_map_size = 1u << 20;
  auto s = open_or_fail(o);
  ASSERT_TRUE(s);
  auto first = make_record(*s, 1000, 0);
  ASSERT_EQ(enqueue_sync(*s, first, make_body(first.id, 1000)).code, status::ok);
  std::atomic<bool> stop{false};
  std::atomic<long> reads{0}, bad{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 4; ++t) {
    readers.emplace_back([&] {
      while (!stop) {
        auto b = s->body(first.id);
        if (!b || *b != make_body(first.id, 1000)) ++bad;
        std::size_t n = 0;
        s->scan("", 1000, [&](const queue::envelope_record&) { ++n; });
        if (n == 0 || s->message_count() == 0 || s->used_bytes() == 0) ++bad;
        ++reads;
      }
    });
  }
  for (int i = 0; i < 40; ++i) {
    auto r = make_record(*s, 200 << 10, i + 1);
    ASSERT_EQ(enqueue_sync(*s, r, make_body(r.id, 200 << 10)).code, status::ok);
  }
  stop = true;
  for (auto& t : readers) t.join();
  EXPECT_GT(queue::stats(*s).map_resizes, 2u);
  EXPECT_GT(reads.load(), 0);
  EXPECT_EQ(bad.load(), 0);
}

TEST(spool, failed_commit_fails_the_operations_and_the_spool_stays_usable) {
  temp_dir d;
  auto o = options_in(d);
  auto s = open_or_fail(o);
  ASSERT_TRUE(s);
  auto first = make_record(*s, 10, 0);
  ASSERT_EQ(enqueue_sync(*s, first, "first").code, status::ok);

  // Two failures: the group commit and the one-by-one retry.
  queue::testing::fail_next_commits(*s, EIO, 2);
  auto r = make_record(*s, 10, 1);
  auto res = enqueue_sync(*s, r, "second");
  EXPECT_EQ(res.code, status::error);
  EXPECT_FALSE(s->get(r.id));

  queue::testing::fail_next_commits(*s, ENOSPC, 2);
  res = enqueue_sync(*s, r, "second");
  EXPECT_EQ(res.code, status::full) << res.detail;

  // A single transient failure is absorbed by the retry.
  queue::testing::fail_next_commits(*s, EIO, 1);
  res = enqueue_sync(*s, r, "second");
  EXPECT_EQ(res.code, status::ok) << res.detail;
  EXPECT_GE(queue::stats(*s).failed_commits, 5u);

  auto r3 = make_record(*s, 10, 2);
  EXPECT_EQ(enqueue_sync(*s, r3, "third").code, status::ok);
  s.reset();
  s = open_or_fail(o);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->report().messages, 3u);
  EXPECT_EQ(*s->body(first.id), "first");
  EXPECT_EQ(*s->body(r.id), "second");
}

TEST(spool, damaged_records_are_quarantined_at_open) {
  temp_dir d;
  auto o = options_in(d);
  std::vector<std::string> good;
  std::string bad_version, truncated, no_body, orphan;
  {
    auto s = open_or_fail(o);
    ASSERT_TRUE(s);
    for (int i = 0; i < 3; ++i) {
      auto r = make_record(*s, 30, i);
      good.push_back(r.id);
      ASSERT_EQ(enqueue_sync(*s, r, make_body(r.id, 30)).code, status::ok);
    }
    bad_version = s->new_id();
    truncated = s->new_id();
    no_body = s->new_id();
    orphan = s->new_id();
  }
  {
    raw_env env(o.dir);
    queue::envelope_record r;
    r.recipients.push_back({"x@example.org", queue::rcpt_state::pending, 0, 0, ""});
    const std::string valid = queue::encode(r);
    env.put("envelope", key_string(bad_version), std::string("\x07garbage"));
    env.put("body", key_string(bad_version), "body of bad version");
    env.put("envelope", key_string(truncated), valid.substr(0, valid.size() - 3));
    env.put("body", key_string(truncated), "body of truncated");
    env.put("envelope", key_string(no_body), valid);
    env.put("body", key_string(orphan), "orphan body");
    env.put("envelope", "short", valid);
  }
  {
    auto s = open_or_fail(o);
    ASSERT_TRUE(s);
    EXPECT_EQ(s->report().messages, 3u);
    EXPECT_EQ(s->report().quarantined, 5u);
    EXPECT_EQ(s->message_count(), 3u);
    const auto q = queue::quarantined_at_open(*s);
    ASSERT_EQ(q.size(), 5u);
    std::map<std::string, std::string> reasons;
    for (const auto& e : q) {
      reasons[e.id] = e.reason;
      std::printf("quarantined %s: %s\n", e.id.c_str(), e.reason.c_str());
    }
    EXPECT_NE(reasons[bad_version].find("version"), std::string::npos);
    EXPECT_NE(reasons[truncated].find("truncated"), std::string::npos);
    EXPECT_NE(reasons[no_body].find("body missing"), std::string::npos);
    EXPECT_NE(reasons[orphan].find("without envelope"), std::string::npos);
    EXPECT_EQ(reasons.count("key:73686f7274"), 1u);
    for (const auto& id : good) EXPECT_EQ(*s->body(id), make_body(id, 30));
    EXPECT_FALSE(s->get(bad_version));
    EXPECT_FALSE(s->body(bad_version));
    EXPECT_GT(s->new_id(), orphan);
    std::size_t scanned = 0;
    s->scan("", 100, [&](const queue::envelope_record&) { ++scanned; });
    EXPECT_EQ(scanned, 3u);
  }
  {
    raw_env env(o.dir);
    EXPECT_EQ(env.get("quarantine", key_string(bad_version) + "e"), "\x07garbage");
    EXPECT_EQ(env.get("quarantine", key_string(bad_version) + "b"), "body of bad version");
    EXPECT_TRUE(env.get("quarantine", key_string(bad_version) + "r"));
    EXPECT_EQ(env.get("quarantine", key_string(orphan) + "b"), "orphan body");
    EXPECT_FALSE(env.get("envelope", key_string(truncated)));
  }
  auto s = open_or_fail(o);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->report().messages, 3u);
  EXPECT_EQ(s->report().quarantined, 0u);
  EXPECT_TRUE(queue::quarantined_at_open(*s).empty());
}

}  // namespace
