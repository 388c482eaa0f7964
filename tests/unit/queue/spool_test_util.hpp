// Helpers for the spool tests: a temporary directory, synchronous wrappers of
// enqueue/remove, deterministic records and bodies (a body can be rebuilt from
// its ID, so a test in another process can check it byte for byte).
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>

#include <cstdint>
#include <filesystem>
#include <future>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>

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

}  // namespace queue_test
