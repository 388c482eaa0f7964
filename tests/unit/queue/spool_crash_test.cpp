// kill -9 loses no acknowledged message: a forked child enqueues from several
// threads and writes each ID to a pipe once its `done` reports ok (the moment the
// daemon would answer 250). The parent SIGKILLs it mid-stream, reopens the spool
// and finds every reported ID with its body intact.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <future>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "queue/spool.hpp"
#include "tests/unit/queue/spool_test_util.hpp"

namespace {

using namespace queue_test;

std::size_t body_size_for(const std::string& id) {
  return 512 + mix(std::hash<std::string>{}(id)) % 8192;
}

[[noreturn]] void child(const queue::spool_options& o, int out) {
  auto opened = queue::spool::open(o);
  if (!opened) ::_exit(2);
  queue::spool& s = **opened;
  for (int t = 0; t < 8; ++t) {
    std::thread([&s, out, t] {
      for (int i = 0;; ++i) {
        auto r = make_record(s, 0, t * 1000000 + i);
        r.size = body_size_for(r.id);
        std::string body = make_body(r.id, r.size);
        const std::string line = r.id + "\n";
        auto p = std::make_shared<std::promise<void>>();
        auto f = p->get_future();
        s.enqueue(std::move(r), std::move(body), [p, out, line](queue::result res) {
          if (res.code == queue::status::ok) {
            // One line per write (< PIPE_BUF): atomic, never interleaved.
            if (::write(out, line.data(), line.size()) < 0) ::_exit(3);
          }
          p->set_value();
        });
        f.wait();
      }
    }).detach();
  }
  for (;;) ::pause();
}

TEST(spool_crash, kill_9_loses_no_acknowledged_message) {
  temp_dir d;
  const auto o = options_in(d);
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::close(fds[0]);
    child(o, fds[1]);
  }
  ::close(fds[1]);

  std::string buf;
  std::set<std::string> acked;
  auto absorb = [&](bool block) {
    pollfd p{fds[0], POLLIN, 0};
    if (::poll(&p, 1, block ? 1000 : 0) <= 0) return false;
    char chunk[4096];
    const ssize_t n = ::read(fds[0], chunk, sizeof chunk);
    if (n <= 0) return false;
    buf.append(chunk, static_cast<std::size_t>(n));
    for (std::size_t nl; (nl = buf.find('\n')) != std::string::npos; buf.erase(0, nl + 1)) {
      acked.insert(buf.substr(0, nl));
    }
    return true;
  };
  // Let it run until a good number of messages are acknowledged, then kill it
  // in the middle of whatever it is doing.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (acked.size() < 1500 && std::chrono::steady_clock::now() < deadline) absorb(true);
  // ... at a moment unrelated to the last acknowledgement we read.
  std::this_thread::sleep_for(std::chrono::microseconds(std::random_device{}() % 5000));
  ASSERT_EQ(::kill(pid, SIGKILL), 0);
  int wstatus = 0;
  ASSERT_EQ(::waitpid(pid, &wstatus, 0), pid);
  EXPECT_TRUE(WIFSIGNALED(wstatus) && WTERMSIG(wstatus) == SIGKILL) << "child exited early";
  while (absorb(false)) {
  }
  ::close(fds[0]);
  ASSERT_GT(acked.size(), 100u);
  EXPECT_TRUE(buf.empty());

  auto s = open_or_fail(o);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->report().quarantined, 0u);
  EXPECT_GE(s->report().messages, acked.size());
  for (const std::string& id : acked) {
    auto r = s->get(id);
    ASSERT_TRUE(r) << "acknowledged " << id << " is missing";
    auto b = s->body(id);
    ASSERT_TRUE(b) << id;
    EXPECT_EQ(b->size(), body_size_for(id));
    EXPECT_TRUE(*b == make_body(id, body_size_for(id))) << id;
  }
  std::printf("[ crash    ] %zu acknowledged before kill -9, %llu in the spool after restart\n",
              acked.size(), static_cast<unsigned long long>(s->report().messages));
  // New IDs are still above everything the killed process handed out.
  EXPECT_GT(s->new_id(), *acked.rbegin());
}

}  // namespace
