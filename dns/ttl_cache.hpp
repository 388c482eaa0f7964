// A bounded cache whose entries expire at a given time point: least recently
// used entries are dropped when full, expired ones when next looked up. Single
// threaded (the resolver runs on one io_context thread). Capacity 0 disables it.
#pragma once

#include <chrono>
#include <cstddef>
#include <list>
#include <string>
#include <unordered_map>
#include <utility>

namespace dns::detail {

template <typename Value>
class ttl_cache {
 public:
  using time_point = std::chrono::steady_clock::time_point;

  explicit ttl_cache(std::size_t capacity) : capacity_(capacity) {}

  // The live entry for `key` (now marked most recently used), or nullptr. The
  // pointer is valid until the next put(). `remaining` gets the time left.
  const Value* find(const std::string& key, time_point now,
                    std::chrono::seconds* remaining = nullptr) {
    auto it = index_.find(key);
    if (it == index_.end()) return nullptr;
    if (it->second->expires <= now) {
      lru_.erase(it->second);
      index_.erase(it);
      return nullptr;
    }
    lru_.splice(lru_.begin(), lru_, it->second);
    if (remaining)
      *remaining = std::chrono::duration_cast<std::chrono::seconds>(it->second->expires - now);
    return &it->second->value;
  }

  void put(const std::string& key, Value value, time_point expires) {
    if (capacity_ == 0) return;
    if (auto it = index_.find(key); it != index_.end()) {
      it->second->value = std::move(value);
      it->second->expires = expires;
      lru_.splice(lru_.begin(), lru_, it->second);
      return;
    }
    while (lru_.size() >= capacity_) {
      index_.erase(lru_.back().key);
      lru_.pop_back();
    }
    lru_.push_front({key, std::move(value), expires});
    index_.emplace(key, lru_.begin());
  }

  std::size_t size() const { return lru_.size(); }

 private:
  struct entry {
    std::string key;
    Value value;
    time_point expires;
  };
  std::size_t capacity_;
  std::list<entry> lru_;  // most recently used first
  std::unordered_map<std::string, typename std::list<entry>::iterator> index_;
};

}  // namespace dns::detail
