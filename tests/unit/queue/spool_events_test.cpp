// The spool's event outbox: events stored with enqueue() and update_recipients()
// are committed with their change (none when the update does not apply), read
// back oldest first across a reopen, and deleted only up to the acknowledged
// sequence number; new events after an ack keep sorting after older ones.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "queue/spool.hpp"
#include "tests/unit/queue/spool_test_util.hpp"

namespace {

using namespace queue_test;
using queue::status;

queue::result enqueue_events_sync(queue::spool& s, queue::envelope_record r, std::string body,
                                  std::vector<std::string> events) {
  sync_call<queue::result> c;
  s.enqueue(std::move(r), std::move(body), c.callback(), std::move(events));
  return std::get<0>(c.f.get());
}

std::pair<queue::result, std::size_t> ack_sync(queue::spool& s, std::uint64_t upto) {
  sync_call<queue::result, std::size_t> c;
  s.ack_outbox(upto, c.callback());
  auto [r, n] = c.f.get();
  return {std::move(r), n};
}

std::vector<std::string> texts(const std::vector<queue::spool::outbox_entry>& v) {
  std::vector<std::string> out;
  for (const auto& e : v) out.push_back(e.text);
  return out;
}

TEST(spool_events, events_are_stored_with_their_change_and_survive_a_reopen) {
  temp_dir d;
  std::string id;
  {
    auto s = open_or_fail(options_in(d));
    ASSERT_TRUE(s);
    EXPECT_TRUE(s->outbox(10).empty());
    auto rec = make_record(*s, 10);
    id = rec.id;
    ASSERT_EQ(enqueue_events_sync(*s, rec, "body", {"r1"}).code, status::ok);
    // Plain enqueue stores none.
    ASSERT_EQ(enqueue_sync(*s, make_record(*s, 10, 1), "x").code, status::ok);
    auto stored = s->get(id);
    ASSERT_TRUE(stored);
    queue::recipient done = stored->recipients[0];
    done.state = queue::rcpt_state::delivered;
    sync_call<queue::result, queue::spool::completion> c;
    s->update_recipients(id, {{0, done}}, 0, c.callback(), {"d1", "d2"});
    ASSERT_EQ(std::get<0>(c.f.get()).code, status::ok);
    // An update that does not apply (no such message) stores nothing.
    sync_call<queue::result, queue::spool::completion> gone;
    s->update_recipients("0000000000000001", {{0, done}}, 0, gone.callback(), {"never"});
    ASSERT_EQ(std::get<0>(gone.f.get()).code, status::not_found);
    EXPECT_EQ(s->outbox_count(), 3u);
  }
  auto s = open_or_fail(options_in(d));
  ASSERT_TRUE(s);
  const auto box = s->outbox(10);
  EXPECT_EQ(texts(box), (std::vector<std::string>{"r1", "d1", "d2"}));
  ASSERT_EQ(box.size(), 3u);
  EXPECT_LT(box[0].seq, box[1].seq);
  EXPECT_LT(box[1].seq, box[2].seq);
  EXPECT_EQ(texts(s->outbox(2)), (std::vector<std::string>{"r1", "d1"}));
}

TEST(spool_events, ack_deletes_up_to_the_sequence_number_only) {
  temp_dir d;
  auto s = open_or_fail(options_in(d));
  ASSERT_TRUE(s);
  for (int i = 0; i < 3; ++i)
    ASSERT_EQ(enqueue_events_sync(*s, make_record(*s, 10, i), "b", {"e" + std::to_string(i)}).code,
              status::ok);
  auto box = s->outbox(10);
  ASSERT_EQ(box.size(), 3u);
  auto [r, n] = ack_sync(*s, box[1].seq);
  EXPECT_EQ(r.code, status::ok);
  EXPECT_EQ(n, 2u);
  EXPECT_EQ(texts(s->outbox(10)), std::vector<std::string>{"e2"});
  ASSERT_EQ(enqueue_events_sync(*s, make_record(*s, 10, 7), "b", {"e3"}).code, status::ok);
  box = s->outbox(10);
  EXPECT_EQ(texts(box), (std::vector<std::string>{"e2", "e3"}));
  EXPECT_EQ(ack_sync(*s, box.back().seq).second, 2u);
  EXPECT_EQ(s->outbox_count(), 0u);
  EXPECT_EQ(ack_sync(*s, 1000).second, 0u);  // nothing left: ok, none
}

TEST(spool_events, append_outbox_stores_events_without_a_change) {
  temp_dir d;
  auto s = open_or_fail(options_in(d));
  ASSERT_TRUE(s);
  ASSERT_EQ(enqueue_events_sync(*s, make_record(*s, 10), "b", {"received"}).code, status::ok);
  sync_call<queue::result, std::size_t> c;
  s->append_outbox({"suspended", "resumed"}, c.callback());
  auto [r, n] = c.f.get();
  EXPECT_EQ(r.code, status::ok);
  EXPECT_EQ(n, 2u);
  EXPECT_EQ(texts(s->outbox(10)), (std::vector<std::string>{"received", "suspended", "resumed"}));
  EXPECT_EQ(s->message_count(), 1u);
}

TEST(spool_events, body_head_reads_only_the_start) {
  temp_dir d;
  auto s = open_or_fail(options_in(d));
  ASSERT_TRUE(s);
  auto rec = make_record(*s, 10);
  ASSERT_EQ(enqueue_sync(*s, rec, "Message-ID: <a@b>\r\n\r\nbody").code, status::ok);
  EXPECT_EQ(s->body_head(rec.id, 10), "Message-ID");
  EXPECT_EQ(s->body_head(rec.id, 1000), "Message-ID: <a@b>\r\n\r\nbody");
  EXPECT_FALSE(s->body_head("0000000000000001", 10));
  EXPECT_FALSE(s->body_head("nonsense", 10));
}

}  // namespace
