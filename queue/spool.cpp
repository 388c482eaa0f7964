// The spool's public face (spool.hpp, spool_diag.hpp, spool_testing.hpp): turns
// each call into an operation for the writer or a read of the core, and
// nothing else. IDs that do not parse are refused here, before the writer.
// All the work, and every failure, is in spool_core (spool_*.cpp).
#include "queue/spool.hpp"

#include <algorithm>

#include "queue/clock.hpp"
#include "queue/spool_core.hpp"
#include "queue/spool_diag.hpp"
#include "queue/spool_testing.hpp"

namespace queue {

using namespace detail;

spool::spool() = default;

spool::~spool() {
  if (core_) core_->stop();
}

std::expected<std::unique_ptr<spool>, std::string> spool::open(const spool_options& options) {
  std::unique_ptr<spool> s(new spool());
  s->core_ = std::make_unique<detail::spool_core>(options);
  if (auto r = s->core_->open(); !r) return std::unexpected(r.error());
  s->core_->start();
  return s;
}

std::string spool::new_id() {
  return core_->new_id();
}

void spool::enqueue(envelope_record env, std::string body, std::function<void(result)> done,
                    std::vector<std::string> events) {
  enqueue_drop({}, std::move(env), std::move(body), std::move(done), std::move(events));
}

// enqueue() is this with no drop name.
void spool::enqueue_drop(std::string drop_name, envelope_record env, std::string body,
                         std::function<void(result)> done, std::vector<std::string> events) {
  enqueue_op op;
  op.done = std::move(done);
  op.events = std::move(events);
  op.drop = std::move(drop_name);
  if (op.drop.size() > max_drop_name) {
    op.rejected = true;
    op.res = {status::error, "drop file name longer than " + std::to_string(max_drop_name)};
  } else if (auto id = parse_id(env.id)) {
    op.id = *id;
    op.envelope = encode(env);
    op.due = due_of(env);
    op.body = std::move(body);
    core_->note_id(*id);
  } else {
    op.rejected = true;
    op.res = {status::error, "invalid queue ID \"" + env.id + "\""};
  }
  core_->submit(std::move(op));
}

namespace {
// The IDs that parse; the rest cannot name a message.
std::vector<std::uint64_t> parse_ids(const std::vector<std::string>& ids) {
  std::vector<std::uint64_t> out;
  out.reserve(ids.size());
  for (const std::string& s : ids) {
    if (auto id = parse_id(s)) out.push_back(*id);
  }
  return out;
}
}  // namespace

void spool::update_recipients(std::string id, std::vector<recipient_update> updates,
                              std::uint32_t flags_set,
                              std::function<void(result, completion)> done,
                              std::vector<std::string> events) {
  update_op op;
  op.done = std::move(done);
  op.events = std::move(events);
  op.updates = std::move(updates);
  op.flags_set = flags_set;
  if (auto v = parse_id(id)) {
    op.id = *v;
  } else {
    op.rejected = true;
    op.res = {status::not_found, "invalid queue ID \"" + id + "\""};
  }
  core_->submit(std::move(op));
}

void spool::reschedule(std::vector<std::string> ids, std::int64_t due_us,
                       std::function<void(result, std::size_t)> done) {
  bulk_op op;
  op.kind = bulk_kind::reschedule;
  op.all = ids.empty();
  op.ids = parse_ids(ids);
  op.when_us = due_us;
  op.done = std::move(done);
  core_->submit(std::move(op));
}

void spool::set_held(std::vector<std::string> ids, bool held,
                     std::function<void(result, std::size_t)> done) {
  bulk_op op;
  op.kind = held ? bulk_kind::hold : bulk_kind::release;
  op.all = ids.empty();
  op.ids = parse_ids(ids);
  op.when_us = wall_clock_us();
  op.done = std::move(done);
  core_->submit(std::move(op));
}

void spool::purge_dead(std::vector<std::string> ids,
                       std::function<void(result, std::size_t)> done) {
  purge_dead_op op;
  op.all = ids.empty();
  op.ids = parse_ids(ids);
  op.done = std::move(done);
  core_->submit(std::move(op));
}

void spool::replay_dead(std::vector<std::string> ids, std::int64_t now_us,
                        std::function<void(result, std::size_t)> done) {
  dead_bulk_op op;
  op.kind = dead_kind::replay;
  op.all = ids.empty();
  op.ids = parse_ids(ids);
  op.when_us = now_us;
  op.done = std::move(done);
  core_->submit(std::move(op));
}

void spool::purge_dead_older_than(std::int64_t cutoff_us,
                                  std::function<void(result, std::size_t)> done) {
  dead_bulk_op op;
  op.kind = dead_kind::purge_older;
  op.all = true;
  op.when_us = cutoff_us;
  op.done = std::move(done);
  core_->submit(std::move(op));
}

std::int64_t failed_at(const envelope_record& r) {
  std::int64_t at = 0;
  for (const recipient& rc : r.recipients) {
    if (rc.state == rcpt_state::failed) at = std::max(at, rc.last_attempt_us);
  }
  return at != 0 ? at : r.arrival_us;
}

void spool::remove(std::vector<std::string> ids, std::function<void(result, std::size_t)> done) {
  remove_op op;
  op.all = ids.empty();
  op.done = std::move(done);
  for (const std::string& s : ids) {
    if (auto id = parse_id(s)) op.ids.push_back(*id);
  }
  core_->submit(std::move(op));
}

std::optional<envelope_record> spool::get(std::string_view id) const {
  return core_->get(id, false);
}

std::optional<std::string> spool::body(std::string_view id) const {
  return core_->body(id, false);
}

std::string spool::scan(std::string_view after, std::size_t limit,
                        const std::function<void(const envelope_record&)>& visit) const {
  return core_->scan(after, limit, visit, false);
}

std::uint64_t spool::message_count() const {
  return core_->count(false);
}

std::optional<envelope_record> spool::get_dead(std::string_view id) const {
  return core_->get(id, true);
}

std::optional<std::string> spool::dead_body(std::string_view id) const {
  return core_->body(id, true);
}

std::string spool::scan_dead(std::string_view after, std::size_t limit,
                             const std::function<void(const envelope_record&)>& visit) const {
  return core_->scan(after, limit, visit, true);
}

std::uint64_t spool::dead_count() const {
  return core_->count(true);
}

std::vector<spool::due_entry> spool::due(const std::optional<due_entry>& after,
                                         std::int64_t until_us, std::size_t limit) const {
  return core_->due(after, until_us, limit);
}

std::optional<std::int64_t> spool::next_due_after(std::int64_t after_us) const {
  return core_->next_due_after(after_us);
}

std::uint64_t spool::used_bytes() const {
  return core_->used_bytes();
}

const open_report& spool::report() const {
  return core_->report();
}

std::vector<quarantine_entry> quarantined_at_open(const spool& s) {
  return spool_access::core(s).quarantined();
}

spool_stats stats(const spool& s) {
  return spool_access::core(s).stats();
}

namespace testing {
void fail_next_commits(const spool& s, int error, int count) {
  spool_access::core(s).fail_next_commits(error, count);
}
}  // namespace testing

}  // namespace queue
