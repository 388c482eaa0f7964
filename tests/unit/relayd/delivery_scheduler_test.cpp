// The scheduler through its delivery_port, on a real spool in a temporary
// directory and an injected wall clock: the test plays the delivery agent
// (takes jobs, reports outcomes, throttles) and checks what the queue then says.
#include "relayd/delivery_scheduler.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <future>

#include "relayd/delivery_port.hpp"
#include "relayd/events_log.hpp"

#include <fstream>

namespace relayd {
namespace {

using namespace std::chrono_literals;
constexpr std::int64_t sec = 1'000'000;
constexpr std::int64_t t0 = 1'700'000'000 * sec;

// Records the connections the scheduler asks for; the test runs them.
struct fake_port final : delivery_port {
  std::vector<destination*> started;
  void start_connection(destination& d) override { started.push_back(&d); }
};

recipient_outcome deferred(std::size_t index, std::uint16_t code = 451, std::string status = "4.3.0") {
  return {.index = index, .what = outcome_kind::deferred, .code = code, .status = status,
          .description = "host mx[127.0.0.2] said: " + std::to_string(code) + " " + status + " later",
          .remote_host = "mx[127.0.0.2]:25"};
}
recipient_outcome delivered(std::size_t index) {
  return {.index = index, .what = outcome_kind::delivered, .code = 250, .status = "2.0.0",
          .description = "host mx[127.0.0.2] said: 250 2.0.0 ok", .remote_host = "mx[127.0.0.2]:25"};
}
// One outcome per recipient of the job.
std::vector<recipient_outcome> all(const job& j, recipient_outcome (*make)(std::size_t)) {
  std::vector<recipient_outcome> out;
  for (auto i : j.recipients) out.push_back(make(i));
  return out;
}
recipient_outcome deferred_451(std::size_t i) { return deferred(i); }

class delivery_scheduler_test : public ::testing::Test {
 protected:
  delivery_scheduler_test() {
    dir_ = std::filesystem::temp_directory_path() /
           ("relayd-sched-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    cfg_.hostname = "relay.test";
    cfg_.queue.min_backoff = 60s;
    cfg_.queue.max_backoff = 600s;
    cfg_.queue.max_lifetime = 24h;
    cfg_.queue.delay_warning = 4h;
    cfg_.delivery.concurrency_per_destination = 2;
    open_spool();
  }
  // The process ends: the scheduler goes first, then the spool (its writer
  // finishes), then the I/O context with the handlers that never ran.
  ~delivery_scheduler_test() override { crash(); std::filesystem::remove_all(dir_); }
  void crash() {
    sched_.reset();
    spool_.reset();
    io_ = std::make_unique<asio::io_context>();
  }

  void open_spool() {
    auto s = queue::spool::open({.dir = dir_, .min_free_disk = 0});
    ASSERT_TRUE(s.has_value()) << s.error();
    spool_ = std::move(*s);
  }
  void start(std::size_t max_in_flight = 10000) {
    sched_ = std::make_unique<scheduler>(*io_, cfg_, *spool_, nullptr, [this] { return now_; },
                                         max_in_flight);
    sched_->start(port_);
    settle();
  }
  // Stops the scheduler the way the daemon does: once every result is stored.
  void stop() {
    bool idle = false;
    sched_->stop([&] { idle = true; });
    run_until([&] { return idle; });
    ASSERT_TRUE(idle);
    settle();  // the loop coroutine sees stopping_ and ends
    sched_.reset();
  }

  // Spools a message from `sender` to `rcpts` (all due at `due_us`, 0: at
  // once) and tells the scheduler, as the inbound side does; returns its ID.
  std::string enqueue(std::vector<std::string> rcpts, std::string sender = "app@src.test",
                      std::int64_t due_us = 0) {
    std::vector<queue::recipient> list;
    for (auto& a : rcpts) list.push_back({.address = a, .next_attempt_us = due_us});
    return enqueue_recipients(std::move(list), std::move(sender), due_us);
  }
  std::string enqueue_recipients(std::vector<queue::recipient> rcpts, std::string sender,
                                 std::int64_t due_us) {
    queue::envelope_record r;
    r.id = spool_->new_id();
    r.arrival_us = now_;
    r.sender = std::move(sender);
    r.recipients = std::move(rcpts);
    const std::string body = "Subject: test\r\n\r\nhello\r\n";
    r.size = body.size();
    std::promise<queue::result> done;
    spool_->enqueue(r, body, [&](queue::result res) { done.set_value(std::move(res)); });
    EXPECT_EQ(done.get_future().get().code, queue::status::ok);
    if (sched_) sched_->notify_enqueued(due_us, r.id);
    settle();
    return r.id;
  }

  // Spools a message to `rcpt`, due now, as the inbound thread does before it
  // tells its arrival: marked arriving(), not told.
  queue::envelope_record spool_arriving(const std::string& rcpt) {
    queue::envelope_record r;
    r.id = spool_->new_id();
    r.arrival_us = now_;
    r.sender = "app@src.test";
    r.recipients.push_back({.address = rcpt, .next_attempt_us = now_});
    const std::string body = "Subject: test\r\n\r\nhello\r\n";
    r.size = body.size();
    sched_->arriving(r.id);
    std::promise<queue::result> done;
    spool_->enqueue(r, body, [&](queue::result res) { done.set_value(std::move(res)); });
    EXPECT_EQ(done.get_future().get().code, queue::status::ok);
    return r;
  }

  // Runs the I/O context until `done` holds (the spool answers on its own
  // thread, so results arrive a little later); gives up after 5 s.
  template <typename Pred>
  void run_until(Pred done) {
    const auto give_up = std::chrono::steady_clock::now() + 5s;
    while (!done() && std::chrono::steady_clock::now() < give_up) {
      io_->restart();
      io_->run_one_for(2ms);
    }
  }
  // Runs everything that can happen now: until the spool has answered all it
  // was asked (a no-op request queued behind them comes back) and no handler
  // is left to run.
  void settle() {
    for (;;) {
      std::promise<void> barrier;
      spool_->remove({"FFFFFFFFFFFFFFFF"}, [&](queue::result, std::size_t) { barrier.set_value(); });
      barrier.get_future().wait();
      io_->restart();
      if (io_->poll() == 0) return;
    }
  }

  void advance(std::chrono::seconds d) {
    now_ += std::chrono::duration_cast<std::chrono::microseconds>(d).count();
    sched_->wake();
    settle();
  }

  // The agent's side of one connection: ready, every job it gets reported with
  // `outcome`, then closed. Returns the jobs it carried.
  std::vector<job> serve(destination& d, recipient_outcome (*outcome)(std::size_t)) {
    std::vector<job> carried;
    --d.connecting;
    while (auto j = sched_->next_job(d)) {
      carried.push_back(*j);
      auto outs = all(*j, outcome);
      sched_->complete(d, std::move(*j), std::move(outs), "mx[127.0.0.2]:25", {});
    }
    sched_->connection_done(d);
    settle();
    return carried;
  }
  // start() with an [events] file in the test's directory (null: it cannot be opened).
  std::unique_ptr<event_log> start_with_events() {
    cfg_.events.file = (dir_ / "events.jsonl").string();
    std::filesystem::create_directories(dir_);
    auto events = std::make_unique<event_log>(*io_, cfg_, *spool_, nullptr);
    std::string error;
    if (!events->start(error)) {
      ADD_FAILURE() << error;
      return nullptr;
    }
    start();
    sched_->set_events(events.get());
    return events;
  }
  destination& started(std::size_t n) { return *port_.started.at(n); }
  destination& last_started_to(const std::string& name) {
    for (auto it = port_.started.rbegin(); it != port_.started.rend(); ++it)
      if ((*it)->key.name == name) return **it;
    ADD_FAILURE() << "no connection to " << name;
    return *port_.started.at(0);
  }

  queue::recipient rcpt(const std::string& id, std::size_t i = 0) {
    auto r = spool_->get(id);
    EXPECT_TRUE(r.has_value()) << id;
    return r ? r->recipients.at(i) : queue::recipient{};
  }
  // Messages in the queue from <> (DSNs) to `to`.
  std::vector<queue::envelope_record> notices_to(const std::string& to) {
    std::vector<queue::envelope_record> out;
    spool_->scan("", 1000, [&](const queue::envelope_record& r) {
      if (r.sender.empty() && r.recipients.size() == 1 && r.recipients[0].address == to)
        out.push_back(r);
    });
    return out;
  }
  bool settle_until_stored(const std::string& id) {
    run_until([&] { return !sched_->in_flight(id); });
    return !sched_->in_flight(id);
  }

  std::filesystem::path dir_;
  config cfg_;
  std::int64_t now_ = t0;
  std::unique_ptr<asio::io_context> io_ = std::make_unique<asio::io_context>();
  std::unique_ptr<queue::spool> spool_;
  fake_port port_;
  std::unique_ptr<scheduler> sched_;
};

TEST_F(delivery_scheduler_test, deferrals_back_off_from_min_backoff_doubling_up_to_the_cap) {
  start();
  const auto id = enqueue({"a@example.org"});
  // 60 s × 2^(n-1), capped at 600 s; jitter adds under 10 % (at the cap it
  // takes up to 10 % off instead, so the wait never passes max_backoff).
  const std::int64_t base_s[] = {60, 120, 240, 480, 600, 600};
  for (std::size_t n = 0; n < std::size(base_s); ++n) {
    ASSERT_EQ(port_.started.size(), n + 1) << "attempt " << n + 1;
    EXPECT_EQ(started(n).key.name, "example.org");
    ASSERT_EQ(serve(started(n), deferred_451).size(), 1u);
    ASSERT_TRUE(settle_until_stored(id));
    const auto r = rcpt(id);
    EXPECT_EQ(r.attempts, n + 1);
    EXPECT_EQ(r.state, queue::rcpt_state::pending);
    const auto wait = r.next_attempt_us - now_;
    const auto base = base_s[n] * sec;
    if (base < 600 * sec) {
      EXPECT_GE(wait, base) << "attempt " << n + 1;
      EXPECT_LT(wait, base + base / 10) << "attempt " << n + 1;
    } else {
      EXPECT_GT(wait, base - base / 10) << "attempt " << n + 1;
      EXPECT_LE(wait, base) << "attempt " << n + 1;
    }
    // Nothing is tried before the next attempt is due, and it is tried then.
    now_ = r.next_attempt_us - sec;
    advance(0s);
    EXPECT_EQ(port_.started.size(), n + 1);
    advance(1s);
  }
}

TEST_F(delivery_scheduler_test, a_421_throttles_the_whole_destination_without_counting_attempts) {
  cfg_.delivery.concurrency_per_destination = 1;
  start();
  const auto first = enqueue({"a@example.org"});
  const auto second = enqueue({"b@example.org"});
  const auto third = enqueue({"c@example.org"});
  ASSERT_EQ(port_.started.size(), 1u);
  auto& d = started(0);
  // The connection takes the first job and hears 421 4.7.0 (rate limit): the
  // agent reports that job and tells the scheduler.
  --d.connecting;
  auto j = sched_->next_job(d);
  ASSERT_TRUE(j);
  const auto why = deferred(0, 421, "4.7.0");
  sched_->complete(d, std::move(*j), {why}, "mx[127.0.0.2]:25", {});
  sched_->throttle(d, why);
  sched_->connection_done(d);
  for (const auto& id : {first, second, third}) ASSERT_TRUE(settle_until_stored(id));

  EXPECT_EQ(rcpt(first).attempts, 1u);  // it was tried
  for (const auto& id : {second, third}) {
    const auto r = rcpt(id);
    EXPECT_EQ(r.attempts, 0u) << "a waiting job is not an attempt";
    EXPECT_EQ(r.next_attempt_us, t0 + 60 * sec) << "exactly when the destination's backoff ends";
    EXPECT_EQ(r.reply_code, 421);
  }
  // Mail for it that comes during the backoff waits too, with no connection.
  const auto later = enqueue({"d@example.org"});
  ASSERT_TRUE(settle_until_stored(later));
  EXPECT_EQ(port_.started.size(), 1u);
  EXPECT_EQ(rcpt(later).attempts, 0u);
  EXPECT_NE(rcpt(later).last_reply.find("delivery temporarily suspended"), std::string::npos);
  // Another destination is not affected.
  enqueue({"x@example.net"});
  ASSERT_EQ(port_.started.size(), 2u);
  EXPECT_EQ(started(1).key.name, "example.net");
  // When the backoff ends, the destination gets a connection again.
  serve(started(1), delivered);
  advance(60s);
  ASSERT_EQ(port_.started.size(), 3u);
  EXPECT_EQ(started(2).key.name, "example.org");
  serve(started(2), delivered);
  for (const auto& id : {second, third, later}) EXPECT_FALSE(spool_->get(id)) << "delivered";
}

TEST_F(delivery_scheduler_test, an_unreachable_destination_defers_its_jobs_as_attempts_and_backs_off) {
  start();
  const auto id = enqueue({"a@example.org"});
  ASSERT_EQ(port_.started.size(), 1u);
  auto& d = started(0);
  recipient_outcome why{.what = outcome_kind::deferred, .status = "4.4.1",
                        .description = "connect to mx[127.0.0.2]:25: Connection refused"};
  sched_->unreachable(d, why);
  --d.connecting;
  sched_->connection_done(d);
  ASSERT_TRUE(settle_until_stored(id));
  EXPECT_EQ(rcpt(id).attempts, 1u);
  EXPECT_GE(rcpt(id).next_attempt_us, t0 + 60 * sec);
  EXPECT_LT(rcpt(id).next_attempt_us, t0 + 66 * sec);
  const auto later = enqueue({"b@example.org"});
  ASSERT_TRUE(settle_until_stored(later));
  EXPECT_EQ(port_.started.size(), 1u) << "no connection during the backoff";
}

TEST_F(delivery_scheduler_test, connections_per_destination_stay_within_the_limit) {
  cfg_.delivery.concurrency_per_destination = 2;
  start();
  for (int i = 0; i < 5; ++i) enqueue({"r" + std::to_string(i) + "@example.org"});
  enqueue({"s@example.net"});
  // One for example.org (five jobs wait; a destination opens one connection
  // until one works), one for example.net.
  ASSERT_EQ(port_.started.size(), 2u);
  EXPECT_EQ(started(0).key.name, "example.org");
  EXPECT_EQ(started(0).active, 1u);
  EXPECT_EQ(started(1).key.name, "example.net");
  // Once it is ready, the second opens.
  auto& d = started(0);
  --d.connecting;
  sched_->connection_ready(d);
  settle();
  ASSERT_EQ(port_.started.size(), 3u);
  EXPECT_EQ(&started(2), &d);
  EXPECT_EQ(d.active, 2u);
  // A connection that closes with jobs still waiting is replaced.
  auto j = sched_->next_job(d);
  ASSERT_TRUE(j);
  auto outs = all(*j, delivered);
  sched_->complete(d, std::move(*j), std::move(outs), "mx[127.0.0.2]:25", {});
  sched_->connection_done(d);
  settle();
  ASSERT_EQ(port_.started.size(), 4u);
  EXPECT_EQ(started(3).key.name, "example.org");
  EXPECT_EQ(d.active, 2u);
  // The two connections share the four jobs left.
  EXPECT_EQ(serve(started(2), delivered).size() + serve(started(3), delivered).size(), 4u);
  EXPECT_EQ(spool_->message_count(), 1u);  // only the example.net message is left
}

TEST_F(delivery_scheduler_test, at_most_max_in_flight_messages_are_dispatched) {
  start(3);
  std::vector<std::string> ids;
  for (int i = 0; i < 5; ++i) ids.push_back(enqueue({"r@d" + std::to_string(i) + ".example"}));
  ASSERT_EQ(port_.started.size(), 3u);
  EXPECT_EQ(sched_->in_flight_count(), 3u);
  // One message is done: room for one more.
  serve(started(0), delivered);
  ASSERT_TRUE(settle_until_stored(ids[0]));
  settle();
  ASSERT_EQ(port_.started.size(), 4u);
  EXPECT_EQ(started(3).key.name, "d3.example");
  EXPECT_EQ(sched_->in_flight_count(), 3u);
}

// The inbound thread marks a message arriving before it spools it, and tells
// its arrival (with the "received" event) a little later: a pass of the loop
// that reads the message in the spool in between must leave it alone, or its
// delivery events could be written before its "received".
TEST_F(delivery_scheduler_test, a_message_still_arriving_is_dispatched_only_once_told) {
  start();
  const queue::envelope_record r = spool_arriving("a@a.example");
  sched_->rescan(false);  // a pass over the whole due index, the message in it
  settle();
  EXPECT_TRUE(port_.started.empty()) << "dispatched before its arrival was told";
  EXPECT_FALSE(sched_->in_flight(r.id));
  sched_->notify_enqueued(r.arrival_us, r.id);
  settle();
  ASSERT_EQ(port_.started.size(), 1u);
  EXPECT_EQ(started(0).key.name, "a.example");
  EXPECT_TRUE(sched_->in_flight(r.id));
}

// Mail behind an arriving message waits for that one's notice (it comes a few
// milliseconds later); then both go.
TEST_F(delivery_scheduler_test, mail_behind_an_arriving_message_goes_with_it) {
  start();
  const queue::envelope_record r = spool_arriving("a@a.example");
  now_ += 1000;
  const auto behind = enqueue({"b@b.example"}, "app@src.test", now_);
  EXPECT_TRUE(port_.started.empty());
  sched_->notify_enqueued(r.arrival_us, r.id);
  settle();
  EXPECT_TRUE(sched_->in_flight(r.id));
  EXPECT_TRUE(sched_->in_flight(behind));
  EXPECT_EQ(port_.started.size(), 2u);
}

// A failed enqueue is let go: the id does not stay held back.
TEST_F(delivery_scheduler_test, an_arrival_that_failed_holds_nothing_back) {
  start();
  sched_->arriving("0000000000000001");
  sched_->arrival_failed("0000000000000001");
  const auto id = enqueue({"a@a.example"});
  EXPECT_TRUE(sched_->in_flight(id));
}

TEST_F(delivery_scheduler_test, a_message_due_while_in_flight_is_picked_up_when_its_result_is_stored) {
  start();
  // One message: a@ due now, b@ only 10 s later; a.example gets the job.
  const auto id = enqueue_recipients(
      {{.address = "a@a.example"}, {.address = "b@b.example", .next_attempt_us = t0 + 10 * sec}},
      "app@src.test", 0);
  ASSERT_EQ(port_.started.size(), 1u);
  auto& a = started(0);
  --a.connecting;
  auto j = sched_->next_job(a);
  ASSERT_TRUE(j);
  // While a@ is being delivered, b@ falls due, later mail comes, and a rescan
  // (relayctl -r; the periodic full scan does the same) walks the due index past
  // both: the message is in flight, so the scheduler leaves it.
  now_ += 20 * sec;
  enqueue({"c@c.example"}, "app@src.test", t0 + 15 * sec);
  sched_->rescan(false);
  settle();
  ASSERT_EQ(port_.started.size(), 2u);
  EXPECT_EQ(started(1).key.name, "c.example");
  // a@ is delivered; the message is now due (for b@) before the cursor.
  sched_->complete(a, std::move(*j), {delivered(0)}, "mx[127.0.0.2]:25", {});
  sched_->connection_done(a);
  ASSERT_TRUE(settle_until_stored(id));
  settle();
  ASSERT_EQ(port_.started.size(), 3u) << "b@ must not wait for the next full scan";
  EXPECT_EQ(started(2).key.name, "b.example");
  const auto jobs = serve(started(2), delivered);
  ASSERT_EQ(jobs.size(), 1u);
  EXPECT_EQ(jobs[0].message->id, id);
}

TEST_F(delivery_scheduler_test, one_delay_notice_after_delay_warning) {
  start();
  const auto id = enqueue({"a@example.org"});
  serve(started(0), deferred_451);
  ASSERT_TRUE(settle_until_stored(id));
  EXPECT_TRUE(notices_to("app@src.test").empty()) << "too early for a delay warning";
  // Tried again past delay_warning (4 h): one "delayed" notice.
  advance(5h);
  ASSERT_EQ(port_.started.size(), 2u);
  serve(started(1), deferred_451);
  ASSERT_TRUE(settle_until_stored(id));
  auto notices = notices_to("app@src.test");
  ASSERT_EQ(notices.size(), 1u);
  const auto body = spool_->body(notices[0].id);
  ASSERT_TRUE(body);
  EXPECT_NE(body->find("Action: delayed"), std::string::npos);
  EXPECT_TRUE(spool_->get(id)->flags & queue::flag_delay_warned);
  // Later deferrals send no second one.
  advance(1h);
  serve(last_started_to("example.org"), deferred_451);
  ASSERT_TRUE(settle_until_stored(id));
  EXPECT_EQ(rcpt(id).attempts, 3u);
  EXPECT_EQ(notices_to("app@src.test").size(), 1u);
}

TEST_F(delivery_scheduler_test, a_message_past_max_lifetime_goes_to_the_dead_spool_with_a_notice) {
  start();
  const auto id = enqueue({"a@example.org"});
  const auto bounce = enqueue({"b@example.org"}, "");  // from <>: nobody to tell
  advance(25h);  // past max_lifetime (24 h) before the first attempt ends
  serve(started(0), deferred_451);
  ASSERT_TRUE(settle_until_stored(id));
  ASSERT_TRUE(settle_until_stored(bounce));
  EXPECT_FALSE(spool_->get(id));
  auto dead = spool_->get_dead(id);
  ASSERT_TRUE(dead);
  EXPECT_EQ(dead->recipients[0].reason, "expired");
  auto notices = notices_to("app@src.test");
  ASSERT_EQ(notices.size(), 1u);
  EXPECT_NE(spool_->body(notices[0].id)->find("Action: failed"), std::string::npos);
  // The null sender's message: dead spool only, no notice to anybody.
  auto dead_bounce = spool_->get_dead(bounce);
  ASSERT_TRUE(dead_bounce);
  EXPECT_EQ(dead_bounce->recipients[0].reason, "bounce_failed");
  EXPECT_EQ(spool_->message_count(), 1u);  // the one notice
}

TEST_F(delivery_scheduler_test, a_new_scheduler_picks_up_everything_not_final) {
  cfg_.delivery.concurrency_per_destination = 1;
  start();
  const auto sent = enqueue({"a@a.example"});
  const auto cut = enqueue({"b@b.example"});
  const auto waiting = enqueue({"c@b.example"});
  const auto deferred_id = enqueue({"d@d.example"});
  ASSERT_EQ(port_.started.size(), 3u);
  serve(started(0), delivered);
  serve(started(2), deferred_451);
  ASSERT_TRUE(settle_until_stored(sent));
  ASSERT_TRUE(settle_until_stored(deferred_id));
  // b.example's connection takes `cut` and the process dies mid-transaction.
  --started(1).connecting;
  ASSERT_TRUE(sched_->next_job(started(1)));
  crash();
  open_spool();
  port_.started.clear();

  start();
  // `cut` and `waiting` go out again; `sent` is gone; `deferred_id` waits.
  ASSERT_EQ(port_.started.size(), 1u);
  EXPECT_EQ(started(0).key.name, "b.example");
  const auto jobs = serve(started(0), delivered);
  ASSERT_EQ(jobs.size(), 2u);
  EXPECT_EQ(jobs[0].message->id, cut);
  EXPECT_EQ(jobs[1].message->id, waiting);
  EXPECT_FALSE(spool_->get(sent));
  advance(70s);  // past the deferral's 60 s (+ under 10 % jitter)
  ASSERT_EQ(port_.started.size(), 2u);
  EXPECT_EQ(started(1).key.name, "d.example");
  serve(started(1), delivered);
  stop();
  EXPECT_EQ(spool_->message_count(), 0u);
}

// ---- [[destination]]: rates, reply rules, the circuit breaker, MX grouping ----

TEST_F(delivery_scheduler_test, mail_over_max_rate_waits_in_the_queue_for_its_own_slot) {
  cfg_.delivery.concurrency_per_destination = 1;
  cfg_.destinations = {{.match = "example.org", .max_rate = "60/m"}};
  start();
  std::vector<std::string> ids;
  for (int i = 0; i < 5; ++i) ids.push_back(enqueue({"r" + std::to_string(i) + "@example.org"}));
  ASSERT_EQ(port_.started.size(), 1u);
  for (int i = 1; i < 5; ++i) {
    ASSERT_TRUE(settle_until_stored(ids[i]));
    const auto r = rcpt(ids[i]);
    EXPECT_EQ(r.attempts, 0u) << "over the rate is not an attempt";
    EXPECT_EQ(r.next_attempt_us, t0 + i * sec) << "one a second, each its own slot";
    EXPECT_NE(r.last_reply.find("rate limit 60/m of destination example.org: waits until"),
              std::string::npos) << r.last_reply;
  }
  EXPECT_EQ(sched_->in_flight_count(), 1u) << "the rest is not held in memory";
  ASSERT_EQ(serve(started(0), delivered).size(), 1u);
  // At its slot the second goes, charged once: the third still waits for its own.
  advance(1s);
  ASSERT_EQ(port_.started.size(), 2u);
  ASSERT_EQ(serve(started(1), delivered).size(), 1u);
  EXPECT_FALSE(spool_->get(ids[1]));
  EXPECT_EQ(rcpt(ids[2]).next_attempt_us, t0 + 2 * sec);
  advance(3s);
  EXPECT_EQ(port_.started.size(), 3u);
}

TEST_F(delivery_scheduler_test, a_suspend_rule_stops_connections_until_it_ends) {
  cfg_.delivery.concurrency_per_destination = 1;
  cfg_.destinations = {{.match = "example.org",
                        .rules = {{"^421 4\\.7\\.28", destination_rule::action_kind::suspend,
                                   std::chrono::seconds(1800)}}}};
  start();
  const auto first = enqueue({"a@example.org"});
  const auto second = enqueue({"b@example.org"});
  ASSERT_EQ(port_.started.size(), 1u);
  auto& d = started(0);
  --d.connecting;
  sched_->connection_ready(d);
  auto j = sched_->next_job(d);
  ASSERT_TRUE(j);
  auto why = deferred(0, 421, "4.7.28");
  why.text = "Our system has detected an unusual rate of unsolicited mail";
  sched_->complete(d, std::move(*j), {why}, "mx[127.0.0.2]:25", {});
  sched_->throttle(d, why);
  EXPECT_FALSE(sched_->next_job(d)) << "the open connection gets nothing more";
  sched_->connection_done(d);
  ASSERT_TRUE(settle_until_stored(first));
  ASSERT_TRUE(settle_until_stored(second));
  EXPECT_EQ(rcpt(first).attempts, 1u);
  EXPECT_EQ(rcpt(first).next_attempt_us, t0 + 1800 * sec);
  EXPECT_EQ(rcpt(second).attempts, 0u);
  EXPECT_EQ(rcpt(second).next_attempt_us, t0 + 1800 * sec);
  EXPECT_NE(rcpt(second).last_reply.find("suspended until"), std::string::npos);
  const auto report = sched_->report();
  ASSERT_EQ(report.size(), 1u);
  EXPECT_EQ(report[0].state, "suspended");
  EXPECT_EQ(report[0].until_us, t0 + 1800 * sec);
  EXPECT_NE(report[0].reason.find("4.7.28"), std::string::npos) << report[0].reason;
  // New mail waits too; another destination is not affected.
  const auto later = enqueue({"c@example.org"});
  ASSERT_TRUE(settle_until_stored(later));
  enqueue({"x@example.net"});
  ASSERT_EQ(port_.started.size(), 2u);
  EXPECT_EQ(started(1).key.name, "example.net");
  advance(1799s);
  EXPECT_EQ(port_.started.size(), 2u) << "no connection before the suspension ends";
  advance(1s);
  ASSERT_EQ(port_.started.size(), 3u);
  EXPECT_EQ(started(2).key.name, "example.org");
}

TEST_F(delivery_scheduler_test, refused_credentials_open_the_circuit_breaker_one_probe_at_a_time) {
  cfg_.delivery.relayhost = relay_host{"smtp.test", 587};
  start();
  std::vector<std::string> ids;
  for (int i = 0; i < 4; ++i) ids.push_back(enqueue({"r" + std::to_string(i) + "@d" + std::to_string(i) + ".example"}));
  ASSERT_EQ(port_.started.size(), 1u) << "one connection until one works";
  auto& d = started(0);
  recipient_outcome why{.what = outcome_kind::deferred, .code = 535, .status = "4.7.8",
                        .description = "host smtp.test[127.0.0.2] said: 535 5.7.8 bad credentials",
                        .cause = queue::outcome_cause::auth, .text = "bad credentials"};
  sched_->systemic_failure(d, why);
  --d.connecting;
  sched_->connection_done(d);
  for (const auto& id : ids) {
    ASSERT_TRUE(settle_until_stored(id));
    EXPECT_EQ(rcpt(id).attempts, id == ids[0] ? 1u : 0u) << "one attempt, not one per message";
    EXPECT_EQ(rcpt(id).next_attempt_us, t0 + 60 * sec) << "probed at the backoff interval";
    EXPECT_NE(rcpt(id).last_reply.find(id == ids[0] ? "535" : "circuit breaker"),
              std::string::npos) << rcpt(id).last_reply;
    EXPECT_EQ(rcpt(id).state, queue::rcpt_state::pending) << "nothing bounced";
  }
  enqueue({"late@d9.example"});
  EXPECT_EQ(port_.started.size(), 1u);
  auto report = sched_->report();
  ASSERT_EQ(report.size(), 1u);
  EXPECT_EQ(report[0].name, "smtp.test:587");
  EXPECT_EQ(report[0].state, "suspended");
  advance(60s);
  ASSERT_EQ(port_.started.size(), 2u) << "one probe, not one per message";
  auto& probe = started(1);
  --probe.connecting;
  sched_->connection_ready(probe);  // the password works again
  settle();
  EXPECT_EQ(port_.started.size(), 3u) << "then the usual concurrency";
  // relayctl suspend / resume by the relayhost's name.
  std::string error;
  EXPECT_EQ(sched_->suspend("[smtp.test]:587", 0, error), "smtp.test:587");  // as written
  EXPECT_EQ(sched_->report()[0].state, "held");
  EXPECT_EQ(sched_->resume("SMTP.test:587", error), "smtp.test:587");  // as shown
  EXPECT_EQ(sched_->resume("nowhere.example", error), "");
  EXPECT_NE(error.find("nowhere.example"), std::string::npos);
}

TEST_F(delivery_scheduler_test, dns_failing_attempt_after_attempt_opens_the_breaker_and_a_probe_closes_it) {
  auto events = start_with_events();
  ASSERT_TRUE(events);
  std::string error;
  std::vector<std::string> ids;
  for (int i = 0; i < 6; ++i) ids.push_back(enqueue({"r" + std::to_string(i) + "@example.org"}));
  const recipient_outcome servfail{.what = outcome_kind::deferred, .status = "4.4.3",
                                   .description = "example.org: SERVFAIL",
                                   .cause = queue::outcome_cause::dns, .text = "SERVFAIL"};
  // Three attempts in a row whose lookup fails, each after the backoff.
  for (std::size_t n = 1; n <= dns_breaker_after; ++n) {
    ASSERT_EQ(port_.started.size(), n) << "one lookup per attempt, not one per message";
    auto& d = started(n - 1);
    sched_->unreachable(d, servfail);  // as the agent: before it stops connecting
    --d.connecting;
    sched_->connection_done(d);
    for (const auto& id : ids) ASSERT_TRUE(settle_until_stored(id)) << "round " << n;
    const auto state = sched_->report().at(0).state;
    EXPECT_EQ(state, n < dns_breaker_after ? "backoff" : "suspended") << n;
    if (n < dns_breaker_after) advance(std::chrono::seconds(60 << n));
  }
  auto row = sched_->report().at(0);
  EXPECT_NE(row.reason.find("circuit breaker: the DNS lookup for example.org failed 3 times in a row"),
            std::string::npos) << row.reason;
  for (const auto& id : ids) EXPECT_EQ(rcpt(id).state, queue::rcpt_state::pending) << "nothing bounced";
  // New mail waits without a lookup; the probe comes at the backoff interval.
  enqueue({"late@example.org"});
  EXPECT_EQ(port_.started.size(), 3u);
  advance(60s);
  ASSERT_EQ(port_.started.size(), 4u) << "one probe";
  auto& probe = started(3);
  sched_->unreachable(probe, servfail);  // still broken: suspended again, longer
  --probe.connecting;
  sched_->connection_done(probe);
  settle();
  EXPECT_EQ(sched_->report().at(0).state, "suspended");
  advance(119s);
  EXPECT_EQ(port_.started.size(), 4u) << "the second backoff is twice as long";
  advance(1s);
  ASSERT_EQ(port_.started.size(), 5u);
  auto& works = started(4);
  --works.connecting;
  sched_->connection_ready(works);  // DNS answers again
  settle();
  EXPECT_NE(sched_->report().at(0).state, "suspended");
  // The events file: suspended once (the failed probe is no new state), resumed once.
  sched_.reset();
  events.reset();  // the writer thread writes what it holds
  std::ifstream in(cfg_.events.file);
  std::vector<std::string> lines;
  for (std::string l; std::getline(in, l);)
    if (l.find("\"type\":\"suspended\"") != std::string::npos ||
        l.find("\"type\":\"resumed\"") != std::string::npos)
      lines.push_back(l);
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_NE(lines[0].find("\"type\":\"suspended\""), std::string::npos) << lines[0];
  EXPECT_NE(lines[0].find("\"destination\":\"example.org\""), std::string::npos) << lines[0];
  EXPECT_NE(lines[0].find("DNS lookup"), std::string::npos) << lines[0];
  EXPECT_NE(lines[1].find("\"type\":\"resumed\""), std::string::npos) << lines[1];
}

TEST_F(delivery_scheduler_test, a_tls_policy_failure_on_every_mx_suspends_until_relayctl_resume_tells_it) {
  auto events = start_with_events();
  ASSERT_TRUE(events);
  std::string error;
  const auto a = enqueue({"a@sts.example"});
  const auto b = enqueue({"b@sts.example"});
  auto& d = started(0);
  recipient_outcome why{.what = outcome_kind::deferred, .status = "4.7.5",
                        .description = "TLS handshake with mx.sts.example[127.0.0.2]:25 failed: "
                                       "certificate verification failed; MTA-STS policy requires TLS",
                        .cause = queue::outcome_cause::tls};
  sched_->systemic_failure(d, why, suspend_cause::tls_policy);
  --d.connecting;
  sched_->connection_done(d);
  ASSERT_TRUE(settle_until_stored(a));
  ASSERT_TRUE(settle_until_stored(b));
  EXPECT_EQ(rcpt(a).attempts + rcpt(b).attempts, 1u) << "one attempt for both";
  auto row = sched_->report().at(0);
  EXPECT_EQ(row.state, "suspended");
  EXPECT_NE(row.reason.find("every MX host of sts.example failed its TLS policy"), std::string::npos)
      << row.reason;
  sched_->suspend("sts.example", 0, error);  // already suspended: no second event
  EXPECT_EQ(sched_->resume("sts.example", error), "sts.example");
  sched_->resume("sts.example", error);  // resumed already: no second event
  sched_.reset();
  events.reset();
  std::ifstream in(cfg_.events.file);
  std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto count = [&](const std::string& what) {
    std::size_t n = 0;
    for (auto p = all.find(what); p != std::string::npos; p = all.find(what, p + 1)) ++n;
    return n;
  };
  EXPECT_EQ(count("\"type\":\"suspended\""), 1u) << all;
  EXPECT_EQ(count("\"type\":\"resumed\""), 1u) << all;
  EXPECT_NE(all.find("resumed by relayctl"), std::string::npos) << all;
}

TEST_F(delivery_scheduler_test, domains_whose_mx_share_a_suffix_share_the_rate) {
  cfg_.delivery.concurrency_per_destination = 1;
  cfg_.destinations = {{.match = "mx:*.shared.test", .max_rate = "60/m"}};
  start();
  std::vector<std::string> a;
  for (int i = 0; i < 3; ++i) a.push_back(enqueue({"r" + std::to_string(i) + "@a.example"}));
  ASSERT_EQ(port_.started.size(), 1u);
  auto& da = started(0);
  --da.connecting;
  // The first connection learns the MX: the jobs that waited are shaped.
  sched_->learned_mx(da, "mx1.shared.test");
  sched_->connection_ready(da);
  ASSERT_TRUE(settle_until_stored(a[1]));
  ASSERT_TRUE(settle_until_stored(a[2]));
  EXPECT_EQ(rcpt(a[1]).next_attempt_us, t0 + 1 * sec);
  EXPECT_EQ(rcpt(a[2]).next_attempt_us, t0 + 2 * sec);
  // b.example is hosted there too: its mail takes the next slots of the same bucket.
  const auto b1 = enqueue({"x@b.example"});
  ASSERT_EQ(port_.started.size(), 2u);
  auto& db = started(1);
  --db.connecting;
  sched_->learned_mx(db, "mx2.shared.test");
  ASSERT_TRUE(settle_until_stored(b1));
  EXPECT_EQ(rcpt(b1).next_attempt_us, t0 + 3 * sec);
  const auto b2 = enqueue({"y@b.example"});
  ASSERT_TRUE(settle_until_stored(b2));
  EXPECT_EQ(rcpt(b2).next_attempt_us, t0 + 4 * sec);
  EXPECT_EQ(sched_->group_name_of({"b.example", 0}), "mx:*.shared.test");
}

}  // namespace
}  // namespace relayd

// ---- DSN requests (RFC 3461): NOTIFY decides who is told, RET what comes back ----

namespace relayd {
namespace {

recipient_outcome rejected_550(std::size_t index) {
  return {.index = index, .what = outcome_kind::failed, .code = 550, .status = "5.1.1",
          .description = "host mx[127.0.0.2] said: 550 5.1.1 no such user",
          .remote_host = "mx[127.0.0.2]:25", .reason = "rejected"};
}
recipient_outcome delivered_to_dsn_hop(std::size_t index) {
  auto o = delivered(index);
  o.next_hop_dsn = true;
  return o;
}

class delivery_scheduler_dsn_test : public delivery_scheduler_test {
 protected:
  // A message whose recipients carry these NOTIFY bits (and ORCPT "rfc822;o<N>@src.test").
  std::string enqueue_notify(std::vector<std::pair<std::string, std::uint8_t>> rcpts,
                             smtp::dsn_ret ret = smtp::dsn_ret::unspecified,
                             std::string envid = "") {
    queue::envelope_record r;
    r.id = spool_->new_id();
    r.arrival_us = now_;
    r.sender = "app@src.test";
    r.ret = ret;
    r.envid = std::move(envid);
    for (std::size_t i = 0; i < rcpts.size(); ++i)
      r.recipients.push_back({.address = rcpts[i].first,
                              .notify = rcpts[i].second,
                              .orcpt = "rfc822;o" + std::to_string(i) + "@src.test"});
    const std::string body = "Subject: test\r\n\r\nhello body\r\n";
    r.size = body.size();
    std::promise<queue::result> done;
    spool_->enqueue(r, body, [&](queue::result res) { done.set_value(std::move(res)); });
    EXPECT_EQ(done.get_future().get().code, queue::status::ok);
    sched_->notify_enqueued(0);
    settle();
    return r.id;
  }
  std::string notice_body(std::size_t n = 0) {
    auto notices = notices_to("app@src.test");
    if (notices.size() <= n) return "<no notice>";
    return spool_->body(notices[n].id).value_or("<no body>");
  }
};

TEST_F(delivery_scheduler_dsn_test, notify_never_sends_no_failure_notice_but_the_dead_spool_keeps_it) {
  start();
  const auto id = enqueue_notify({{"a@example.org", smtp::notify_never}});
  serve(started(0), rejected_550);
  ASSERT_TRUE(settle_until_stored(id));
  EXPECT_TRUE(notices_to("app@src.test").empty());
  auto dead = spool_->get_dead(id);
  ASSERT_TRUE(dead);
  EXPECT_EQ(dead->recipients[0].reason, "rejected");
  EXPECT_EQ(dead->recipients[0].notify, smtp::notify_never);
}

TEST_F(delivery_scheduler_dsn_test, a_failure_notice_names_only_the_recipients_that_want_one) {
  start();
  const auto id = enqueue_notify({{"never@example.org", smtp::notify_never},
                                  {"default@example.org", 0},
                                  {"success@example.org", smtp::notify_success},
                                  {"failure@example.org", smtp::notify_failure}});
  serve(started(0), rejected_550);
  ASSERT_TRUE(settle_until_stored(id));
  ASSERT_EQ(notices_to("app@src.test").size(), 1u);
  const std::string body = notice_body();
  EXPECT_NE(body.find("Final-Recipient: rfc822; default@example.org"), std::string::npos);
  EXPECT_NE(body.find("Final-Recipient: rfc822; failure@example.org"), std::string::npos);
  EXPECT_EQ(body.find("never@example.org"), std::string::npos);
  EXPECT_EQ(body.find("success@example.org"), std::string::npos);
  // All four are in the dead spool.
  auto dead = spool_->get_dead(id);
  ASSERT_TRUE(dead);
  EXPECT_EQ(dead->recipients.size(), 4u);
}

TEST_F(delivery_scheduler_dsn_test, no_delay_notice_without_delay_in_notify) {
  start();
  const auto id = enqueue_notify({{"a@example.org", smtp::notify_failure},
                                  {"b@example.org", smtp::notify_never}});
  serve(started(0), deferred_451);
  ASSERT_TRUE(settle_until_stored(id));
  advance(5h);  // past delay_warning
  serve(last_started_to("example.org"), deferred_451);
  ASSERT_TRUE(settle_until_stored(id));
  EXPECT_TRUE(notices_to("app@src.test").empty());
  EXPECT_FALSE(spool_->get(id)->flags & queue::flag_delay_warned);
}

TEST_F(delivery_scheduler_dsn_test, notify_delay_gets_the_delay_notice) {
  start();
  const auto id = enqueue_notify({{"a@example.org", smtp::notify_delay},
                                  {"b@example.org", smtp::notify_failure}});
  serve(started(0), deferred_451);
  ASSERT_TRUE(settle_until_stored(id));
  advance(5h);
  serve(last_started_to("example.org"), deferred_451);
  ASSERT_TRUE(settle_until_stored(id));
  ASSERT_EQ(notices_to("app@src.test").size(), 1u);
  const std::string body = notice_body();
  EXPECT_NE(body.find("Action: delayed"), std::string::npos);
  EXPECT_NE(body.find("a@example.org"), std::string::npos);
  EXPECT_EQ(body.find("b@example.org"), std::string::npos);
}

TEST_F(delivery_scheduler_dsn_test, notify_success_to_a_next_hop_without_dsn_sends_relayed) {
  start();
  const auto id = enqueue_notify({{"a@example.org", smtp::notify_success | smtp::notify_failure},
                                  {"b@example.org", 0}},
                                 smtp::dsn_ret::unspecified, "ENV 42");
  serve(started(0), delivered);
  ASSERT_TRUE(settle_until_stored(id));
  EXPECT_FALSE(spool_->get(id));  // delivered: removed
  ASSERT_EQ(notices_to("app@src.test").size(), 1u);
  const std::string body = notice_body();
  EXPECT_NE(body.find("Subject: Relayed Mail Delivery Report"), std::string::npos);
  EXPECT_NE(body.find("Original-Envelope-Id: ENV 42"), std::string::npos);
  EXPECT_NE(body.find("Original-Recipient: rfc822; o0@src.test\r\n"
                      "Final-Recipient: rfc822; a@example.org\r\n"
                      "Action: relayed\r\n"
                      "Status: 2.0.0"),
            std::string::npos)
      << body;
  EXPECT_EQ(body.find("b@example.org"), std::string::npos);  // no NOTIFY: no success notice
}

TEST_F(delivery_scheduler_dsn_test, notify_success_to_a_dsn_next_hop_leaves_the_notice_to_it) {
  start();
  const auto id = enqueue_notify({{"a@example.org", smtp::notify_success}});
  serve(started(0), delivered_to_dsn_hop);
  ASSERT_TRUE(settle_until_stored(id));
  EXPECT_FALSE(spool_->get(id));
  EXPECT_TRUE(notices_to("app@src.test").empty());
}

TEST_F(delivery_scheduler_dsn_test, ret_decides_how_much_of_the_message_comes_back) {
  start();
  const auto full = enqueue_notify({{"a@example.org", 0}}, smtp::dsn_ret::full);
  const auto hdrs = enqueue_notify({{"b@example.org", 0}}, smtp::dsn_ret::headers);
  const auto none = enqueue_notify({{"c@example.org", 0}});
  serve(started(0), rejected_550);
  for (const auto& id : {full, hdrs, none}) ASSERT_TRUE(settle_until_stored(id));
  const auto notices = notices_to("app@src.test");
  ASSERT_EQ(notices.size(), 3u);
  int with_body = 0, headers_only = 0;
  for (const auto& n : notices) {
    const std::string body = spool_->body(n.id).value_or("");
    const bool is_full = body.find("a@example.org") != std::string::npos;
    if (is_full) {
      EXPECT_NE(body.find("Content-Type: message/rfc822"), std::string::npos);
      EXPECT_NE(body.find("hello body"), std::string::npos);
      ++with_body;
    } else {
      // RET=HDRS, and RET absent (relayd's default): the header block only.
      EXPECT_NE(body.find("Content-Type: text/rfc822-headers"), std::string::npos);
      EXPECT_EQ(body.find("hello body"), std::string::npos);
      ++headers_only;
    }
  }
  EXPECT_EQ(with_body, 1);
  EXPECT_EQ(headers_only, 2);
}

}  // namespace
}  // namespace relayd
