// relayctl dkim keygen|check: the operations around DKIM signing keys.
//   keygen DOMAIN SELECTOR [--algorithm rsa2048|rsa1024|rsa4096|ed25519] [--dir DIR]
//     generates the key with OpenSSL, writes DIR/DOMAIN.SELECTOR.key (mode 0600,
//     owned by the configured `user` when run as root) through an O_EXCL
//     temporary file renamed without replacing, never over an existing key, and
//     prints the TXT record to publish.
//   check [--json]
//     asks relayd (control verb dkim_check) to look every [[dkim]] selector up
//     with its resolver and compare it with the key file; prints a table or JSON
//     lines; exit 0 only if every entry is ok.
// Bad arguments give 2 (usage), a failed action 1 with one line on stderr.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "cli/control_client.hpp"

namespace relayctl {

// Whether the words after "dkim" make sense; if not, says why on stderr.
bool dkim_words_ok(const std::vector<std::string>& words);

// `words` as dkim_words_ok accepted them; `config_path` the -c file (else the
// default, which may be absent: then no chown).
int dkim_keygen(const std::vector<std::string>& words,
                const std::optional<std::string>& config_path);
int dkim_check(control_client& c, bool as_json);

}  // namespace relayctl
