// The durable spool: an LMDB environment holding envelope records and message
// bodies in separate databases. One writer thread owns every write transaction
// and commits many operations at once with a synced commit (group commit), so an
// enqueue's completion (and the 250 that follows it) comes only after the message
// is on disk. Reads use short read transactions from any thread.
//
// Fails by value: a full map that cannot grow, free disk below min_free_disk or
// max_messages reached give status::full (the caller answers 452 4.3.1); other
// LMDB errors give status::error. Undecodable records found at open are moved
// to a quarantine database and counted, never fatal.
#pragma once

#include <cstdint>
#include <expected>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "queue/record.hpp"

namespace queue {

struct spool_options {
  std::filesystem::path dir;            // created (mode 0700) if missing
  std::uint64_t max_size = 0;           // largest the map may grow to; 0: the disk decides
  std::uint64_t min_free_disk = 100ull << 20;
  std::uint64_t max_messages = 0;       // 0: no limit
  std::uint64_t initial_map_size = 64ull << 20;
};

enum class status { ok, full, error, not_found };

struct result {
  status code = status::ok;
  std::string detail;  // human-readable reason when code != ok
};

struct open_report {
  std::uint64_t messages = 0;     // envelope records that decoded
  std::uint64_t recipients_pending = 0;
  std::uint64_t quarantined = 0;  // records moved aside because they did not decode
  std::uint64_t bytes = 0;        // sum of message sizes
};

class spool {
 public:
  static std::expected<std::unique_ptr<spool>, std::string> open(const spool_options& options);
  ~spool();  // stops the writer after finishing queued operations

  // A fresh queue ID: 16 uppercase hex digits, strictly increasing in time order,
  // unique across restarts. Thread-safe.
  std::string new_id();

  // Stores envelope + body in one synced transaction (shared with other
  // operations). `done` runs on the writer thread after the commit, or after the
  // failure; it must be quick (post to your own executor).
  void enqueue(envelope_record env, std::string body, std::function<void(result)> done);
  // Deletes the messages (an empty list: every message). `done` gets how many
  // were deleted; ok if at least one was, not_found otherwise.
  void remove(std::vector<std::string> ids, std::function<void(result, std::size_t)> done);

  // Read side (any thread; short read transactions, never held across I/O).
  std::optional<envelope_record> get(std::string_view id) const;
  std::optional<std::string> body(std::string_view id) const;
  // Visits records in ID (= arrival) order starting after `after` ("" = from the
  // start), at most `limit` of them. Returns the last ID visited ("" when none).
  std::string scan(std::string_view after, std::size_t limit,
                   const std::function<void(const envelope_record&)>& visit) const;
  std::uint64_t message_count() const;
  std::uint64_t used_bytes() const;  // pages in use × page size
  const open_report& report() const;

 private:
  spool();
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace queue
