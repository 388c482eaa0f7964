// Connection limits for the inbound listeners, as a pure class (no sockets, no
// clock of its own): max_connections in total, max_connections_per_client, and
// max_connection_rate_per_client as a sliding one-minute window per address.
// admit() says whether a new connection may be served; a refused one is never
// counted as open. Rate bookkeeping is bounded (max_rate_entries addresses).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <unordered_map>

namespace relayd {

class inbound_limits {
 public:
  using clock = std::chrono::steady_clock;

  struct settings {
    std::size_t max_connections = 0;             // open at once, all clients
    std::size_t max_connections_per_client = 0;  // open at once, one address
    std::uint64_t max_rate_per_client = 0;       // per minute, refused ones too; 0: no limit
  };
  enum class verdict {
    accepted,         // counted as open until release(ip)
    too_many,         // max_connections reached
    too_many_client,  // max_connections_per_client reached for this address
    too_fast,         // over max_connection_rate_per_client
  };

  // Past this many addresses in the rate table, new addresses are not rate
  // limited until the next sweep (once a minute) has made room.
  static constexpr std::size_t max_rate_entries = 100000;
  static constexpr auto rate_window = std::chrono::minutes(1);

  explicit inbound_limits(settings s, clock::time_point now = clock::now())
      : settings_(s), last_sweep_(now) {}

  // A reload: new limits for the connections that arrive from now on (the open
  // ones stay counted).
  void reconfigure(settings s) { settings_ = s; }
  // A connection from `ip` arrives at `now`: counts it in the rate window
  // (whatever the verdict) and, when accepted, as open.
  verdict admit(const std::string& ip, clock::time_point now);
  // An accepted connection from `ip` has closed.
  void release(const std::string& ip);

  std::size_t open() const { return open_; }
  std::size_t open_from(const std::string& ip) const;
  std::size_t rate_entries() const { return rates_.size(); }

 private:
  // This and the previous minute's counts; the estimate weighs the previous
  // one by how much of it still lies inside the sliding window.
  struct rate_entry {
    clock::time_point window_start;
    std::uint64_t count = 0;
    std::uint64_t previous = 0;
  };
  bool rate_allows(const std::string& ip, clock::time_point now);

  settings settings_;
  std::size_t open_ = 0;
  std::unordered_map<std::string, std::size_t> per_client_;
  std::unordered_map<std::string, rate_entry> rates_;
  clock::time_point last_sweep_;
};

}  // namespace relayd
