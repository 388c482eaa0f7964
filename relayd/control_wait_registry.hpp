// What `sendmail --wait` (the control socket's "wait" command) needs to know
// about delivery outcomes, fed by the scheduler's outcome observer: the
// recipients of messages whose results were stored recently (merged over the
// jobs of one message, since each destination is a separate job), the final
// ones kept in a bounded cache so a wait that starts after the delivery still
// gets its answer, and the waiters to wake when a message becomes final.
// I/O thread only. Memory is bounded (max_tracked + max_finished messages, the
// oldest forgotten first); a forgotten message is simply "unknown" to a wait.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "queue/spool.hpp"

namespace relayd {

class wait_registry {
 public:
  explicit wait_registry(std::size_t max_tracked = 10000, std::size_t max_finished = 1000);

  // The scheduler stored the results of one job of `snapshot` (the message as
  // dispatched): `updates` are the new states, `c` what became of the message.
  void record(const queue::envelope_record& snapshot,
              std::span<const queue::spool::recipient_update> updates,
              queue::spool::completion c);

  // The recipients of a message that became final (every one delivered or
  // failed) and is still remembered; nullptr otherwise.
  const std::vector<queue::recipient>* finished(const std::string& id) const;

  // `wake` runs (on the I/O thread, from record() or stop()) when `id` becomes
  // final. The token is for unwatch(), which must come before `wake` dies.
  std::uint64_t watch(const std::string& id, std::function<void()> wake);
  void unwatch(std::uint64_t token);
  std::size_t waiters() const { return waiters_.size(); }

  // The daemon stops: every waiter is woken and stopping() is true.
  void stop();
  bool stopping() const { return stopping_; }

 private:
  // Messages by ID, the oldest insertion forgotten first past `max`. An entry
  // erased early leaves its (id, seq) in `order`, where eviction skips it.
  struct bounded_map {
    struct entry {
      std::vector<queue::recipient> recipients;
      std::uint64_t seq;
    };
    std::unordered_map<std::string, entry> map;
    std::deque<std::pair<std::string, std::uint64_t>> order;
    std::size_t max;
    std::uint64_t next_seq = 0;
    void put(const std::string& id, std::vector<queue::recipient> value);
  };

  bounded_map tracked_, finished_;
  struct waiter {
    std::string id;
    std::function<void()> wake;
  };
  std::map<std::uint64_t, waiter> waiters_;
  std::uint64_t next_token_ = 1;
  bool stopping_ = false;
};

}  // namespace relayd
