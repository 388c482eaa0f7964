// Implements events_log.hpp. The file writer is one thread with a bounded
// queue of lines; the webhook sender is one coroutine on the I/O thread that
// owns its state through a shared pointer (a frame left after io.run() is
// destroyed, never resumed), reads the outbox with short read transactions and
// deletes what the webhook took through the spool's writer.
#include "relayd/events_log.hpp"

#include <fcntl.h>
#include <pthread.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <optional>
#include <thread>

#include "queue/clock.hpp"
#include "queue/spool.hpp"
#include "relayd/async_call.hpp"
#include "relayd/config.hpp"
#include "relayd/events_report_log.hpp"
#include "relayd/http_client.hpp"
#include "relayd/metrics.hpp"
#include "relayd/net.hpp"

namespace relayd {
namespace {

constexpr std::size_t max_file_queue = 65536;  // lines waiting for the writer thread
constexpr std::size_t batch_events = 100;
constexpr auto first_retry = std::chrono::seconds(1);
constexpr auto max_retry = std::chrono::seconds(60);
constexpr auto idle_look = std::chrono::seconds(30);  // the outbox is looked at this often anyway

}  // namespace

struct event_log::state {
  state(asio::io_context& io_, const config& cfg_, queue::spool& spool_, metrics* m)
      : io(io_), cfg(cfg_), spool(spool_), stats(m), timer(io_) {}

  asio::io_context& io;
  const config& cfg;
  queue::spool& spool;
  metrics* stats;
  std::unique_ptr<report_log> report;  // [events] report_days; null when off or failed to start

  // ---- the file (writer thread) ----
  std::mutex mu;  // guards the four below
  std::condition_variable cv;
  std::deque<std::string> lines;
  bool reopen_wanted = false;
  bool stopping = false;
  std::thread writer;
  int fd = -1;  // writer thread only (after start())
  std::atomic<std::int64_t> last_complaint{-(1ll << 62)};  // steady clock, seconds

  // ---- the webhook (I/O thread) ----
  std::optional<http_client> client;
  asio::steady_timer timer;
  bool sender_stopping = false;
  bool waiting_idle = false;  // the timer is the idle wait (a wake-up may cut it short)

  void write_loop();
  void complain(const std::string& what);
  static awaitable<void> send_loop(std::shared_ptr<state> s);
};

void event_log::state::complain(const std::string& what) {
  const std::int64_t now = std::chrono::duration_cast<std::chrono::seconds>(
                              std::chrono::steady_clock::now().time_since_epoch()).count();
  std::int64_t last = last_complaint.load();
  if (now - last < 60 || !last_complaint.compare_exchange_strong(last, now)) return;
  spdlog::error("events.file {}: {} (lines are dropped; the webhook outbox keeps every event)",
                cfg.events.file, what);
}

void event_log::state::write_loop() {
  std::unique_lock lk(mu);
  for (;;) {
    cv.wait(lk, [&] { return stopping || reopen_wanted || !lines.empty(); });
    if (reopen_wanted) {
      reopen_wanted = false;
      const int nfd = ::open(cfg.events.file.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
      if (nfd < 0) {
        complain(std::string("cannot open again: ") + std::strerror(errno) + " (still writing to the old file)");
      } else {
        ::close(fd);
        fd = nfd;
      }
    }
    if (lines.empty()) {
      if (stopping) return;
      continue;
    }
    // Everything waiting, in one write() where possible.
    std::string chunk;
    std::size_t n = 0;
    while (!lines.empty() && chunk.size() < (1u << 20)) {
      chunk += lines.front();
      chunk += '\n';
      lines.pop_front();
      ++n;
    }
    lk.unlock();
    std::string_view rest = chunk;
    while (!rest.empty()) {
      const ssize_t w = ::write(fd, rest.data(), rest.size());
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) {
        if (stats) stats->events_dropped(n);
        complain(std::string("cannot write: ") + std::strerror(errno));
        break;
      }
      rest.remove_prefix(static_cast<std::size_t>(w));
    }
    lk.lock();
  }
}

awaitable<void> event_log::state::send_loop(std::shared_ptr<state> s) {
  auto retry = first_retry;
  bool failing = false;
  while (!s->sender_stopping) {
    auto batch = s->spool.outbox(batch_events);
    if (s->stats) s->stats->set_events_outbox(s->spool.outbox_count());
    if (batch.empty()) {
      s->waiting_idle = true;
      s->timer.expires_after(idle_look);
      co_await s->timer.async_wait(use_tuple);
      s->waiting_idle = false;
      continue;
    }
    http_post_request req;
    req.content_type = "application/json";
    req.step_timeout = std::chrono::seconds(10);
    req.body = "[";
    for (std::size_t i = 0; i < batch.size(); ++i) {
      if (i != 0) req.body += ",";
      req.body += batch[i].text;
    }
    req.body += "]";
    std::string problem;
    try {
      auto answer = co_await s->client->post(s->io, std::move(req));
      if (!answer)
        problem = answer.error();
      else if (answer->status < 200 || answer->status > 299)
        problem = "HTTP " + std::to_string(answer->status);
    } catch (const std::exception& e) {
      problem = e.what();
    }
    if (s->sender_stopping) co_return;
    if (problem.empty()) {
      if (s->stats) s->stats->webhook_post(true);
      const std::uint64_t upto = batch.back().seq;
      auto [r, n] = co_await from_callback<void(queue::result, std::size_t)>(
          [&](auto done) { s->spool.ack_outbox(upto, std::move(done)); });
      if (r.code != queue::status::ok)
        spdlog::error("events.webhook: cannot delete {} posted events from the outbox: {} (they "
                      "will be posted again)", batch.size(), r.detail);
      if (failing) spdlog::info("events.webhook {}: posting again", s->client->label());
      failing = false;
      retry = first_retry;
      continue;
    }
    if (s->stats) s->stats->webhook_post(false);
    if (!failing)
      spdlog::warn("events.webhook {}: {}; {} events wait in the outbox, retrying", s->client->label(),
                   problem, s->spool.outbox_count());
    failing = true;
    s->timer.expires_after(retry);
    co_await s->timer.async_wait(use_tuple);
    retry = std::min<std::chrono::seconds>(retry * 2, max_retry);
  }
}

event_log::event_log(asio::io_context& io, const config& cfg, queue::spool& spool, metrics* m)
    : s_(std::make_shared<state>(io, cfg, spool, m)) {
  if (cfg.events.report_days != 0)
    s_->report = std::make_unique<report_log>(report_dir(cfg.spool), cfg.events.report_days);
}

event_log::~event_log() {
  {
    std::lock_guard lk(s_->mu);
    s_->stopping = true;
  }
  s_->cv.notify_all();
  if (s_->writer.joinable()) s_->writer.join();
  if (s_->fd >= 0) ::close(s_->fd);
}

bool event_log::enabled() const { return exported() || s_->report; }

bool event_log::exported() const {
  return !s_->cfg.events.file.empty() || !s_->cfg.events.webhook.empty();
}

bool event_log::start(std::string& error) {
  const auto& ev = s_->cfg.events;
  // The report's record is statistics: without it relayd runs on, and says so.
  if (std::string why; s_->report && !s_->report->start(why)) {
    spdlog::warn("{} (relayctl report will have nothing to count)", why);
    s_->report.reset();
  }
  if (!ev.file.empty()) {
    s_->fd = ::open(ev.file.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (s_->fd < 0) {
      error = "events.file: " + ev.file + ": " + std::strerror(errno);
      return false;
    }
    s_->writer = std::thread([s = s_.get()] {
      ::pthread_setname_np(::pthread_self(), "events-file");  // for top -H, ps -L, perf
      s->write_loop();
    });
  }
  if (!ev.webhook.empty()) {
    auto url = parse_http_url(ev.webhook, true);
    if (!url) {  // the config check refuses it first
      error = "events.webhook: cannot parse " + ev.webhook;
      return false;
    }
    s_->client.emplace(*url);
    asio::co_spawn(s_->io, state::send_loop(s_), [](std::exception_ptr e) {
      if (!e) return;
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& ex) {
        spdlog::critical("events.webhook sender stopped: {}", ex.what());
      }
    });
    spdlog::info("events: posting to {} ({} events in the outbox)", ev.webhook,
                 s_->spool.outbox_count());
  }
  return true;
}

void event_log::stop() {
  s_->sender_stopping = true;
  s_->timer.cancel();
}

void event_log::reopen() {
  if (s_->cfg.events.file.empty()) return;
  {
    std::lock_guard lk(s_->mu);
    s_->reopen_wanted = true;
  }
  s_->cv.notify_all();
}

event_batch event_log::batch(std::vector<event> events) const {
  event_batch b;
  if (exported()) {
    b.lines.reserve(events.size());
    const auto now = queue::wall_clock_us();
    for (auto& e : events) {
      e.event_id = s_->spool.new_id();
      if (e.time_us == 0) e.time_us = now;
      b.lines.push_back(to_json(e));
    }
  }
  if (s_->report) b.for_report = std::move(events);
  return b;
}

event_batch event_log::received(const queue::envelope_record& r, std::string_view message,
                                std::string_view sasl, std::string submitter) const {
  if (!enabled()) return {};
  event e;
  e.type = event_type::received;
  e.time_us = r.arrival_us;
  e.queue_id = r.id;
  // The Message-ID only for events that leave relayd (the report does not count it).
  if (exported()) e.message_id = message_id_of(message);
  e.sender = r.sender;
  e.submitter = submitter.empty() ? submitter_of(r, sasl) : std::move(submitter);
  std::vector<event> one;
  one.push_back(std::move(e));
  return batch(std::move(one));
}

void event_log::destination_event(event_type type, std::string destination, std::string reason) {
  if (!enabled()) return;
  event e;
  e.type = type;
  e.destination = std::move(destination);
  e.reply = std::move(reason);
  e.submitter = "relayd";
  std::vector<event> one;
  one.push_back(std::move(e));
  event_batch b = batch(std::move(one));
  if (s_->cfg.events.webhook.empty()) {
    committed(std::move(b));
    return;
  }
  // Told once stored; posted back to the I/O thread (the spool's `done` runs
  // on its writer). `s_` keeps the state alive; a post after io.run() is dropped.
  auto lines = b.lines;
  s_->spool.append_outbox(lines, [s = s_, b = std::move(b)](queue::result r, std::size_t) mutable {
    asio::post(s->io, [s, b = std::move(b), r = std::move(r)]() mutable {
      if (r.code != queue::status::ok)
        spdlog::error("events: cannot store a destination event in the outbox: {}", r.detail);
      event_log::write_file(*s, std::move(b));
      if (s->client && s->waiting_idle) s->timer.cancel();
    });
  });
}

std::vector<std::string> event_log::outbox_lines(const event_batch& b) const {
  if (s_->cfg.events.webhook.empty()) return {};
  return b.lines;
}

void event_log::committed(event_batch b) {
  if (b.empty()) return;
  write_file(*s_, std::move(b));
  if (s_->client && s_->waiting_idle) s_->timer.cancel();
}

void event_log::flush_report(std::function<void()> done) {
  if (!s_->report) return done();
  s_->report->flush(std::move(done));
}

void event_log::write_file(state& s, event_batch b) {
  if (s.report && !b.for_report.empty()) s.report->add(std::move(b.for_report));
  if (s.cfg.events.file.empty() || b.lines.empty()) return;
  std::size_t dropped = 0;
  {
    std::lock_guard lk(s.mu);
    for (auto& l : b.lines) {
      if (s.lines.size() >= max_file_queue) {
        ++dropped;
        continue;
      }
      s.lines.push_back(std::move(l));
    }
    if (dropped != 0) s.complain("the writer is behind (" + std::to_string(max_file_queue) + " lines waiting)");
  }
  s.cv.notify_one();
  if (dropped != 0 && s.stats) s.stats->events_dropped(dropped);
}

}  // namespace relayd
