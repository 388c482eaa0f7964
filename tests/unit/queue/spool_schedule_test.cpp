// The spool's scheduling side: the due index (order, paging, next due time),
// per-recipient updates (deferral, partial delivery, completion, the move to
// the dead spool), reschedule, hold and release, the dead spool's read side and
// purge, the index rebuilt at open after damage, version 1 spools and records,
// and paging through a large queue.
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdint>
#include <limits>
#include <set>
#include <string>
#include <vector>

#include "queue/clock.hpp"
#include "queue/lmdb.hpp"
#include "queue/queue_id.hpp"
#include "queue/record.hpp"
#include "queue/spool.hpp"
#include "queue/spool_diag.hpp"
#include "tests/unit/queue/spool_test_util.hpp"

namespace {

using namespace queue_test;
using queue::rcpt_state;
using queue::status;
using queue::wall_clock_us;
using completion = queue::spool::completion;
using due_entry = queue::spool::due_entry;

constexpr std::int64_t forever = std::numeric_limits<std::int64_t>::max();
constexpr std::int64_t t0 = 1'700'000'000'000'000;  // a fixed "now" for the tests

// A message whose recipients are pending with these next attempt times.
queue::envelope_record message(queue::spool& s, std::vector<std::int64_t> next_attempts) {
  queue::envelope_record r;
  r.id = s.new_id();
  r.arrival_us = t0;
  r.size = 10;
  r.sender = "sender@example.org";
  r.client_ip = "127.0.0.1";
  r.helo = "client.example.org";
  for (std::size_t i = 0; i < next_attempts.size(); ++i) {
    queue::recipient rc;
    rc.address = "r" + std::to_string(i) + "@example.net";
    rc.next_attempt_us = next_attempts[i];
    r.recipients.push_back(rc);
  }
  return r;
}

std::string enqueue_message(queue::spool& s, std::vector<std::int64_t> next_attempts,
                            std::uint32_t flags = 0) {
  auto r = message(s, std::move(next_attempts));
  r.flags = flags;
  const std::string id = r.id;
  EXPECT_EQ(enqueue_sync(s, r, "body of " + id).code, status::ok);
  return id;
}

std::vector<due_entry> all_due(const queue::spool& s) {
  return s.due(std::nullopt, forever, 1'000'000);
}

// The recipient as stored, with a new outcome.
queue::spool::recipient_update deferred(const queue::envelope_record& r, std::size_t i,
                                        std::int64_t next) {
  queue::recipient v = r.recipients.at(i);
  v.attempts += 1;
  v.next_attempt_us = next;
  if (v.first_attempt_us == 0) v.first_attempt_us = t0;
  v.last_attempt_us = t0 + 1;
  v.reply_code = 451;
  v.status = "4.3.0";
  v.remote_host = "mx.example.net[192.0.2.1]:25";
  v.last_reply = "host mx.example.net[192.0.2.1] said: 451 4.3.0 try later";
  return {i, v};
}

queue::spool::recipient_update delivered(const queue::envelope_record& r, std::size_t i) {
  queue::recipient v = r.recipients.at(i);
  v.state = rcpt_state::delivered;
  v.attempts += 1;
  v.reply_code = 250;
  v.status = "2.0.0";
  v.last_reply = "host mx.example.net[192.0.2.1] said: 250 2.0.0 ok";
  return {i, v};
}

queue::spool::recipient_update failed(const queue::envelope_record& r, std::size_t i) {
  queue::recipient v = r.recipients.at(i);
  v.state = rcpt_state::failed;
  v.attempts += 1;
  v.first_attempt_us = t0 + 5;
  v.last_attempt_us = t0 + 6;
  v.reply_code = 550;
  v.status = "5.1.1";
  v.remote_host = "mx.example.net[192.0.2.1]:25";
  v.last_reply = "host mx.example.net[192.0.2.1] said: 550 5.1.1 no such user";
  v.reason = "rejected";
  return {i, v};
}

TEST(spool_schedule, enqueue_is_due_at_its_earliest_next_attempt) {
  temp_dir d;
  auto s = open_or_fail(options_in(d));
  ASSERT_TRUE(s);
  EXPECT_TRUE(all_due(*s).empty());
  EXPECT_FALSE(s->next_due_after(0));

  const std::string id = enqueue_message(*s, {t0 + 300, t0 + 100, t0 + 200});
  EXPECT_EQ(all_due(*s), (std::vector<due_entry>{{t0 + 100, id}}));
  EXPECT_TRUE(s->due(std::nullopt, t0 + 99, 10).empty());
  EXPECT_EQ(s->due(std::nullopt, t0 + 100, 10).size(), 1u);
  EXPECT_EQ(s->next_due_after(0), t0 + 100);
  EXPECT_EQ(s->next_due_after(t0 + 99), t0 + 100);
  EXPECT_FALSE(s->next_due_after(t0 + 100));
  EXPECT_FALSE(s->next_due_after(forever));
  EXPECT_TRUE(s->due(std::nullopt, forever, 0).empty());

  // 0 (as soon as possible) and negative times are due at 0, before the rest.
  const std::string asap = enqueue_message(*s, {0});
  const std::string negative = enqueue_message(*s, {-5, t0});
  EXPECT_EQ(all_due(*s), (std::vector<due_entry>{{0, asap}, {0, negative}, {t0 + 100, id}}));
  EXPECT_EQ(s->next_due_after(-10), 0);
  EXPECT_EQ(s->next_due_after(std::numeric_limits<std::int64_t>::min()), 0);
  EXPECT_EQ(s->next_due_after(0), t0 + 100);

  // Held messages and messages with nothing pending have no entry.
  enqueue_message(*s, {t0}, queue::flag_held);
  auto none = message(*s, {t0});
  none.recipients[0].state = rcpt_state::delivered;
  ASSERT_EQ(enqueue_sync(*s, none, "b").code, status::ok);
  EXPECT_EQ(all_due(*s).size(), 3u);
  EXPECT_EQ(s->message_count(), 5u);
}

TEST(spool_schedule, due_is_ordered_and_pages_strictly_after) {
  temp_dir d;
  auto s = open_or_fail(options_in(d));
  ASSERT_TRUE(s);
  const std::string late = enqueue_message(*s, {t0 + 50});
  const std::string early = enqueue_message(*s, {t0 + 10});
  const std::string same1 = enqueue_message(*s, {t0 + 30});
  const std::string same2 = enqueue_message(*s, {t0 + 30});
  const std::vector<due_entry> want = {
      {t0 + 10, early}, {t0 + 30, same1}, {t0 + 30, same2}, {t0 + 50, late}};
  EXPECT_EQ(all_due(*s), want);

  EXPECT_EQ(s->due(std::nullopt, forever, 2),
            (std::vector<due_entry>(want.begin(), want.begin() + 2)));
  EXPECT_EQ(s->due(want[1], forever, 2), (std::vector<due_entry>(want.begin() + 2, want.end())));
  EXPECT_EQ(s->due(want[2], forever, 10), (std::vector<due_entry>{want[3]}));
  EXPECT_TRUE(s->due(want[3], forever, 10).empty());
  EXPECT_EQ(s->due(want[0], t0 + 30, 10), (std::vector<due_entry>{want[1], want[2]}));
  // `after` need not be an entry: anything sorting after it comes back.
  EXPECT_EQ(s->due(due_entry{t0 + 20, "0000000000000000"}, forever, 10).size(), 3u);
  EXPECT_EQ(s->due(due_entry{t0 + 30, "FFFFFFFFFFFFFFFF"}, forever, 10),
            (std::vector<due_entry>{want[3]}));
  EXPECT_EQ(s->due(due_entry{-7, same1}, forever, 10), want);
  // Lower-case IDs name the same entry.
  std::string lower = want[1].id;
  std::transform(lower.begin(), lower.end(), lower.begin(), [](char c) {
    return static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  });
  EXPECT_EQ(s->due(due_entry{t0 + 30, lower}, forever, 10).size(), 2u);
}

TEST(spool_schedule, remove_deletes_the_schedule_entries) {
  temp_dir d;
  auto o = options_in(d);
  std::string a, b, c;
  {
    auto s = open_or_fail(o);
    ASSERT_TRUE(s);
    a = enqueue_message(*s, {t0 + 1});
    b = enqueue_message(*s, {t0 + 2});
    c = enqueue_message(*s, {t0 + 3}, queue::flag_held);
    EXPECT_EQ(remove_sync(*s, {b}).second, 1u);
    EXPECT_EQ(all_due(*s), (std::vector<due_entry>{{t0 + 1, a}}));
    EXPECT_EQ(remove_sync(*s, {c}).second, 1u);
    EXPECT_EQ(all_due(*s).size(), 1u);
  }
  {
    raw_env env(o.dir);
    EXPECT_EQ(env.keys("schedule"), (std::vector<std::string>{schedule_key_string(t0 + 1, a)}));
  }
  auto s = open_or_fail(o);
  ASSERT_TRUE(s);
  EXPECT_FALSE(s->report().schedule_rebuilt);
  enqueue_message(*s, {t0});
  EXPECT_EQ(remove_sync(*s, {}).second, 2u);
  EXPECT_TRUE(all_due(*s).empty());
  EXPECT_FALSE(s->next_due_after(0));
}

TEST(spool_schedule, deferral_moves_the_entry_later) {
  temp_dir d;
  auto s = open_or_fail(options_in(d));
  ASSERT_TRUE(s);
  const std::string id = enqueue_message(*s, {0});
  const auto before = *s->get(id);
  auto [res, became] = update_sync(*s, id, {deferred(before, 0, t0 + 600'000'000)});
  ASSERT_EQ(res.code, status::ok) << res.detail;
  EXPECT_EQ(became, completion::pending);
  EXPECT_TRUE(s->due(std::nullopt, t0, 10).empty());
  EXPECT_EQ(s->next_due_after(t0), t0 + 600'000'000);
  EXPECT_EQ(all_due(*s), (std::vector<due_entry>{{t0 + 600'000'000, id}}));

  const auto after = *s->get(id);
  const auto& rc = after.recipients[0];
  EXPECT_EQ(rc.state, rcpt_state::pending);
  EXPECT_EQ(rc.attempts, 1u);
  EXPECT_EQ(rc.next_attempt_us, t0 + 600'000'000);
  EXPECT_EQ(rc.first_attempt_us, t0);
  EXPECT_EQ(rc.last_attempt_us, t0 + 1);
  EXPECT_EQ(rc.reply_code, 451);
  EXPECT_EQ(rc.status, "4.3.0");
  EXPECT_EQ(rc.remote_host, "mx.example.net[192.0.2.1]:25");
  EXPECT_EQ(after.flags & queue::flag_delay_warned, 0u);
  EXPECT_EQ(*s->body(id), "body of " + id);

  // flags_set adds bits and keeps the others.
  std::tie(res, became) =
      update_sync(*s, id, {deferred(after, 0, t0 + 900'000'000)}, queue::flag_delay_warned);
  ASSERT_EQ(res.code, status::ok);
  EXPECT_NE(s->get(id)->flags & queue::flag_delay_warned, 0u);
  EXPECT_EQ(all_due(*s), (std::vector<due_entry>{{t0 + 900'000'000, id}}));
  // No updates at all: only the flags.
  std::tie(res, became) = update_sync(*s, id, {}, queue::flag_eight_bit);
  ASSERT_EQ(res.code, status::ok);
  EXPECT_EQ(became, completion::pending);
  EXPECT_EQ(s->get(id)->flags, queue::flag_delay_warned | queue::flag_eight_bit);
  EXPECT_EQ(all_due(*s).size(), 1u);
}

TEST(spool_schedule, partial_then_full_delivery_removes_the_message) {
  temp_dir d;
  auto o = options_in(d);
  std::string id;
  {
    auto s = open_or_fail(o);
    ASSERT_TRUE(s);
    id = enqueue_message(*s, {t0, t0});
    auto r = *s->get(id);
    auto [res, became] = update_sync(*s, id, {delivered(r, 0), deferred(r, 1, t0 + 1000)});
    ASSERT_EQ(res.code, status::ok) << res.detail;
    EXPECT_EQ(became, completion::pending);
    // The delivered recipient no longer counts for the due time.
    EXPECT_EQ(all_due(*s), (std::vector<due_entry>{{t0 + 1000, id}}));
    r = *s->get(id);
    EXPECT_EQ(r.recipients[0].state, rcpt_state::delivered);
    EXPECT_EQ(r.recipients[1].state, rcpt_state::pending);

    std::tie(res, became) = update_sync(*s, id, {delivered(r, 1)});
    ASSERT_EQ(res.code, status::ok) << res.detail;
    EXPECT_EQ(became, completion::delivered);
    EXPECT_FALSE(s->get(id));
    EXPECT_FALSE(s->body(id));
    EXPECT_FALSE(s->get_dead(id));
    EXPECT_TRUE(all_due(*s).empty());
    EXPECT_EQ(s->message_count(), 0u);
    EXPECT_EQ(s->dead_count(), 0u);

    // Gone: a late update is not_found and changes nothing.
    std::tie(res, became) = update_sync(*s, id, {delivered(r, 1)});
    EXPECT_EQ(res.code, status::not_found);
    std::tie(res, became) = update_sync(*s, "not-an-id", {});
    EXPECT_EQ(res.code, status::not_found);
  }
  raw_env env(o.dir);
  EXPECT_TRUE(env.keys("envelope").empty());
  EXPECT_TRUE(env.keys("body").empty());
  EXPECT_TRUE(env.keys("schedule").empty());
  EXPECT_TRUE(env.keys("dead").empty());
}

TEST(spool_schedule, last_failure_moves_the_message_to_the_dead_spool) {
  temp_dir d;
  auto o = options_in(d);
  std::string id, other;
  {
    auto s = open_or_fail(o);
    ASSERT_TRUE(s);
    id = enqueue_message(*s, {t0, t0});
    other = enqueue_message(*s, {t0 + 5});
    auto r = *s->get(id);
    auto [res, became] = update_sync(*s, id, {delivered(r, 0)});
    ASSERT_EQ(became, completion::pending);
    std::tie(res, became) = update_sync(*s, id, {failed(r, 1)});
    ASSERT_EQ(res.code, status::ok) << res.detail;
    EXPECT_EQ(became, completion::dead);
    EXPECT_FALSE(s->get(id));
    EXPECT_FALSE(s->body(id));
    EXPECT_EQ(all_due(*s), (std::vector<due_entry>{{t0 + 5, other}}));
    EXPECT_EQ(s->message_count(), 1u);
    EXPECT_EQ(s->dead_count(), 1u);

    auto dead = s->get_dead(id);
    ASSERT_TRUE(dead);
    EXPECT_EQ(dead->id, id);
    EXPECT_EQ(dead->sender, "sender@example.org");
    // Only the failed recipient: the delivered one is not part of the entry.
    ASSERT_EQ(dead->recipients.size(), 1u);
    EXPECT_EQ(dead->recipients[0].address, r.recipients[1].address);
    EXPECT_EQ(dead->recipients[0].state, rcpt_state::failed);
    EXPECT_EQ(dead->recipients[0].reply_code, 550);
    EXPECT_EQ(dead->recipients[0].status, "5.1.1");
    EXPECT_EQ(dead->recipients[0].reason, "rejected");
    EXPECT_EQ(dead->recipients[0].remote_host, "mx.example.net[192.0.2.1]:25");
    EXPECT_EQ(dead->recipients[0].first_attempt_us, t0 + 5);
    EXPECT_EQ(dead->recipients[0].last_attempt_us, t0 + 6);
    EXPECT_EQ(dead->recipients[0].attempts, 1u);
    EXPECT_EQ(queue::failed_at(*dead), t0 + 6);
    EXPECT_EQ(s->dead_body(id), "body of " + id);
    EXPECT_FALSE(s->get_dead(other));
    EXPECT_FALSE(s->dead_body(other));

    std::vector<std::string> seen;
    EXPECT_EQ(s->scan_dead("", 10, [&](const queue::envelope_record& e) { seen.push_back(e.id); }),
              id);
    EXPECT_EQ(seen, (std::vector<std::string>{id}));
    seen.clear();
    EXPECT_EQ(s->scan_dead(id, 10, [&](const queue::envelope_record& e) { seen.push_back(e.id); }),
              "");
    EXPECT_TRUE(seen.empty());
    std::size_t live = 0;
    s->scan("", 10, [&](const queue::envelope_record&) { ++live; });
    EXPECT_EQ(live, 1u);

    // remove() (relayctl -d) never touches the dead spool.
    EXPECT_EQ(remove_sync(*s, {id}).first.code, status::not_found);
    EXPECT_EQ(remove_sync(*s, {}).second, 1u);
    EXPECT_EQ(s->dead_count(), 1u);
    EXPECT_TRUE(s->get_dead(id));
  }
  // The dead spool survives a restart, and is counted.
  auto s = open_or_fail(o);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->report().dead, 1u);
  EXPECT_EQ(s->report().messages, 0u);
  EXPECT_EQ(s->dead_body(id), "body of " + id);
  // Dead IDs are never handed out again.
  EXPECT_GT(s->new_id(), id);

  EXPECT_EQ(purge_dead_sync(*s, {other}).first.code, status::not_found);
  auto [res, n] = purge_dead_sync(*s, {id});
  EXPECT_EQ(res.code, status::ok);
  EXPECT_EQ(n, 1u);
  EXPECT_FALSE(s->get_dead(id));
  EXPECT_FALSE(s->dead_body(id));
  EXPECT_EQ(s->dead_count(), 0u);
  EXPECT_EQ(purge_dead_sync(*s, {}).first.code, status::not_found);
}

TEST(spool_schedule, purge_all_empties_the_dead_spool) {
  temp_dir d;
  auto s = open_or_fail(options_in(d));
  ASSERT_TRUE(s);
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) {
    ids.push_back(enqueue_message(*s, {t0}));
    auto r = *s->get(ids.back());
    ASSERT_EQ(update_sync(*s, ids.back(), {failed(r, 0)}).second, completion::dead);
  }
  const std::string live = enqueue_message(*s, {t0});
  EXPECT_EQ(s->dead_count(), 3u);
  auto [res, n] = purge_dead_sync(*s, {});
  EXPECT_EQ(res.code, status::ok);
  EXPECT_EQ(n, 3u);
  EXPECT_EQ(s->dead_count(), 0u);
  for (const auto& id : ids) EXPECT_FALSE(s->dead_body(id));
  EXPECT_TRUE(s->get(live));
}

TEST(spool_schedule, mismatched_updates_change_nothing) {
  temp_dir d;
  auto s = open_or_fail(options_in(d));
  ASSERT_TRUE(s);
  const std::string id = enqueue_message(*s, {t0, t0 + 1});
  const auto before = *s->get(id);
  const auto due_before = all_due(*s);

  auto wrong_address = delivered(before, 0);
  wrong_address.value.address = "someone-else@example.net";
  auto [res, became] = update_sync(*s, id, {delivered(before, 1), wrong_address});
  EXPECT_EQ(res.code, status::error);
  EXPECT_NE(res.detail.find("someone-else"), std::string::npos) << res.detail;

  auto out_of_range = delivered(before, 0);
  out_of_range.index = 2;
  std::tie(res, became) = update_sync(*s, id, {out_of_range}, queue::flag_delay_warned);
  EXPECT_EQ(res.code, status::error);

  const auto after = *s->get(id);
  EXPECT_EQ(queue::encode(after), queue::encode(before));
  EXPECT_EQ(all_due(*s), due_before);
}

TEST(spool_schedule, updates_to_one_message_in_one_batch_all_apply) {
  temp_dir d;
  auto s = open_or_fail(options_in(d));
  ASSERT_TRUE(s);
  // One message, three destinations: three jobs report at about the same time.
  const std::string id = enqueue_message(*s, {t0, t0, t0});
  const auto r = *s->get(id);
  sync_call<queue::result, completion> a, b, c;
  s->update_recipients(id, {delivered(r, 0)}, 0, a.callback());
  s->update_recipients(id, {deferred(r, 1, t0 + 100)}, 0, b.callback());
  s->update_recipients(id, {failed(r, 2)}, 0, c.callback());
  auto [ra, ca] = a.f.get();
  auto [rb, cb] = b.f.get();
  auto [rc, cc] = c.f.get();
  EXPECT_EQ(ra.code, status::ok);
  EXPECT_EQ(rb.code, status::ok);
  EXPECT_EQ(rc.code, status::ok);
  EXPECT_EQ(cc, completion::pending);
  const auto now = *s->get(id);
  EXPECT_EQ(now.recipients[0].state, rcpt_state::delivered);
  EXPECT_EQ(now.recipients[1].state, rcpt_state::pending);
  EXPECT_EQ(now.recipients[2].state, rcpt_state::failed);
  EXPECT_EQ(all_due(*s), (std::vector<due_entry>{{t0 + 100, id}}));
  // The deferred one fails at last: dead, with the two failed recipients only.
  EXPECT_EQ(update_sync(*s, id, {failed(now, 1)}).second, completion::dead);
  const auto dead = s->get_dead(id);
  ASSERT_TRUE(dead);
  ASSERT_EQ(dead->recipients.size(), 2u);
  EXPECT_EQ(dead->recipients[0].address, now.recipients[1].address);
  EXPECT_EQ(dead->recipients[1].address, now.recipients[2].address);
  for (const auto& x : dead->recipients) EXPECT_EQ(x.state, rcpt_state::failed);
  EXPECT_TRUE(all_due(*s).empty());
}

TEST(spool_schedule, reschedule_all_skips_held_messages) {
  temp_dir d;
  auto s = open_or_fail(options_in(d));
  ASSERT_TRUE(s);
  const std::string a = enqueue_message(*s, {t0 + 100, t0 + 900});
  const std::string b = enqueue_message(*s, {t0 + 500});
  const std::string held = enqueue_message(*s, {t0 + 700}, queue::flag_held);
  // One delivered recipient keeps its time.
  {
    auto r = *s->get(a);
    ASSERT_EQ(update_sync(*s, a, {delivered(r, 1)}).second, completion::pending);
  }
  auto [res, n] = reschedule_sync(*s, {}, t0 + 50);
  ASSERT_EQ(res.code, status::ok) << res.detail;
  EXPECT_EQ(n, 2u);
  EXPECT_EQ(all_due(*s), (std::vector<due_entry>{{t0 + 50, a}, {t0 + 50, b}}));
  EXPECT_EQ(s->get(a)->recipients[0].next_attempt_us, t0 + 50);
  EXPECT_EQ(s->get(a)->recipients[1].state, rcpt_state::delivered);
  EXPECT_EQ(s->get(held)->recipients[0].next_attempt_us, t0 + 700);

  std::tie(res, n) = reschedule_sync(*s, {b, "0000000000000001"}, t0 + 7);
  EXPECT_EQ(res.code, status::ok);
  EXPECT_EQ(n, 1u);
  EXPECT_EQ(all_due(*s), (std::vector<due_entry>{{t0 + 7, b}, {t0 + 50, a}}));
  // A held message named explicitly is found but not changed.
  std::tie(res, n) = reschedule_sync(*s, {held}, t0);
  EXPECT_EQ(res.code, status::ok);
  EXPECT_EQ(n, 0u);
  std::tie(res, n) = reschedule_sync(*s, {"0000000000000001", "bogus"}, t0);
  EXPECT_EQ(res.code, status::not_found);
  EXPECT_EQ(n, 0u);
}

TEST(spool_schedule, reschedule_of_many_messages_works_in_chunks) {
  temp_dir d;
  auto s = open_or_fail(options_in(d));
  ASSERT_TRUE(s);
  constexpr int count = 2500;  // more than one chunk
  std::vector<sync_call<queue::result>> calls(count);
  for (int i = 0; i < count; ++i) {
    auto r = message(*s, {t0 + 1000 + i});
    s->enqueue(r, "b", calls[static_cast<std::size_t>(i)].callback());
  }
  for (auto& c : calls) ASSERT_EQ(std::get<0>(c.f.get()).code, status::ok);
  const auto commits = queue::stats(*s).commits;
  auto [res, n] = reschedule_sync(*s, {}, t0);
  ASSERT_EQ(res.code, status::ok);
  EXPECT_EQ(n, static_cast<std::size_t>(count));
  EXPECT_GE(queue::stats(*s).commits - commits, 3u);
  const auto due = all_due(*s);
  ASSERT_EQ(due.size(), static_cast<std::size_t>(count));
  for (const auto& e : due) EXPECT_EQ(e.due_us, t0);
  EXPECT_TRUE(std::is_sorted(due.begin(), due.end(),
                             [](const due_entry& x, const due_entry& y) { return x.id < y.id; }));
  // Hold them all, then release them all.
  std::tie(res, n) = set_held_sync(*s, {}, true);
  EXPECT_EQ(n, static_cast<std::size_t>(count));
  EXPECT_TRUE(all_due(*s).empty());
  std::tie(res, n) = set_held_sync(*s, {}, false);
  EXPECT_EQ(n, static_cast<std::size_t>(count));
  EXPECT_EQ(all_due(*s).size(), static_cast<std::size_t>(count));
}

TEST(spool_schedule, hold_and_release) {
  temp_dir d;
  auto o = options_in(d);
  std::string a, b;
  {
    auto s = open_or_fail(o);
    ASSERT_TRUE(s);
    a = enqueue_message(*s, {t0 + 100});
    b = enqueue_message(*s, {t0 + 200});
    auto [res, n] = set_held_sync(*s, {a}, true);
    ASSERT_EQ(res.code, status::ok) << res.detail;
    EXPECT_EQ(n, 1u);
    EXPECT_NE(s->get(a)->flags & queue::flag_held, 0u);
    EXPECT_EQ(all_due(*s), (std::vector<due_entry>{{t0 + 200, b}}));
    // Holding again changes nothing (found, not counted).
    std::tie(res, n) = set_held_sync(*s, {a}, true);
    EXPECT_EQ(res.code, status::ok);
    EXPECT_EQ(n, 0u);
    std::tie(res, n) = set_held_sync(*s, {"0000000000000001"}, true);
    EXPECT_EQ(res.code, status::not_found);
    // A held message still takes delivery results, and stays off the schedule.
    auto r = *s->get(a);
    EXPECT_EQ(update_sync(*s, a, {deferred(r, 0, t0 + 5)}).second, completion::pending);
    EXPECT_EQ(all_due(*s).size(), 1u);
  }
  auto s = open_or_fail(o);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->report().held, 1u);
  EXPECT_EQ(s->report().scheduled, 1u);
  EXPECT_FALSE(s->report().schedule_rebuilt);
  EXPECT_EQ(all_due(*s).size(), 1u);

  // Release: due now (wall clock), flag cleared; releasing b (not held) is a no-op.
  const std::int64_t before = wall_clock_us();
  auto [res, n] = set_held_sync(*s, {a, b}, false);
  const std::int64_t after = wall_clock_us();
  ASSERT_EQ(res.code, status::ok);
  EXPECT_EQ(n, 1u);
  EXPECT_EQ(s->get(a)->flags & queue::flag_held, 0u);
  const auto due = all_due(*s);
  ASSERT_EQ(due.size(), 2u);
  EXPECT_EQ(due[0], (due_entry{t0 + 200, b}));
  EXPECT_EQ(due[1].id, a);
  EXPECT_GE(due[1].due_us, before);
  EXPECT_LE(due[1].due_us, after);
  EXPECT_EQ(s->due(std::nullopt, after, 10).size(), 2u);
  EXPECT_EQ(s->get(a)->recipients[0].next_attempt_us, due[1].due_us);
  EXPECT_EQ(s->get(b)->recipients[0].next_attempt_us, t0 + 200);

  // Hold everything, then reschedule: held ones are skipped.
  std::tie(res, n) = set_held_sync(*s, {}, true);
  EXPECT_EQ(n, 2u);
  EXPECT_TRUE(all_due(*s).empty());
  std::tie(res, n) = reschedule_sync(*s, {}, t0);
  EXPECT_EQ(res.code, status::ok);
  EXPECT_EQ(n, 0u);
  EXPECT_TRUE(all_due(*s).empty());
}

TEST(spool_schedule, index_is_rebuilt_from_the_records_at_open) {
  temp_dir d;
  auto o = options_in(d);
  std::string a, b, held;
  {
    auto s = open_or_fail(o);
    ASSERT_TRUE(s);
    a = enqueue_message(*s, {t0 + 10});
    b = enqueue_message(*s, {t0 + 20, t0 + 5});
    held = enqueue_message(*s, {t0 + 30}, queue::flag_held);
    EXPECT_EQ(s->report().scheduled, 0u);
  }
  const std::vector<std::string> good = {schedule_key_string(t0 + 5, b),
                                         schedule_key_string(t0 + 10, a)};
  {
    raw_env env(o.dir);
    EXPECT_EQ(env.keys("schedule"), good);
    // A stale entry (a message that moved), a ghost (no such message), an
    // entry for a held message, a key of the wrong size, and a missing entry.
    env.put("schedule", schedule_key_string(t0 + 1, a), "");
    env.put("schedule", schedule_key_string(t0 + 2, "00000000000000AA"), "");
    env.put("schedule", schedule_key_string(t0 + 30, held), "");
    env.put("schedule", "short", "");
    EXPECT_TRUE(env.del("schedule", schedule_key_string(t0 + 5, b)));
  }
  {
    auto s = open_or_fail(o);
    ASSERT_TRUE(s);
    EXPECT_TRUE(s->report().schedule_rebuilt);
    EXPECT_EQ(s->report().scheduled, 2u);
    EXPECT_EQ(s->report().held, 1u);
    EXPECT_EQ(s->report().messages, 3u);
    EXPECT_EQ(all_due(*s), (std::vector<due_entry>{{t0 + 5, b}, {t0 + 10, a}}));
  }
  {
    raw_env env(o.dir);
    EXPECT_EQ(env.keys("schedule"), good);
    // Only a missing entry.
    EXPECT_TRUE(env.del("schedule", schedule_key_string(t0 + 10, a)));
  }
  {
    auto s = open_or_fail(o);
    ASSERT_TRUE(s);
    EXPECT_TRUE(s->report().schedule_rebuilt);
    EXPECT_EQ(all_due(*s).size(), 2u);
  }
  {
    raw_env env(o.dir);
    // Only an extra entry.
    env.put("schedule", schedule_key_string(0, a), "");
  }
  {
    auto s = open_or_fail(o);
    ASSERT_TRUE(s);
    EXPECT_TRUE(s->report().schedule_rebuilt);
    EXPECT_EQ(all_due(*s).size(), 2u);
  }
  // In agreement: nothing to do.
  auto s = open_or_fail(o);
  ASSERT_TRUE(s);
  EXPECT_FALSE(s->report().schedule_rebuilt);
  EXPECT_EQ(s->report().scheduled, 2u);
}

TEST(spool_schedule, damaged_records_get_no_schedule_entry) {
  temp_dir d;
  auto o = options_in(d);
  std::string good, bad;
  {
    auto s = open_or_fail(o);
    ASSERT_TRUE(s);
    good = enqueue_message(*s, {t0});
    bad = enqueue_message(*s, {t0 + 1});
  }
  {
    raw_env env(o.dir);
    env.put("envelope", key_string(bad), "\x07garbage");
  }
  auto s = open_or_fail(o);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->report().quarantined, 1u);
  EXPECT_TRUE(s->report().schedule_rebuilt);
  EXPECT_EQ(all_due(*s), (std::vector<due_entry>{{t0, good}}));
}

// A spool written before version 2: format 1, version 1 records, no schedule
// or dead databases. It opens, its records decode with the new fields at their
// defaults, and everything pending is scheduled.
TEST(spool_schedule, version_1_spool_is_upgraded_at_open) {
  temp_dir d;
  auto o = options_in(d);
  std::string ids[2];
  {
    auto s = open_or_fail(o);
    ASSERT_TRUE(s);
    ids[0] = s->new_id();
    ids[1] = s->new_id();
  }
  // Version 1: u8 1 | arrival | size | flags | sender | client | helo | nrcpt |
  // (address | state | attempts | next attempt | last reply)...
  auto v1 = [](std::int64_t next_attempt_zigzagged_small) {
    std::string r("\x01", 1);
    r += '\x04';  // arrival 2 (zigzag)
    r += '\x05';  // size 5
    r += '\x00';  // flags
    r += "\x05"
         "a@b.c";  // sender
    r += "\x09"
         "127.0.0.1";  // client
    r += "\x01"
         "h";     // helo
    r += '\x01';  // one recipient
    r += "\x05"
         "x@y.z";  // address
    r += '\x00';   // pending
    r += '\x02';   // attempts
    r += static_cast<char>(next_attempt_zigzagged_small);
    r += "\x03"
         "451";  // last reply
    return r;
  };
  {
    raw_env env(o.dir);
    env.drop("schedule");
    env.drop("dead");
    env.drop("dead_body");
    env.put("meta", "format", std::string("\x01", 1));
    env.put("envelope", key_string(ids[0]), v1(40));  // next attempt 20
    env.put("body", key_string(ids[0]), "hello");
    env.put("envelope", key_string(ids[1]), v1(20));  // next attempt 10
    env.put("body", key_string(ids[1]), "world");
  }
  {
    auto s = open_or_fail(o);
    ASSERT_TRUE(s);
    EXPECT_EQ(s->report().messages, 2u);
    EXPECT_EQ(s->report().quarantined, 0u);
    EXPECT_TRUE(s->report().schedule_rebuilt);
    EXPECT_EQ(all_due(*s), (std::vector<due_entry>{{10, ids[1]}, {20, ids[0]}}));
    auto r = s->get(ids[0]);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->arrival_us, 2);
    EXPECT_EQ(r->sender, "a@b.c");
    ASSERT_EQ(r->recipients.size(), 1u);
    EXPECT_EQ(r->recipients[0].attempts, 2u);
    EXPECT_EQ(r->recipients[0].last_reply, "451");
    EXPECT_EQ(r->recipients[0].reply_code, 0);
    EXPECT_TRUE(r->recipients[0].status.empty());
    EXPECT_TRUE(r->recipients[0].remote_host.empty());
    EXPECT_EQ(r->recipients[0].first_attempt_us, 0);
    // An update rewrites it in the current version.
    auto [res, became] = update_sync(*s, ids[0], {delivered(*r, 0)});
    EXPECT_EQ(became, completion::delivered);
    auto other = *s->get(ids[1]);
    std::tie(res, became) = update_sync(*s, ids[1], {deferred(other, 0, 99)});
    EXPECT_EQ(res.code, status::ok);
  }
  raw_env env(o.dir);
  EXPECT_EQ(env.get("meta", "format"), std::string("\x02", 1));
  auto stored = env.get("envelope", key_string(ids[1]));
  ASSERT_TRUE(stored);
  EXPECT_EQ((*stored)[0], queue::record_version);
}

TEST(spool_schedule, unknown_spool_format_is_refused) {
  temp_dir d;
  auto o = options_in(d);
  { ASSERT_TRUE(open_or_fail(o)); }
  { raw_env(o.dir).put("meta", "format", std::string("\x03", 1)); }
  auto s = queue::spool::open(o);
  ASSERT_FALSE(s);
  EXPECT_NE(s.error().find("format"), std::string::npos) << s.error();
}

// Paging through a large queue with due(limit) visits every message once, in
// order, without ever holding more than one page.
TEST(spool_schedule, paging_a_large_queue_visits_each_message_once) {
#if defined(__SANITIZE_ADDRESS__)
  constexpr int count = 50'000;  // about 4 s under ASan; 100,000 take 9
#else
  constexpr int count = 100'000;
#endif
  temp_dir d;
  auto o = options_in(d);
  auto s = open_or_fail(o);
  ASSERT_TRUE(s);
  std::set<std::string> ids;
  {
    std::vector<sync_call<queue::result>> calls(count);
    for (int i = 0; i < count; ++i) {
      auto r = message(*s, {t0 + (static_cast<std::int64_t>(i) * 7919) % 1000});
      ids.insert(r.id);
      s->enqueue(std::move(r), "x", calls[static_cast<std::size_t>(i)].callback());
    }
    for (auto& c : calls) ASSERT_EQ(std::get<0>(c.f.get()).code, status::ok);
  }
  std::set<std::string> seen;
  std::optional<due_entry> after;
  std::size_t pages = 0;
  for (;;) {
    auto page = s->due(after, forever, 1000);
    if (page.empty()) break;
    ++pages;
    ASSERT_LE(page.size(), 1000u);
    for (const auto& e : page) {
      if (after) {
        ASSERT_TRUE(after->due_us < e.due_us || (after->due_us == e.due_us && after->id < e.id));
      }
      ASSERT_TRUE(seen.insert(e.id).second) << e.id << " seen twice";
      after = e;
    }
  }
  EXPECT_EQ(seen, ids);
  EXPECT_EQ(pages, (static_cast<std::size_t>(count) + 999) / 1000);
  EXPECT_EQ(s->next_due_after(t0 + 998), t0 + 999);
  EXPECT_FALSE(s->next_due_after(t0 + 999));
  // Only what is due by `until`.
  std::size_t early = 0;
  after.reset();
  for (;;) {
    auto page = s->due(after, t0 + 99, 1000);
    if (page.empty()) break;
    early += page.size();
    after = page.back();
  }
  EXPECT_EQ(early, static_cast<std::size_t>(count) / 10);

  // At open the index is checked against every record (and rebuilt when one
  // entry is missing), streaming through the records.
  const std::string first = s->due(std::nullopt, forever, 1).at(0).id;
  s.reset();
  s = open_or_fail(o);
  ASSERT_TRUE(s);
  EXPECT_FALSE(s->report().schedule_rebuilt);
  EXPECT_EQ(s->report().scheduled, static_cast<std::size_t>(count));
  s.reset();
  { EXPECT_TRUE(raw_env(o.dir).del("schedule", schedule_key_string(t0, first))); }
  s = open_or_fail(o);
  ASSERT_TRUE(s);
  EXPECT_TRUE(s->report().schedule_rebuilt);
  EXPECT_EQ(s->report().scheduled, static_cast<std::size_t>(count));
  EXPECT_EQ(s->due(std::nullopt, forever, 1).at(0).id, first);
}

}  // namespace
