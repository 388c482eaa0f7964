// Implements dkim_record.hpp. The tag list follows RFC 6376 section 3.2: tags
// separated by ";", whitespace around names and values ignored, a trailing ";"
// allowed, a duplicate tag an error. Keys are compared as bytes after base64
// decoding, so line breaks or spaces in the published p= do not matter.
#include "relayd/dkim_record.hpp"

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <algorithm>
#include <cctype>
#include <memory>
#include <optional>

#include "relayd/read_file.hpp"
#include "smtp/base64.hpp"
#include "smtp/text.hpp"

namespace relayd::dkim {
namespace {

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

bool valid_tag_name(std::string_view n) {
  if (n.empty() || !std::isalpha(static_cast<unsigned char>(n[0]))) return false;
  return std::ranges::all_of(
      n, [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; });
}

std::string without_space(std::string_view s) {
  std::string out;
  for (char c : s)
    if (!is_space(c)) out += c;
  return out;
}

struct pkey_free {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
struct bio_free {
  void operator()(BIO* b) const { BIO_free(b); }
};

}  // namespace

std::expected<key_record, std::string> parse_key_record(std::string_view text) {
  key_record r;
  std::vector<std::string> seen;
  bool have_p = false;
  std::size_t index = 0;
  while (!text.empty()) {
    const auto semi = text.find(';');
    std::string_view spec = text.substr(0, semi);
    text = semi == std::string_view::npos ? std::string_view{} : text.substr(semi + 1);
    if (trim(spec).empty()) {
      if (text.empty()) break;  // a trailing ";"
      return std::unexpected("not a tag=value list (empty tag)");
    }
    const auto eq = spec.find('=');
    if (eq == std::string_view::npos)
      return std::unexpected("not a tag=value list (\"" + std::string(trim(spec)) + "\" has no =)");
    const std::string_view name = trim(spec.substr(0, eq));
    const std::string_view value = trim(spec.substr(eq + 1));
    if (!valid_tag_name(name))
      return std::unexpected("not a tag=value list (bad tag name \"" + std::string(name) + "\")");
    if (std::ranges::find(seen, name) != seen.end())
      return std::unexpected("duplicate tag " + std::string(name));
    seen.emplace_back(name);
    if (name == "v") {
      if (index != 0) return std::unexpected("v= must come first");
      if (value != "DKIM1") return std::unexpected("unsupported version v=" + std::string(value));
    } else if (name == "k") {
      r.key_type = smtp::text::lower(std::string(value));
    } else if (name == "p") {
      have_p = true;
      r.public_key = without_space(value);
      if (!r.public_key.empty() && !smtp::base64::decode(r.public_key))
        return std::unexpected("p= is not base64");
    }
    ++index;
  }
  if (!have_p) return std::unexpected("no p= tag");
  return r;
}

std::expected<public_key, std::string> public_key_from_pem(std::string_view pem) {
  std::unique_ptr<BIO, bio_free> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (!bio) return std::unexpected("out of memory");
  std::unique_ptr<EVP_PKEY, pkey_free> key(
      PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
  if (!key) return std::unexpected("not a PEM private key");
  public_key out;
  switch (EVP_PKEY_get_base_id(key.get())) {
    case EVP_PKEY_RSA: {
      unsigned char* der = nullptr;
      const int n = i2d_PUBKEY(key.get(), &der);
      if (n <= 0) return std::unexpected("cannot encode the RSA public key");
      out.key_type = "rsa";
      out.p = smtp::base64::encode(
          std::string_view(reinterpret_cast<const char*>(der), static_cast<std::size_t>(n)));
      OPENSSL_free(der);
      out.bits = EVP_PKEY_get_bits(key.get());
      return out;
    }
    case EVP_PKEY_ED25519: {
      unsigned char raw[32];
      std::size_t len = sizeof raw;
      if (EVP_PKEY_get_raw_public_key(key.get(), raw, &len) != 1 || len != sizeof raw)
        return std::unexpected("cannot read the Ed25519 public key");
      out.key_type = "ed25519";
      out.p = smtp::base64::encode(std::string_view(reinterpret_cast<const char*>(raw), len));
      out.bits = 256;
      return out;
    }
    default:
      return std::unexpected(std::string("unsupported key type ") +
                             OBJ_nid2sn(EVP_PKEY_get_base_id(key.get())) +
                             " (DKIM keys are RSA or Ed25519)");
  }
}

std::expected<public_key, std::string> public_key_from_file(const std::string& path) {
  auto text = read_file(path);
  if (!text) return std::unexpected(text.error());
  auto key = public_key_from_pem(*text);
  if (!key) return std::unexpected(path + ": " + key.error());
  return key;
}

std::string_view to_string(check_state s) {
  switch (s) {
    case check_state::ok:
      return "ok";
    case check_state::missing:
      return "missing";
    case check_state::mismatch:
      return "mismatch";
    case check_state::revoked:
      return "revoked";
    case check_state::malformed:
      return "malformed";
    case check_state::key_unreadable:
      return "key_unreadable";
    case check_state::dns_error:
      return "dns_error";
  }
  return "unknown";
}

check_result compare(std::span<const std::string> txt_records, const public_key& key) {
  if (txt_records.empty()) return {check_state::missing, "no TXT record"};
  std::optional<check_result> revoked, mismatch, malformed;
  const auto ours = smtp::base64::decode(key.p);
  for (const auto& text : txt_records) {
    auto rec = parse_key_record(text);
    if (!rec) {
      if (!malformed) malformed = check_result{check_state::malformed, rec.error()};
      continue;
    }
    if (rec->revoked()) {
      if (!revoked)
        revoked = check_result{check_state::revoked, "the record has an empty p= (key revoked)"};
      continue;
    }
    if (rec->key_type != key.key_type) {
      if (!mismatch)
        mismatch = check_result{check_state::mismatch, "the record has k=" + rec->key_type +
                                                           ", the key is " + key.key_type};
      continue;
    }
    if (ours && smtp::base64::decode(rec->public_key) == ours) return {check_state::ok, ""};
    if (!mismatch)
      mismatch = check_result{check_state::mismatch,
                              "the record's p= is another " + key.key_type + " public key"};
  }
  if (revoked) return *revoked;
  if (mismatch) return *mismatch;
  return *malformed;
}

std::string record_name(std::string_view domain, std::string_view selector) {
  return std::string(selector) + "._domainkey." + std::string(domain) + ".";
}

std::string record_text(const public_key& key) {
  return "v=DKIM1; k=" + key.key_type + "; p=" + key.p;
}

std::vector<std::string> split_strings(std::string_view text) {
  constexpr std::size_t limit = 255;
  std::vector<std::string> out;
  while (text.size() > limit) {
    out.emplace_back(text.substr(0, limit));
    text.remove_prefix(limit);
  }
  out.emplace_back(text);
  return out;
}

std::string zone_line(std::string_view domain, std::string_view selector, const public_key& key) {
  std::string line = record_name(domain, selector) + " IN TXT (";
  for (const auto& s : split_strings(record_text(key))) line += " \"" + s + "\"";
  return line + " )";
}

}  // namespace relayd::dkim
