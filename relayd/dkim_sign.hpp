// DKIM signing (RFC 6376, rsa-sha256 and RFC 8463 ed25519-sha256, relaxed/
// relaxed) with the keys of [[dkim]]. dkim_signer holds the loaded keys and
// signs a whole message; dkim_service keeps the current signer (swapped by a
// reload, kept when the reload fails) and runs the signing on its own threads,
// never the I/O thread. A bad key file is an error naming the entry and the
// path ("dkim[2].key: /etc/relayd/k.pem: ..."); a message whose domain has no
// key is left unsigned and said so ("none"). A key of an entry with
// require_dns = true signs only while the DNS gate (dkim_dns_monitor) says its
// selector's record publishes that very key; otherwise the other keys sign and
// the log value names the key left out and why. OpenSSL stays in the .cpp.
#pragma once

#include <cstdint>
#include <expected>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "relayd/config.hpp"

namespace relayd {

// require_dns: "" while SELECTOR._domainkey.DOMAIN publishes `public_key` (the
// key record's p= value of the key about to sign), else why not, in a few words
// ("mismatch", "missing", "not checked yet"). Called on the signing threads.
using dkim_dns_gate = std::function<std::string(
    std::string_view domain, std::string_view selector, std::string_view public_key)>;

// What signing one message gave.
struct dkim_outcome {
  std::string fields;  // DKIM-Signature fields to put in front, each ending in CRLF; "" unsigned
  std::string log;     // "example.org/rsa1,ed1", or "none"; keys left out by
                       // require_dns follow: "example.org/ed1 (require_dns: not
                       // signed with rsa1, DNS record mismatch)"
};

// The [[dkim]] keys, read once. Immutable after load: shared by threads.
class dkim_signer {
 public:
  struct key;  // one entry and its EVP_PKEY (dkim_sign.cpp)

  // Reads and checks every key file (RSA 1024-4096 bits or Ed25519).
  static std::expected<std::shared_ptr<const dkim_signer>, std::string> load(
      const std::vector<config::dkim_entry>& entries);
  dkim_signer();
  ~dkim_signer();
  dkim_signer(const dkim_signer&) = delete;
  dkim_signer& operator=(const dkim_signer&) = delete;

  // "example.org/rsa1 (rsa-sha256, 2048 bits), example.org/ed1 (ed25519-sha256)".
  std::string describe() const;

  // Signs `message` (CRLF lines, as spooled) with every key of the signing
  // domain: the From: header's domain, or `envelope_sender`'s for entries with
  // match = "sender", exactly or (subdomains) below it. `now` is t= (Unix time).
  // Keys with require_dns sign only when `dns` answers "" for them (no gate:
  // they do not sign).
  dkim_outcome sign(std::string_view message, std::string_view envelope_sender,
                    std::int64_t now, const dkim_dns_gate* dns = nullptr) const;

 private:
  std::vector<std::unique_ptr<key>> keys_;
};

// The signer in use and the threads that sign. Lives in run_daemon() and
// outlives every session and import; load() and sign() are called on the I/O
// thread only (the swap needs no lock), the signing runs on the pool.
class dkim_service {
 public:
  explicit dkim_service(const config& cfg);
  ~dkim_service();  // waits for the signing in flight

  // (Re)reads the keys. Success: the line to log. Failure: the error, and the
  // signer in use stays.
  std::expected<std::string, std::string> load();
  bool enabled() const { return !cfg_.dkim.empty(); }
  // What require_dns asks (dkim_dns_monitor::gate()); call before the first sign().
  void set_dns_gate(dkim_dns_gate gate);

  // Signs `message` on the pool with the signer current now; `done` runs there
  // with the message (signature fields in front when signed) and the log value.
  void sign(std::string message, std::string envelope_sender,
            std::function<void(std::string, std::string)> done) const;

 private:
  struct pool;
  const config& cfg_;  // run_daemon's; outlives this
  std::shared_ptr<const dkim_signer> current_;
  std::shared_ptr<const dkim_dns_gate> gate_;  // shared with the jobs in flight
  std::unique_ptr<pool> pool_;
};

}  // namespace relayd
