// Per destination, the outbound TLS policy last in force and the last TLS
// outcome (relayctl destinations; issue 14 "visibility"): "mta-sts enforce",
// "mta-sts testing", "dane" or "none", and "verified TLSv1.3", "untrusted
// TLSv1.3", "plaintext" or "failed: REASON", with when. Kept apart from the
// scheduler's destinations, which are forgotten when idle. Pure, I/O thread
// only; bounded (the least recently updated go first).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>

namespace relayd {

struct tls_status {
  std::string policy;   // "mta-sts enforce", "mta-sts testing", "dane", "none"
  std::string outcome;  // "verified TLSv1.3", "untrusted TLSv1.2", "plaintext", "failed: ..."
  std::int64_t at = 0;  // Unix seconds
};

// "verified TLSv1.3" / "untrusted TLSv1.3"; "plaintext" without a version.
std::string tls_outcome_text(std::string_view version, bool verified);

class tls_status_table {
 public:
  explicit tls_status_table(std::size_t capacity = 10000) : capacity_(capacity) {}
  // `destination`: its id (destination_key::id()).
  void record(const std::string& destination, tls_status s);
  const tls_status* find(std::string_view destination) const;
  const std::map<std::string, tls_status, std::less<>>& all() const { return by_name_; }

 private:
  std::size_t capacity_;
  std::map<std::string, tls_status, std::less<>> by_name_;
};

}  // namespace relayd
