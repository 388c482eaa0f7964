// DKIM key loading and signatures with OpenSSL EVP (see dkim_sign.hpp). The
// canonical bytes come from smtp/dkim_canon; this file hashes and signs them.
// rsa-sha256 is RSASSA-PKCS1-v1_5 over the header data with SHA-256;
// ed25519-sha256 signs the SHA-256 digest of the same data with PureEdDSA
// (RFC 8463 section 3). A signing failure (OpenSSL out of memory) leaves the
// message unsigned and says so in the log value; it never loses the message.
#include "relayd/dkim_sign.hpp"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <thread>

#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>

#include "relayd/dkim_record.hpp"
#include "relayd/read_file.hpp"
#include "smtp/base64.hpp"
#include "smtp/dkim_canon.hpp"
#include "smtp/text.hpp"

namespace relayd {

struct dkim_signer::key {
  config::dkim_entry entry;
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> pkey{nullptr, &EVP_PKEY_free};
  bool ed25519 = false;
  int bits = 0;
  std::string public_key;  // the key record's p= (what require_dns compares)
};

namespace {

constexpr int min_rsa_bits = 1024;
constexpr int max_rsa_bits = 4096;

// SHA-256, fetched from the provider once: EVP_sha256() makes OpenSSL 3 look
// the implementation up again on every EVP_Digest and EVP_DigestSignInit.
const EVP_MD* sha256_md() {
  static const std::unique_ptr<EVP_MD, decltype(&EVP_MD_free)> md(
      EVP_MD_fetch(nullptr, "SHA256", nullptr), &EVP_MD_free);
  return md.get();
}

std::string sha256(std::string_view data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  if (sha256_md() == nullptr ||
      EVP_Digest(data.data(), data.size(), md, &n, sha256_md(), nullptr) != 1)
    return {};
  return std::string(reinterpret_cast<const char*>(md), n);
}

// The raw signature of `data` for this key; "" when OpenSSL fails.
std::string signature(const dkim_signer::key& k, std::string_view data) {
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
  if (!ctx) return {};
  const std::string digest = k.ed25519 ? sha256(data) : std::string();
  const std::string_view input = k.ed25519 ? std::string_view(digest) : data;
  if (input.empty() && k.ed25519) return {};
  if (EVP_DigestSignInit(ctx.get(), nullptr, k.ed25519 ? nullptr : sha256_md(), nullptr,
                         k.pkey.get()) != 1)
    return {};
  std::size_t len = 0;
  const auto* in = reinterpret_cast<const unsigned char*>(input.data());
  if (EVP_DigestSign(ctx.get(), nullptr, &len, in, input.size()) != 1) return {};
  std::string out(len, '\0');
  if (EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(out.data()), &len, in,
                     input.size()) != 1)
    return {};
  out.resize(len);
  return out;
}

bool domain_matches(const config::dkim_entry& e, std::string_view domain) {
  return domain == e.domain ||
         (e.subdomains && domain.size() > e.domain.size() + 1 && domain.ends_with(e.domain) &&
          domain[domain.size() - e.domain.size() - 1] == '.');
}

std::string join(const std::vector<std::string>& names, std::string_view sep) {
  std::string out;
  for (const auto& n : names) {
    if (!out.empty()) out += sep;
    out += n;
  }
  return out;
}

}  // namespace

dkim_signer::dkim_signer() = default;
dkim_signer::~dkim_signer() = default;

std::expected<std::shared_ptr<const dkim_signer>, std::string> dkim_signer::load(
    const std::vector<config::dkim_entry>& entries) {
  auto signer = std::make_shared<dkim_signer>();
  for (std::size_t i = 0; i < entries.size(); ++i) {
    const auto& e = entries[i];
    const std::string where = "dkim[" + std::to_string(i + 1) + "].key: ";
    auto pem = read_file(e.key);
    if (!pem) return std::unexpected(where + pem.error());
    std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new_mem_buf(pem->data(),
                                                                  static_cast<int>(pem->size())),
                                                  &BIO_free);
    auto k = std::make_unique<key>();
    k->entry = e;
    if (bio) k->pkey.reset(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
    if (auto pub = dkim::public_key_from_pem(*pem); k->pkey && pub) k->public_key = pub->p;
    std::fill(pem->begin(), pem->end(), '\0');
    if (!k->pkey)
      return std::unexpected(where + e.key + ": not a PEM private key (unencrypted PKCS#8 or RSA)");
    const int type = EVP_PKEY_get_base_id(k->pkey.get());
    if (type == EVP_PKEY_ED25519) {
      k->ed25519 = true;
    } else if (type == EVP_PKEY_RSA) {
      k->bits = EVP_PKEY_get_bits(k->pkey.get());
      if (k->bits < min_rsa_bits || k->bits > max_rsa_bits)
        return std::unexpected(where + e.key + ": RSA key of " + std::to_string(k->bits) +
                               " bits (DKIM keys must have 1024 to 4096; 2048 is usual)");
    } else {
      return std::unexpected(where + e.key + ": not an RSA or Ed25519 key");
    }
    signer->keys_.push_back(std::move(k));
  }
  return std::shared_ptr<const dkim_signer>(std::move(signer));
}

std::string dkim_signer::describe() const {
  std::string out;
  for (const auto& k : keys_) {
    if (!out.empty()) out += ", ";
    out += k->entry.domain + "/" + k->entry.selector +
           (k->ed25519 ? " (ed25519-sha256)"
                       : " (rsa-sha256, " + std::to_string(k->bits) + " bits)");
  }
  return out;
}

dkim_outcome dkim_signer::sign(std::string_view message, std::string_view envelope_sender,
                               std::int64_t now, const dkim_dns_gate* dns) const {
  const smtp::dkim::split_message m = smtp::dkim::split(message);
  const std::optional<std::string> from = smtp::dkim::from_domain(m.fields);
  std::string sender;
  if (const auto at = envelope_sender.rfind('@'); at != std::string_view::npos)
    sender = smtp::text::lower(std::string(envelope_sender.substr(at + 1)));
  auto domain_for = [&](const key& k) -> std::string_view {
    if (k.entry.match == config::dkim_entry::match_kind::sender) return sender;
    return from ? std::string_view(*from) : std::string_view();
  };
  const auto first = std::ranges::find_if(keys_, [&](const auto& k) {
    const auto d = domain_for(*k);
    return !d.empty() && domain_matches(k->entry, d);
  });
  if (first == keys_.end()) return {"", "none"};
  const std::string& signing_domain = (*first)->entry.domain;

  const std::vector<std::string> names = smtp::dkim::signed_names(m.fields);
  const std::string headers = smtp::dkim::header_hash_input(m.fields, names);
  const std::string body_hash = smtp::base64::encode(sha256(smtp::dkim::relaxed_body(m.body)));
  dkim_outcome out;
  std::vector<std::string> selectors, failed, held_back;
  for (const auto& k : keys_) {
    const auto d = domain_for(*k);
    if (k->entry.domain != signing_domain || d.empty() || !domain_matches(k->entry, d)) continue;
    if (k->entry.require_dns) {
      const std::string why = dns && *dns
                                  ? (*dns)(k->entry.domain, k->entry.selector, k->public_key)
                                  : std::string("not checked");
      if (!why.empty()) {
        held_back.push_back("not signed with " + k->entry.selector + ", DNS record " + why);
        continue;
      }
    }
    std::vector<smtp::dkim::tag> tags = {
        {"v", "1"},
        {"a", k->ed25519 ? "ed25519-sha256" : "rsa-sha256"},
        {"c", "relaxed/relaxed"},
        {"d", k->entry.domain},
        {"s", k->entry.selector},
        {"t", std::to_string(now)},
    };
    if (k->entry.expire) tags.push_back({"x", std::to_string(now + k->entry.expire->count())});
    tags.push_back({"h", join(names, ":")});
    tags.push_back({"bh", body_hash});
    tags.push_back({"b", ""});
    // The field with an empty b=, canonicalized, without its CRLF, ends the data (3.7).
    std::string data = headers + smtp::dkim::relaxed_header(smtp::dkim::fold_signature(tags));
    data.resize(data.size() - 2);
    const std::string sig = signature(*k, data);
    if (sig.empty()) {
      failed.push_back(k->entry.selector);
      continue;
    }
    tags.back().value = smtp::base64::encode(sig);
    out.fields += smtp::dkim::fold_signature(tags) + "\r\n";
    selectors.push_back(k->entry.selector);
  }
  const std::string held =
      held_back.empty() ? "" : " (require_dns: " + join(held_back, "; ") + ")";
  if (selectors.empty()) {
    out.log = "none" + held;
    if (!failed.empty())
      spdlog::error("dkim: signing for {} failed (selectors {}): message left unsigned",
                    signing_domain, join(failed, ","));
    return out;
  }
  out.log = signing_domain + "/" + join(selectors, ",") + held;
  return out;
}

struct dkim_service::pool {
  boost::asio::thread_pool threads{std::clamp(std::thread::hardware_concurrency(), 1u, 2u)};
};

dkim_service::dkim_service(const config& cfg) : cfg_(cfg), pool_(std::make_unique<pool>()) {}

dkim_service::~dkim_service() { pool_->threads.join(); }

std::expected<std::string, std::string> dkim_service::load() {
  auto loaded = dkim_signer::load(cfg_.dkim);
  if (!loaded) return std::unexpected(loaded.error());
  current_ = std::move(*loaded);
  if (cfg_.dkim.empty()) return std::string("dkim: no [[dkim]] keys, messages are not signed");
  return "dkim: signing with " + current_->describe();
}

void dkim_service::set_dns_gate(dkim_dns_gate gate) {
  gate_ = std::make_shared<const dkim_dns_gate>(std::move(gate));
}

void dkim_service::sign(std::string message, std::string envelope_sender,
                        std::function<void(std::string, std::string)> done) const {
  if (!current_ || !enabled()) return done(std::move(message), "none");
  boost::asio::post(pool_->threads, [signer = current_, gate = gate_, message = std::move(message),
                                     sender = std::move(envelope_sender),
                                     done = std::move(done)]() mutable {
    const auto now = std::chrono::duration_cast<std::chrono::seconds>(
                         std::chrono::system_clock::now().time_since_epoch())
                         .count();
    dkim_outcome r = signer->sign(message, sender, now, gate.get());
    if (!r.fields.empty()) message.insert(0, r.fields);
    done(std::move(message), std::move(r.log));
  });
}

}  // namespace relayd
