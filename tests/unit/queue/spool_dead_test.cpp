// The dead spool's write side: replay (failed recipients back in the queue with
// fresh attempts and a new lifetime, delivered ones never again, the schedule
// index, unknown IDs, ALL, damaged entries, a restart) and purge by age
// (failed_at, chunks over many entries, and yielding to other operations).
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <future>
#include <limits>
#include <string>
#include <vector>

#include "queue/queue_id.hpp"
#include "queue/record.hpp"
#include "queue/spool.hpp"
#include "queue/spool_diag.hpp"
#include "tests/unit/queue/spool_test_util.hpp"

namespace {

using namespace queue_test;
using queue::rcpt_state;
using queue::status;
using completion = queue::spool::completion;
using due_entry = queue::spool::due_entry;

constexpr std::int64_t forever = std::numeric_limits<std::int64_t>::max();
constexpr std::int64_t t0 = 1'700'000'000'000'000;
constexpr std::int64_t later = t0 + 86'400'000'000;  // "now" when replaying

queue::envelope_record message(queue::spool& s, std::size_t recipients) {
  queue::envelope_record r;
  r.id = s.new_id();
  r.arrival_us = t0;
  r.size = 11;
  r.flags = queue::flag_eight_bit;
  r.sender = "sender@example.org";
  r.client_ip = "127.0.0.1";
  r.helo = "client.example.org";
  for (std::size_t i = 0; i < recipients; ++i) {
    queue::recipient rc;
    rc.address = "r" + std::to_string(i) + "@example.net";
    rc.next_attempt_us = t0;
    r.recipients.push_back(rc);
  }
  return r;
}

std::string body_of(const std::string& id) {
  return "body " + id;
}

queue::spool::recipient_update delivered(const queue::envelope_record& r, std::size_t i) {
  queue::recipient v = r.recipients.at(i);
  v.state = rcpt_state::delivered;
  v.attempts += 1;
  v.first_attempt_us = v.last_attempt_us = t0 + 1;
  v.reply_code = 250;
  v.status = "2.0.0";
  v.last_reply = "host mx.example.net[192.0.2.1] said: 250 2.0.0 ok";
  return {i, v};
}

// Failed at `when` after three attempts (0: never attempted, as when a message
// expires while its destination is suspended).
queue::spool::recipient_update failed(const queue::envelope_record& r, std::size_t i,
                                      std::int64_t when = t0 + 6) {
  queue::recipient v = r.recipients.at(i);
  v.state = rcpt_state::failed;
  if (when != 0) {
    v.attempts = 3;
    v.first_attempt_us = t0 + 5;
    v.last_attempt_us = when;
  }
  v.next_attempt_us = t0 + 999;
  v.reply_code = 550;
  v.status = "5.1.1";
  v.remote_host = "mx.example.net[192.0.2.1]:25";
  v.last_reply = "host mx.example.net[192.0.2.1] said: 550 5.1.1 no such user";
  v.reason = "rejected";
  return {i, v};
}

// A message whose only recipient failed at `when`: its ID.
std::string dead_message(queue::spool& s, std::int64_t when = t0 + 6) {
  auto r = message(s, 1);
  EXPECT_EQ(enqueue_sync(s, r, body_of(r.id)).code, status::ok);
  EXPECT_EQ(update_sync(s, r.id, {failed(r, 0, when)}).second, completion::dead);
  return r.id;
}

// `count` dead messages made with group commits; message i failed at t0 + i.
std::vector<std::string> many_dead(queue::spool& s, int count) {
  std::vector<queue::envelope_record> recs;
  std::vector<sync_call<queue::result>> enq(static_cast<std::size_t>(count));
  for (int i = 0; i < count; ++i) {
    recs.push_back(message(s, 1));
    s.enqueue(recs.back(), body_of(recs.back().id), enq[static_cast<std::size_t>(i)].callback());
  }
  for (auto& c : enq) EXPECT_EQ(std::get<0>(c.f.get()).code, status::ok);
  std::vector<sync_call<queue::result, completion>> upd(static_cast<std::size_t>(count));
  for (int i = 0; i < count; ++i) {
    const auto& r = recs[static_cast<std::size_t>(i)];
    s.update_recipients(r.id, {failed(r, 0, t0 + i)}, 0,
                        upd[static_cast<std::size_t>(i)].callback());
  }
  for (auto& c : upd) EXPECT_EQ(std::get<1>(c.f.get()), completion::dead);
  std::vector<std::string> ids;
  for (const auto& r : recs) ids.push_back(r.id);
  return ids;
}

std::vector<due_entry> all_due(const queue::spool& s) {
  return s.due(std::nullopt, forever, 1'000'000);
}

TEST(spool_dead, replay_puts_failed_recipients_back_with_fresh_attempts) {
  temp_dir d;
  auto s = open_or_fail(options_in(d));
  ASSERT_TRUE(s);
  auto r = message(*s, 3);
  const std::string id = r.id;
  ASSERT_EQ(enqueue_sync(*s, r, body_of(id)).code, status::ok);
  // r0 delivered, r1 and r2 failed; the delay warning went out and the message
  // was held on the way (a hold does not stop results from being stored).
  ASSERT_EQ(update_sync(*s, id, {delivered(r, 0)}, queue::flag_delay_warned).second,
            completion::pending);
  ASSERT_EQ(set_held_sync(*s, {id}, true).first.code, status::ok);
  ASSERT_EQ(update_sync(*s, id, {failed(r, 1, t0 + 7), failed(r, 2, t0 + 9)}).second,
            completion::dead);
  const auto dead = s->get_dead(id);
  ASSERT_TRUE(dead);
  EXPECT_EQ(dead->recipients.size(), 2u);
  EXPECT_EQ(queue::failed_at(*dead), t0 + 9);
  EXPECT_NE(dead->flags & queue::flag_held, 0u);
  EXPECT_NE(dead->flags & queue::flag_delay_warned, 0u);

  auto [res, n] = replay_dead_sync(*s, {id}, later);
  ASSERT_EQ(res.code, status::ok) << res.detail;
  EXPECT_EQ(n, 1u);
  EXPECT_FALSE(s->get_dead(id));
  EXPECT_FALSE(s->dead_body(id));
  EXPECT_EQ(s->dead_count(), 0u);
  EXPECT_EQ(s->message_count(), 1u);

  const auto live = s->get(id);
  ASSERT_TRUE(live);
  EXPECT_EQ(live->arrival_us, later) << "the lifetime starts again";
  EXPECT_EQ(live->flags, std::uint32_t{queue::flag_eight_bit});
  EXPECT_EQ(live->sender, r.sender);
  EXPECT_EQ(live->size, r.size);
  ASSERT_EQ(live->recipients.size(), 2u) << "the delivered recipient is not sent again";
  for (std::size_t i = 0; i < 2; ++i) {
    const auto& rc = live->recipients[i];
    EXPECT_EQ(rc.address, r.recipients[i + 1].address);
    EXPECT_EQ(rc.state, rcpt_state::pending);
    EXPECT_EQ(rc.attempts, 0u);
    EXPECT_EQ(rc.next_attempt_us, later);
    EXPECT_EQ(rc.first_attempt_us, 0);
    EXPECT_EQ(rc.last_attempt_us, 0);
    EXPECT_TRUE(rc.reason.empty());
    // History: what the last attempt said.
    EXPECT_EQ(rc.reply_code, 550);
    EXPECT_EQ(rc.status, "5.1.1");
    EXPECT_EQ(rc.remote_host, "mx.example.net[192.0.2.1]:25");
    EXPECT_NE(rc.last_reply.find("550 5.1.1"), std::string::npos);
  }
  EXPECT_EQ(s->body(id), body_of(id));
  EXPECT_EQ(all_due(*s), (std::vector<due_entry>{{later, id}}));

  // A live message like any other: delivering both removes it.
  auto [ur, became] = update_sync(*s, id, {delivered(*live, 0), delivered(*live, 1)});
  ASSERT_EQ(ur.code, status::ok) << ur.detail;
  EXPECT_EQ(became, completion::delivered);
  EXPECT_EQ(s->message_count(), 0u);
  EXPECT_TRUE(all_due(*s).empty());
}

TEST(spool_dead, a_failed_recipient_is_dead_at_once_while_others_stay_queued) {
  temp_dir d;
  auto s = open_or_fail(options_in(d));
  ASSERT_TRUE(s);
  auto r = message(*s, 3);
  const std::string id = r.id;
  ASSERT_EQ(enqueue_sync(*s, r, body_of(id)).code, status::ok);
  // r0 delivered, r1 failed, r2 still pending (deferred).
  ASSERT_EQ(update_sync(*s, id, {delivered(r, 0), failed(r, 1)}).second, completion::pending);
  auto dead = s->get_dead(id);
  ASSERT_TRUE(dead) << "the failed recipient is in the dead spool before the message is final";
  ASSERT_EQ(dead->recipients.size(), 1u);
  EXPECT_EQ(dead->recipients[0].address, r.recipients[1].address);
  EXPECT_EQ(s->dead_body(id), body_of(id));
  ASSERT_TRUE(s->get(id));
  EXPECT_EQ(s->get(id)->recipients[2].state, rcpt_state::pending);

  // Replay while r2 is still queued: r1 joins it again, r0 is not sent again.
  ASSERT_EQ(replay_dead_sync(*s, {id}, later).first.code, status::ok);
  EXPECT_FALSE(s->get_dead(id));
  auto live = s->get(id);
  ASSERT_TRUE(live);
  EXPECT_EQ(live->recipients[0].state, rcpt_state::delivered);
  EXPECT_EQ(live->recipients[1].state, rcpt_state::pending);
  EXPECT_EQ(live->recipients[1].attempts, 0u);
  EXPECT_EQ(live->recipients[1].next_attempt_us, later);
  EXPECT_EQ(live->recipients[2].state, rcpt_state::pending);
  EXPECT_EQ(s->body(id), body_of(id));

  // r1 fails again, then r2 fails too: one entry with both.
  live = s->get(id);
  ASSERT_EQ(update_sync(*s, id, {failed(*live, 1)}).second, completion::pending);
  live = s->get(id);
  ASSERT_EQ(update_sync(*s, id, {failed(*live, 2)}).second, completion::dead);
  dead = s->get_dead(id);
  ASSERT_TRUE(dead);
  ASSERT_EQ(dead->recipients.size(), 2u);
  EXPECT_EQ(dead->recipients[0].address, r.recipients[1].address);
  EXPECT_EQ(dead->recipients[1].address, r.recipients[2].address);
  EXPECT_FALSE(s->get(id));
  EXPECT_EQ(s->dead_count(), 1u);
}

TEST(spool_dead, replay_of_unknown_ids_is_not_found_and_changes_nothing) {
  temp_dir d;
  auto s = open_or_fail(options_in(d));
  ASSERT_TRUE(s);
  // Nothing dead at all: ALL replays nothing and that is fine.
  auto [res, n] = replay_dead_sync(*s, {}, later);
  EXPECT_EQ(res.code, status::ok);
  EXPECT_EQ(n, 0u);

  const std::string dead = dead_message(*s);
  auto r = message(*s, 1);
  ASSERT_EQ(enqueue_sync(*s, r, body_of(r.id)).code, status::ok);
  for (const std::vector<std::string>& ids :
       {std::vector<std::string>{"0000000000000001"}, std::vector<std::string>{"not-an-id"},
        std::vector<std::string>{r.id}}) {
    std::tie(res, n) = replay_dead_sync(*s, ids, later);
    EXPECT_EQ(res.code, status::not_found) << ids[0];
    EXPECT_EQ(n, 0u);
  }
  // The live message and the dead entry are untouched.
  EXPECT_EQ(s->get(r.id)->arrival_us, t0);
  EXPECT_EQ(all_due(*s), (std::vector<due_entry>{{t0, r.id}}));
  EXPECT_TRUE(s->get_dead(dead));
  EXPECT_FALSE(s->get(dead));
  // Named with an unknown one: the known one is replayed.
  std::tie(res, n) = replay_dead_sync(*s, {"0000000000000001", dead}, later);
  EXPECT_EQ(res.code, status::ok);
  EXPECT_EQ(n, 1u);
  EXPECT_TRUE(s->get(dead));
}

TEST(spool_dead, replay_all_survives_a_restart) {
  temp_dir d;
  auto o = options_in(d);
  std::vector<std::string> dead;
  std::string live;
  {
    auto s = open_or_fail(o);
    ASSERT_TRUE(s);
    for (int i = 0; i < 3; ++i) dead.push_back(dead_message(*s));
    auto r = message(*s, 1);
    live = r.id;
    ASSERT_EQ(enqueue_sync(*s, r, body_of(live)).code, status::ok);
    auto [res, n] = replay_dead_sync(*s, {}, later);
    ASSERT_EQ(res.code, status::ok) << res.detail;
    EXPECT_EQ(n, 3u);
    EXPECT_EQ(s->dead_count(), 0u);
  }
  auto s = open_or_fail(o);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->report().messages, 4u);
  EXPECT_EQ(s->report().dead, 0u);
  EXPECT_EQ(s->report().scheduled, 4u);
  EXPECT_FALSE(s->report().schedule_rebuilt) << "replay keeps the index in step";
  std::vector<due_entry> want{{t0, live}};
  for (const auto& id : dead) want.push_back({later, id});
  EXPECT_EQ(all_due(*s), want);
  for (const auto& id : dead) {
    EXPECT_EQ(s->body(id), body_of(id));
    EXPECT_EQ(s->get(id)->recipients.at(0).state, rcpt_state::pending);
  }
}

TEST(spool_dead, entries_that_cannot_be_replayed_stay_dead) {
  temp_dir d;
  auto o = options_in(d);
  std::string garbled, bodiless, fine;
  {
    auto s = open_or_fail(o);
    ASSERT_TRUE(s);
    garbled = dead_message(*s);
    bodiless = dead_message(*s);
    fine = dead_message(*s);
  }
  {
    raw_env env(o.dir);
    env.put("dead", key_string(garbled), std::string("\x07garbage"));
    ASSERT_TRUE(env.del("dead_body", key_string(bodiless)));
  }
  auto s = open_or_fail(o);
  ASSERT_TRUE(s);
  auto [res, n] = replay_dead_sync(*s, {garbled}, later);
  EXPECT_EQ(res.code, status::error);
  EXPECT_NE(res.detail.find("decode"), std::string::npos) << res.detail;
  std::tie(res, n) = replay_dead_sync(*s, {bodiless}, later);
  EXPECT_EQ(res.code, status::error);
  EXPECT_NE(res.detail.find(bodiless), std::string::npos) << res.detail;
  EXPECT_EQ(s->message_count(), 0u);
  // ALL replays what it can.
  std::tie(res, n) = replay_dead_sync(*s, {}, later);
  EXPECT_EQ(res.code, status::ok);
  EXPECT_EQ(n, 1u);
  EXPECT_TRUE(s->get(fine));
  EXPECT_EQ(s->dead_count(), 2u);
  // An entry that does not decode has no age: only an explicit purge takes it.
  std::tie(res, n) = purge_dead_older_sync(*s, forever);
  EXPECT_EQ(n, 1u);
  EXPECT_EQ(s->dead_count(), 1u);
  std::tie(res, n) = purge_dead_sync(*s, {garbled});
  EXPECT_EQ(res.code, status::ok);
  EXPECT_EQ(s->dead_count(), 0u);
}

TEST(spool_dead, purge_older_than_goes_by_failed_at) {
  temp_dir d;
  auto o = options_in(d);
  std::string a, b, c, never;
  {
    auto s = open_or_fail(o);
    ASSERT_TRUE(s);
    a = dead_message(*s, t0 + 10);
    b = dead_message(*s, t0 + 20);
    c = dead_message(*s, t0 + 30);
    never = dead_message(*s, 0);  // never attempted: its arrival counts (t0)
    EXPECT_EQ(queue::failed_at(*s->get_dead(never)), t0);

    auto [res, n] = purge_dead_older_sync(*s, t0);
    EXPECT_EQ(res.code, status::ok);
    EXPECT_EQ(n, 0u) << "failed_at == cutoff is not older";
    std::tie(res, n) = purge_dead_older_sync(*s, t0 + 20);
    EXPECT_EQ(res.code, status::ok);
    EXPECT_EQ(n, 2u);
    EXPECT_FALSE(s->get_dead(never));
    EXPECT_FALSE(s->get_dead(a));
    EXPECT_FALSE(s->dead_body(a));
    EXPECT_TRUE(s->get_dead(b));
    EXPECT_TRUE(s->get_dead(c));
  }
  auto s = open_or_fail(o);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->report().dead, 2u);
  EXPECT_EQ(s->dead_body(b), body_of(b));
  auto [res, n] = purge_dead_older_sync(*s, t0 + 31);
  EXPECT_EQ(res.code, status::ok);
  EXPECT_EQ(n, 2u);
  EXPECT_EQ(s->dead_count(), 0u);
  std::tie(res, n) = purge_dead_older_sync(*s, forever);
  EXPECT_EQ(res.code, status::ok);
  EXPECT_EQ(n, 0u);
}

// Several chunks: purge the older half by age (letting an enqueue that was
// waiting behind it go first), then replay the rest.
TEST(spool_dead, many_entries_go_in_chunks_between_other_operations) {
  temp_dir d;
  auto s = open_or_fail(options_in(d));
  ASSERT_TRUE(s);
  constexpr int count = 4500;  // more than four chunks
  const auto ids = many_dead(*s, count);
  ASSERT_EQ(s->dead_count(), static_cast<std::uint64_t>(count));

  // The writer is kept busy by a gate until the purge and then an enqueue are
  // both waiting, so it finds them in this order.
  std::promise<void> open_gate;
  auto gate_open = open_gate.get_future();
  sync_call<queue::result> gate;
  auto gate_cb = gate.callback();
  auto gate_msg = message(*s, 1);
  s->enqueue(gate_msg, body_of(gate_msg.id), [&](queue::result r) {
    gate_open.wait();
    gate_cb(std::move(r));
  });
  std::atomic<int> order{0};
  int purge_done = -1, enqueue_done = -1;
  sync_call<queue::result, std::size_t> purge;
  sync_call<queue::result> enq;
  auto purge_cb = purge.callback();
  auto enq_cb = enq.callback();
  const auto commits = queue::stats(*s).commits;
  // Message i failed at t0 + i: the first half is older than the cutoff.
  s->purge_dead_older_than(t0 + count / 2, [&](queue::result r, std::size_t n) {
    purge_done = order++;
    purge_cb(std::move(r), n);
  });
  auto extra = message(*s, 1);
  s->enqueue(extra, body_of(extra.id), [&](queue::result r) {
    enqueue_done = order++;
    enq_cb(std::move(r));
  });
  open_gate.set_value();
  ASSERT_EQ(std::get<0>(gate.f.get()).code, status::ok);
  auto [pres, purged] = purge.f.get();
  ASSERT_EQ(std::get<0>(enq.f.get()).code, status::ok);
  ASSERT_EQ(pres.code, status::ok) << pres.detail;
  EXPECT_EQ(purged, static_cast<std::size_t>(count / 2));
  EXPECT_LT(enqueue_done, purge_done) << "the purge let the enqueue go first";
  EXPECT_GE(queue::stats(*s).commits - commits, 3u);
  EXPECT_EQ(s->dead_count(), static_cast<std::uint64_t>(count - count / 2));
  for (int i = 0; i < count; ++i) {
    EXPECT_EQ(s->get_dead(ids[static_cast<std::size_t>(i)]).has_value(), i >= count / 2) << i;
  }

  auto [rres, replayed] = replay_dead_sync(*s, {}, later);
  ASSERT_EQ(rres.code, status::ok) << rres.detail;
  EXPECT_EQ(replayed, static_cast<std::size_t>(count - count / 2));
  EXPECT_EQ(s->dead_count(), 0u);
  EXPECT_EQ(s->message_count(), static_cast<std::uint64_t>(count - count / 2 + 2));
  const auto due = all_due(*s);
  ASSERT_EQ(due.size(), static_cast<std::size_t>(count - count / 2 + 2));
  EXPECT_EQ(
      std::count_if(due.begin(), due.end(), [](const due_entry& e) { return e.due_us == later; }),
      count - count / 2);
}

}  // namespace
