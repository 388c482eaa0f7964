// The DKIM key record (RFC 6376 section 3.6.1, RFC 8463) and the public key it
// must publish: parsing a TXT record's text, deriving the record's p= value from
// a private key PEM, comparing the two, and writing the zone line relayctl
// prints. Pure and without Asio; OpenSSL stays in the .cpp. Nothing throws:
// bad records and unreadable keys are values (a parse error, a check_state
// with its reason).
#pragma once

#include <expected>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace relayd::dkim {

// A parsed key record. Tags other than v, k and p are accepted and ignored.
struct key_record {
  std::string key_type = "rsa";  // k= (lower-cased); "rsa" when absent
  std::string public_key;        // p= with every whitespace removed; "" when revoked
  bool revoked() const { return public_key.empty(); }
};

// `text` is a TXT record's character-strings joined without separators.
// Errors: "not a tag=value list", "v= must come first", "unsupported version
// v=...", "duplicate tag x", "no p= tag", "p= is not base64".
std::expected<key_record, std::string> parse_key_record(std::string_view text);

// The public half of a signing key, as a key record publishes it.
struct public_key {
  std::string key_type;  // "rsa" or "ed25519"
  std::string p;         // base64: RSA SubjectPublicKeyInfo DER; Ed25519 the raw 32 bytes
  int bits = 0;          // RSA modulus size; 256 for Ed25519
};

// From a private key in PEM (PKCS#8 or traditional RSA). Errors name what is
// wrong ("not a PEM private key", "unsupported key type ..."), never the key.
std::expected<public_key, std::string> public_key_from_pem(std::string_view pem);
// The same from a file; errors start with the path ("PATH: Permission denied").
std::expected<public_key, std::string> public_key_from_file(const std::string& path);

// What the published record says about a key. Names are the ones relayctl and
// the control socket show (to_string).
enum class check_state {
  ok,              // a record publishes exactly this key
  missing,         // no TXT record at SELECTOR._domainkey.DOMAIN (NXDOMAIN or no data)
  mismatch,        // a key record is there, with another key or key type
  revoked,         // the record has an empty p=
  malformed,       // TXT records are there but none is a valid key record
  key_unreadable,  // our own key file cannot be read or parsed
  dns_error,       // the lookup failed temporarily (SERVFAIL, timeout): unknown
};
std::string_view to_string(check_state s);

struct check_result {
  check_state state = check_state::missing;
  std::string reason;  // one line for people: what differs, what failed
};

// Compares the TXT records found at the selector's name with `key`. Several
// records: ok if one of them publishes the key; otherwise the most telling
// of revoked, mismatch, malformed (in that order).
check_result compare(std::span<const std::string> txt_records, const public_key& key);

// "s2026._domainkey.example.org."
std::string record_name(std::string_view domain, std::string_view selector);
// "v=DKIM1; k=rsa; p=..." for `key`.
std::string record_text(const public_key& key);
// The zone file line: NAME IN TXT ( "..." "..." ), each quoted string at most
// 255 characters (a TXT character-string's limit), so it can be pasted as is.
std::string zone_line(std::string_view domain, std::string_view selector, const public_key& key);
// `text` cut into TXT character-strings of at most 255 characters.
std::vector<std::string> split_strings(std::string_view text);

}  // namespace relayd::dkim
