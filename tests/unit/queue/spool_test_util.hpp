// Helpers for the spool tests: a temporary directory, synchronous wrappers of
// the spool's write operations, deterministic records and bodies (a body can be
// rebuilt from its ID, so a test in another process can check it byte for
// byte), and raw access to a closed spool's LMDB environment.
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>

#include <cstdint>
#include <filesystem>
#include <future>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include "queue/lmdb.hpp"
#include "queue/queue_id.hpp"
#include "queue/spool.hpp"

namespace queue_test {

class temp_dir {
 public:
  temp_dir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "relayd-queue-XXXXXX").string();
    const char* p = ::mkdtemp(tmpl.data());
    if (p == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = p;
  }
  ~temp_dir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

inline queue::spool_options options_in(const temp_dir& d) {
  queue::spool_options o;
  o.dir = d.path() / "spool";
  o.min_free_disk = 0;
  o.initial_map_size = 8u << 20;
  return o;
}

inline std::unique_ptr<queue::spool> open_or_fail(const queue::spool_options& o) {
  auto s = queue::spool::open(o);
  if (!s) {
    ADD_FAILURE() << "open failed: " << s.error();
    return nullptr;
  }
  return std::move(*s);
}

inline std::uint64_t mix(std::uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ULL;
  return x ^ (x >> 33);
}

// `size` bytes starting with a header naming the ID, then bytes of every value.
inline std::string make_body(const std::string& id, std::size_t size) {
  std::string b = "Message-ID: <" + id + "@test>\r\n\r\n";
  std::uint64_t seed = std::hash<std::string>{}(id);
  while (b.size() < size) {
    seed = mix(seed + 1);
    b.push_back(static_cast<char>(seed & 0xff));
  }
  b.resize(size);
  return b;
}

inline queue::envelope_record make_record(queue::spool& s, std::size_t body_size, int n = 0) {
  queue::envelope_record r;
  r.id = s.new_id();
  r.arrival_us = 1'700'000'000'000'000 + n;
  r.size = body_size;
  r.flags = (n % 2) ? std::uint32_t{queue::flag_eight_bit} : 0u;
  r.sender = "sender" + std::to_string(n) + "@example.org";
  r.client_ip = "127.0.0.1";
  r.helo = "client.example.org";
  r.recipients.push_back(
      {"a" + std::to_string(n) + "@example.net", queue::rcpt_state::pending, 0, 0, ""});
  r.recipients.push_back({"b@example.com", queue::rcpt_state::pending, 0, 0, ""});
  return r;
}

inline queue::result enqueue_sync(queue::spool& s, queue::envelope_record r, std::string body) {
  auto p = std::make_shared<std::promise<queue::result>>();
  auto f = p->get_future();
  s.enqueue(std::move(r), std::move(body),
            [p](queue::result res) { p->set_value(std::move(res)); });
  return f.get();
}

inline std::pair<queue::result, std::size_t> remove_sync(queue::spool& s,
                                                         std::vector<std::string> ids) {
  auto p = std::make_shared<std::promise<std::pair<queue::result, std::size_t>>>();
  auto f = p->get_future();
  s.remove(std::move(ids), [p](queue::result res, std::size_t n) {
    p->set_value({std::move(res), n});
  });
  return f.get();
}

template <class... Args>
struct sync_call {
  std::shared_ptr<std::promise<std::tuple<Args...>>> p =
      std::make_shared<std::promise<std::tuple<Args...>>>();
  std::future<std::tuple<Args...>> f = p->get_future();
  auto callback() {
    return [p = p](Args... a) { p->set_value(std::tuple<Args...>(std::move(a)...)); };
  }
};

inline std::pair<queue::result, queue::spool::completion> update_sync(
    queue::spool& s, const std::string& id, std::vector<queue::spool::recipient_update> updates,
    std::uint32_t flags_set = 0) {
  sync_call<queue::result, queue::spool::completion> c;
  s.update_recipients(id, std::move(updates), flags_set, c.callback());
  auto [r, done] = c.f.get();
  return {std::move(r), done};
}

inline std::pair<queue::result, std::size_t> reschedule_sync(queue::spool& s,
                                                             std::vector<std::string> ids,
                                                             std::int64_t due_us) {
  sync_call<queue::result, std::size_t> c;
  s.reschedule(std::move(ids), due_us, c.callback());
  auto [r, n] = c.f.get();
  return {std::move(r), n};
}

inline std::pair<queue::result, std::size_t> set_held_sync(queue::spool& s,
                                                           std::vector<std::string> ids,
                                                           bool held) {
  sync_call<queue::result, std::size_t> c;
  s.set_held(std::move(ids), held, c.callback());
  auto [r, n] = c.f.get();
  return {std::move(r), n};
}

inline std::pair<queue::result, std::size_t> purge_dead_sync(queue::spool& s,
                                                             std::vector<std::string> ids) {
  sync_call<queue::result, std::size_t> c;
  s.purge_dead(std::move(ids), c.callback());
  auto [r, n] = c.f.get();
  return {std::move(r), n};
}

inline std::pair<queue::result, std::size_t> replay_dead_sync(queue::spool& s,
                                                              std::vector<std::string> ids,
                                                              std::int64_t now_us) {
  sync_call<queue::result, std::size_t> c;
  s.replay_dead(std::move(ids), now_us, c.callback());
  auto [r, n] = c.f.get();
  return {std::move(r), n};
}

inline std::pair<queue::result, std::size_t> purge_dead_older_sync(queue::spool& s,
                                                                   std::int64_t cutoff_us) {
  sync_call<queue::result, std::size_t> c;
  s.purge_dead_older_than(cutoff_us, c.callback());
  auto [r, n] = c.f.get();
  return {std::move(r), n};
}

// Reads and writes straight into a spool's LMDB environment (the spool must be
// closed), to damage it or to check its layout.
class raw_env {
 public:
  explicit raw_env(const std::filesystem::path& dir) {
    auto e = queue::lmdb::env::create();
    EXPECT_TRUE(e);
    env_ = std::move(*e);
    env_.set_maxdbs(16);
    env_.set_mapsize(64u << 20);
    EXPECT_FALSE(env_.open(dir.c_str(), 0, 0600));
  }
  void put(const char* db, std::string_view key, std::string_view value) {
    auto t = queue::lmdb::txn::begin(env_, 0);
    ASSERT_TRUE(t);
    auto d = t->open_dbi(db, MDB_CREATE);
    ASSERT_TRUE(d);
    ASSERT_FALSE(t->put(*d, key, value));
    ASSERT_FALSE(t->commit());
  }
  // True if the key was there.
  bool del(const char* db, std::string_view key) {
    auto t = queue::lmdb::txn::begin(env_, 0);
    if (!t) return false;
    auto d = t->open_dbi(db, 0);
    if (!d) return false;
    if (t->del(*d, key)) return false;
    return !t->commit();
  }
  // Drops a whole named database, as if it had never existed.
  void drop(const char* db) {
    auto t = queue::lmdb::txn::begin(env_, 0);
    ASSERT_TRUE(t);
    auto d = t->open_dbi(db, 0);
    if (!d) return;
    ASSERT_EQ(mdb_drop(t->get(), d->handle, 1), 0);
    ASSERT_FALSE(t->commit());
  }
  std::optional<std::string> get(const char* db, std::string_view key) {
    auto t = queue::lmdb::txn::begin(env_, MDB_RDONLY);
    if (!t) return std::nullopt;
    auto d = t->open_dbi(db, 0);
    if (!d) return std::nullopt;
    auto v = t->get(*d, key);
    if (!v) return std::nullopt;
    return std::string(*v);
  }
  // Every key of a database, in order (empty if it does not exist).
  std::vector<std::string> keys(const char* db) {
    std::vector<std::string> out;
    auto t = queue::lmdb::txn::begin(env_, MDB_RDONLY);
    if (!t) return out;
    auto d = t->open_dbi(db, 0);
    if (!d) return out;
    auto c = queue::lmdb::cursor::open(*t, *d);
    if (!c) return out;
    MDB_val k{};
    for (auto ec = c->get(&k, nullptr, MDB_FIRST); !ec; ec = c->get(&k, nullptr, MDB_NEXT)) {
      out.emplace_back(queue::lmdb::to_view(k));
    }
    return out;
  }

 private:
  queue::lmdb::env env_;
};

inline std::string key_string(std::string_view id) {
  auto k = queue::key_of(*queue::parse_id(id));
  return {k.data(), k.size()};
}

// The schedule key of (due_us, id) as the spool writes it.
inline std::string schedule_key_string(std::int64_t due_us, std::string_view id) {
  auto d = queue::key_of(static_cast<std::uint64_t>(due_us < 0 ? 0 : due_us));
  return std::string(d.data(), d.size()) + key_string(id);
}

}  // namespace queue_test
