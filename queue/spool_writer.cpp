// The spool's writer thread: takes queued operations (up to a bound), has them
// applied, and answers them only once their commit is on disk. This is where
// the MDB_NOMETASYNC durability rule is enforced (see run()). A `done` that
// throws is ignored; a failed flush turns the waiting answers into errors.
#include "queue/clock.hpp"
#include "queue/spool_core.hpp"

namespace queue::detail {

// Group-committable operations go in one transaction; a bulk operation between
// them does one chunk, in order. Each operation ends up in `settled` (run()
// answers it once its commit is on disk), unless a bulk operation has more to
// do: then it goes back to the end of the line, behind what came meanwhile.
void spool_core::process(std::vector<operation>& batch, std::vector<operation>& settled) {
  std::size_t i = 0;
  while (i < batch.size()) {
    std::size_t j = i;
    while (j < batch.size() && !is_bulk(batch[j])) ++j;
    if (j > i) {
      apply_group(std::span<operation>(batch).subspan(i, j - i));
      for (std::size_t k = i; k < j; ++k) settled.push_back(std::move(batch[k]));
      i = j;
      continue;
    }
    const bool finished = std::visit(
        [this](auto& op) {
          using T = std::decay_t<decltype(op)>;
          if constexpr (std::is_same_v<T, dead_bulk_op>) {
            return dead_step(op);
          } else if constexpr (std::is_same_v<T, bulk_op>) {
            return bulk_step(op);
          } else {
            return true;  // not reached: is_bulk()
          }
        },
        batch[i]);
    if (finished) {
      settled.push_back(std::move(batch[i]));
    } else {
      requeue(std::move(batch[i]));
    }
    ++i;
  }
}

// A bulk operation that has more to do waits behind what came meanwhile.
void spool_core::requeue(operation op) {
  std::lock_guard lk(mu_);
  if (!is_lazy(op)) ++durable_pending_;
  pending_.push_back(std::move(op));
}

void spool_core::finish(operation& o) {
  try {
    std::visit(
        [](auto& op) {
          using T = std::decay_t<decltype(op)>;
          if (!op.done) return;
          if constexpr (std::is_same_v<T, enqueue_op> || std::is_same_v<T, mta_sts_op>) {
            op.done(std::move(op.res));
          } else if constexpr (std::is_same_v<T, update_op>) {
            op.done(std::move(op.res), op.became);
          } else {
            op.done(std::move(op.res), op.count);
          }
        },
        o);
  } catch (...) {
    // A completion handler must not take the writer down.
  }
}

// The txnid of the last committed transaction (0 with no environment).
std::uint64_t spool_core::last_txnid() const {
  return env_ ? env_.info().me_last_txnid : 0;
}

// Flushes the data file (the meta pages the last commits wrote) and runs the
// waiting operations' `done`. Should the flush fail, what they changed may not
// be on disk: they report an error (an enqueue's client hears 451 and sends
// again; the copy it may leave is delivered too, never lost).
void spool_core::flush_unsynced() {
  if (unsynced_.empty()) return;
  std::error_code ec;
  if (!env_) ec = reopen();
  if (!ec) ec = env_.sync(true);
  for (auto& o : unsynced_) {
    if (ec && result_of(o).code == status::ok)
      set_result(o, {status::error, "cannot flush the spool to disk: " + ec.message()});
    finish(o);
  }
  unsynced_.clear();
}

// Durability without a second flush per commit: with MDB_NOMETASYNC each commit
// flushes its data pages, then writes its meta page unflushed. The operations
// of a turn are answered once the meta page of their last commit is on disk:
// either a later commit wrote (its data flush carries that meta page along), or,
// when no work is waiting, after an explicit flush. Under load that is one flush
// per commit instead of two; alone, an operation costs the same two flushes.
//
// Lazy operations (is_lazy(): a delivery's results) are answered right after
// their commit. Alone in the queue they wait up to lazy_window for durable work
// (an enqueue) to share its commit; after the last of them, an idle writer
// flushes within lazy_flush_after, so a power cut undoes at most that much.
void spool_core::run() {
  std::vector<operation> batch;
  for (;;) {
    {
      std::unique_lock lk(mu_);
      if (pending_.empty() && !unsynced_.empty()) {
        lk.unlock();
        flush_unsynced();
        lazy_unflushed_ = false;
        lk.lock();
      }
      if (lazy_unflushed_ && pending_.empty() &&
          !cv_.wait_for(lk, lazy_flush_after, [&] { return stopping_ || !pending_.empty(); })) {
        lk.unlock();
        if (env_) (void)env_.sync(true);  // best effort: nobody waits on it
        lazy_unflushed_ = false;
        continue;
      }
      cv_.wait(lk, [&] { return stopping_ || !pending_.empty(); });
      if (pending_.empty()) {
        if (lazy_unflushed_ && env_) (void)env_.sync(true);
        return;
      }
      // Answers waiting for a flush (unsynced_) do not wait for lazy work: its
      // commit is the flush they need.
      if (durable_pending_ == 0 && unsynced_.empty())
        cv_.wait_for(lk, opt_.lazy_window, [&] {
          return stopping_ || durable_pending_ > 0 || pending_.size() >= max_batch_ops;
        });
      std::size_t bytes = 0;
      while (!pending_.empty() && batch.size() < max_batch_ops) {
        const std::size_t b = op_bytes(pending_.front());
        if (!batch.empty() && bytes + b > max_batch_bytes) break;
        bytes += b;
        if (!is_lazy(pending_.front())) --durable_pending_;
        batch.push_back(std::move(pending_.front()));
        pending_.pop_front();
      }
    }
    const std::uint64_t before = last_txnid();
    const std::size_t taken = batch.size();
    std::vector<operation> settled;
    settled.reserve(taken);
    process(batch, settled);
    if (last_txnid() != before) {
      // This turn committed: its data flush came after every meta page the
      // earlier turns wrote.
      for (auto& o : unsynced_) finish(o);
      unsynced_.clear();
      lazy_unflushed_ = false;
    }
    for (auto& o : settled) {
      if (is_lazy(o)) {
        finish(o);
        lazy_unflushed_ = true;
      } else {
        unsynced_.push_back(std::move(o));
      }
    }
    ++batches_;
    operations_ += taken;
    batch.clear();
  }
}

void spool_core::stop() {
  {
    std::lock_guard lk(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (writer_.joinable()) writer_.join();
}

void spool_core::submit(operation op) {
  bool queued = false, wake = false;
  {
    std::lock_guard lk(mu_);
    if (!stopping_) {
      // Lazy work wakes the writer only to start its wait (see run()).
      wake = !is_lazy(op) || pending_.empty();
      if (!is_lazy(op)) ++durable_pending_;
      pending_.push_back(std::move(op));
      queued = true;
    }
  }
  if (queued) {
    if (wake) cv_.notify_one();
    return;
  }
  set_result(op, {status::error, "spool is closing"});
  finish(op);
}

std::string spool_core::new_id() {
  const std::uint64_t now = static_cast<std::uint64_t>(wall_clock_us()) << 4;
  std::uint64_t last = last_id_.load(std::memory_order_relaxed);
  for (;;) {
    const std::uint64_t next = std::max(last + 1, now);
    if (last_id_.compare_exchange_weak(last, next, std::memory_order_relaxed)) {
      return format_id(next);
    }
  }
}

// An enqueue may carry an ID this spool did not hand out: never issue it later.
void spool_core::note_id(std::uint64_t id) {
  std::uint64_t last = last_id_.load(std::memory_order_relaxed);
  while (last < id && !last_id_.compare_exchange_weak(last, id, std::memory_order_relaxed)) {
  }
}

}  // namespace queue::detail
