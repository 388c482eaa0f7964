// DKIM without cryptography (RFC 6376): a message split into header fields and
// body, the relaxed canonicalizations of both (3.4.2, 3.4.4), the list of
// header fields a signer covers (5.4.1, with over-signing), the bytes that go
// into the header hash (3.7), the From: domain, and the folding of a
// DKIM-Signature field. Pure functions over bytes: the signer
// (relayd/dkim_sign.hpp) hashes and signs what these return. A message without
// a header/body separator is all header; nothing here throws for odd input.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace smtp::dkim {

// A message cut at its first empty line. `fields` are the header fields as
// they appear, each with its folded continuation lines and without its final
// CRLF; `body` starts after the empty line (empty when there is none).
struct split_message {
  std::vector<std::string_view> fields;
  std::string_view body;
};
split_message split(std::string_view message);

// The name of a field ("From" for "From: a@b"), as written; "" without a colon.
std::string_view field_name(std::string_view field);

// Relaxed header canonicalization (3.4.2): "name:value\r\n" with the name
// lower-cased, the value unfolded, runs of WSP made one SP, WSP around the
// colon and at the end removed.
std::string relaxed_header(std::string_view field);

// Relaxed body canonicalization (3.4.4): WSP at line ends removed, other WSP
// runs made one SP, empty lines at the end removed; a non-empty result ends in
// CRLF (a last line without one gets it). An empty body gives "".
std::string relaxed_body(std::string_view body);

// The h= list for a message with these fields (5.4.1): From, To, Cc, Subject,
// Date, Message-ID and Reply-To once more than present (From at least twice),
// so a copy added later breaks the signature; the other recommended fields as
// often as present. Names as in the list, in its order.
std::vector<std::string> signed_names(const std::vector<std::string_view>& fields);

// The header hash input for `names` (3.7, 5.4.2): for each name, the next
// instance from the bottom not yet used, relaxed; a name with no instance left
// adds nothing. Does not include the DKIM-Signature field itself.
std::string header_hash_input(const std::vector<std::string_view>& fields,
                              const std::vector<std::string>& names);

// The domain of the first address of the first From: field, lower-cased
// ("Ann <ann@Mail.Example.org>" -> "mail.example.org"); nullopt without one.
std::optional<std::string> from_domain(const std::vector<std::string_view>& fields);

// One tag of a signature: "a=rsa-sha256". `breakable` values (h=, b=, bh=) may
// be broken across lines: h= after a colon, base64 anywhere.
struct tag {
  std::string name;
  std::string value;
};

// "DKIM-Signature: v=1; a=...; ...; b=VALUE" folded so that no line is longer
// than `width` columns (CRLF SP continuation lines, no final CRLF). The b= tag
// must be last: it starts a line of its own, so removing its value (as a
// verifier does) leaves "...;\r\n b=" whatever the value was.
std::string fold_signature(const std::vector<tag>& tags, std::size_t width = 78);

}  // namespace smtp::dkim
