// MX resolution (see mx_resolver.hpp): the lookup logic on top of ares_driver.
// Behaviour chosen where the RFCs leave room:
//  - "MX 0 ." alone is a null MX; a root exchange among other MX records is
//    ignored and the others are used (RFC 7505 says it MUST NOT be mixed).
//  - MX exchanges that are IP addresses (RFC 5321 5.1: must be names) or not
//    valid host names are ignored; if none remain the result is not_found.
//  - At most max_mx_hosts (the most preferred) are resolved, A and AAAA in
//    parallel; addresses list IPv6 before IPv4. A host whose lookup failed
//    temporarily is kept without addresses when another host has addresses.
//  - Cache: ok for the minimum TTL of the records used (at most a day), never
//    when part of the answer failed temporarily; not_found and null_mx for the
//    SOA negative TTL (RFC 2308) or the null MX record's TTL, else 5 minutes;
//    retry and fail are never cached. options.cache_entries bounds each of the
//    two caches (MX results, host addresses); least recently used goes first.
//    Identical concurrent lookups share one query. Equal preferences are
//    shuffled for every caller, cached or not.
//  - Completions are always posted to the io_context, never run inline.
//    cancel() posts retry to everything outstanding; the destructor drops
//    outstanding and already-posted completions without running them.
#include "dns/mx_resolver.hpp"

#include <ares.h>

#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <random>
#include <stdexcept>
#include <unordered_map>

#include "dns/ares_driver.hpp"
#include "dns/names.hpp"
#include "dns/ttl_cache.hpp"
#include "dns/wire.hpp"

namespace dns {

std::string_view to_string(outcome o) {
  switch (o) {
    case outcome::ok:
      return "ok";
    case outcome::retry:
      return "retry";
    case outcome::fail:
      return "fail";
    case outcome::not_found:
      return "not_found";
    case outcome::null_mx:
      return "null_mx";
  }
  return "unknown";
}

namespace {

using namespace std::chrono_literals;
using detail::message;
using std::chrono::seconds;

constexpr std::size_t max_mx_hosts = 20;
constexpr seconds max_ttl = 24h;
constexpr seconds default_negative_ttl = 5min;
constexpr seconds max_negative_ttl = 1h;

seconds positive_ttl(std::uint32_t ttl) {
  return std::min(seconds(ttl), max_ttl);
}

seconds negative_ttl_of(const unsigned char* abuf, int alen) {
  if (abuf == nullptr || alen <= 0) return default_negative_ttl;
  auto ttl = detail::negative_ttl(message(abuf, static_cast<std::size_t>(alen)));
  return ttl ? std::min(seconds(*ttl), max_negative_ttl) : default_negative_ttl;
}

// How a status reads in a detail string.
std::string status_text(int status) {
  switch (status) {
    case ARES_ESERVFAIL:
      return "SERVFAIL";
    case ARES_EREFUSED:
      return "REFUSED";
    case ARES_ENOTFOUND:
      return "NXDOMAIN";
    case ARES_EFORMERR:
      return "FORMERR";
    case ARES_ENOTIMP:
      return "NOTIMP";
    case ARES_ETIMEOUT:
      return "timeout";
    case ARES_ECONNREFUSED:  // c-ares 1.18 also says this when every server failed
      return "connection refused or no usable answer from any server";
    case ARES_EBADRESP:
      return "malformed reply";
    case ARES_ECANCELLED:
    case ARES_EDESTRUCTION:
      return "cancelled";
    default:
      return ares_strerror(status);
  }
}

// Permanent only for what the name itself causes; anything unknown is temporary,
// so a resolver problem never bounces mail.
bool bad_name_status(int status) {
  return status == ARES_EBADNAME || status == ARES_EBADQUERY;
}

mx_result make_result(outcome what, std::string detail) {
  mx_result r;
  r.what = what;
  r.detail = std::move(detail);
  return r;
}

// The A/AAAA answer for one name, as cached and shared between lookups.
struct host_answer {
  outcome what = outcome::retry;       // ok, not_found, retry or fail
  std::vector<std::string> addresses;  // IPv6 first, then IPv4
  seconds ttl{0};
  std::string detail;
  bool cacheable = false;  // false when one family failed temporarily
  bool secure = false;     // options.dnssec: both families' answers had the AD bit
  std::string canonical;   // the name the addresses are at, when a CNAME led there
};

bool ad_bit(const unsigned char* abuf, int alen) {
  return abuf != nullptr && alen > 0 &&
         detail::authenticated_data(message(abuf, static_cast<std::size_t>(alen)));
}

// One family's query result inside a host lookup.
struct family_answer {
  enum { ok, nodata, nxdomain, temporary, bad_name } kind = temporary;
  std::vector<std::string> addresses;
  seconds ttl{0};
  int status = ARES_SUCCESS;
  bool secure = false;  // the reply had the AD bit
  std::string owner;    // ok: the name the addresses are at
};

family_answer classify_family(int status, const unsigned char* abuf, int alen, std::uint16_t type) {
  family_answer f;
  f.status = status;
  f.secure = ad_bit(abuf, alen);
  if (status == ARES_SUCCESS) {
    auto parsed = abuf
                      ? detail::parse_addresses(message(abuf, static_cast<std::size_t>(alen)), type)
                      : std::nullopt;
    if (!parsed) {
      f.status = ARES_EBADRESP;
      return f;
    }
    if (parsed->addresses.empty()) {  // e.g. only a CNAME chain: no data
      f.kind = family_answer::nodata;
      f.ttl = negative_ttl_of(abuf, alen);
      return f;
    }
    f.kind = family_answer::ok;
    f.addresses = std::move(parsed->addresses);
    f.owner = std::move(parsed->owner);
    f.ttl = positive_ttl(parsed->ttl);
  } else if (status == ARES_ENODATA) {
    f.kind = family_answer::nodata;
    f.ttl = negative_ttl_of(abuf, alen);
  } else if (status == ARES_ENOTFOUND) {
    f.kind = family_answer::nxdomain;
    f.ttl = negative_ttl_of(abuf, alen);
  } else if (bad_name_status(status)) {
    f.kind = family_answer::bad_name;
  }
  return f;
}

host_answer combine(const std::string& name, const family_answer& v6, const family_answer& v4) {
  host_answer a;
  const family_answer* both[] = {&v6, &v4};
  const char* label[] = {"AAAA", "A"};
  bool have_ttl = false;
  for (int i = 0; i < 2; ++i) {
    const auto& f = *both[i];
    a.addresses.insert(a.addresses.end(), f.addresses.begin(), f.addresses.end());
    if (a.canonical.empty() && !f.owner.empty()) {
      auto owner = detail::normalize_name(f.owner);  // a CNAME's target: another name
      if (owner && *owner != detail::normalize_name(name)) a.canonical = std::move(*owner);
    }
    if (f.kind != family_answer::temporary && f.kind != family_answer::bad_name) {
      a.ttl = have_ttl ? std::min(a.ttl, f.ttl) : f.ttl;
      have_ttl = true;
    }
  }
  const family_answer* temp = nullptr;
  for (int i = 0; i < 2; ++i)
    if (both[i]->kind == family_answer::temporary && !temp) {
      temp = both[i];
      a.detail = std::string(label[i]) + " lookup for " + name + ": " + status_text(temp->status);
    }
  a.secure = v6.secure && v4.secure && temp == nullptr;
  if (!a.addresses.empty()) {
    a.what = outcome::ok;
    a.cacheable = temp == nullptr;
  } else if (temp) {
    a.what = outcome::retry;
  } else if (v6.kind == family_answer::bad_name || v4.kind == family_answer::bad_name) {
    a.what = outcome::fail;
    a.detail = name + ": malformed host name";
  } else {
    a.what = outcome::not_found;
    a.cacheable = true;
    a.detail = (v6.kind == family_answer::nxdomain || v4.kind == family_answer::nxdomain)
                   ? name + ": no such host (NXDOMAIN)"
                   : name + ": no A/AAAA records";
  }
  return a;
}

void shuffle_ties(std::vector<mx_host>& hosts, std::mt19937_64& rng) {
  for (auto first = hosts.begin(); first != hosts.end();) {
    auto last = std::find_if(first, hosts.end(),
                             [&](const mx_host& h) { return h.preference != first->preference; });
    std::shuffle(first, last, rng);
    first = last;
  }
}

}  // namespace

struct mx_resolver::impl {
  using mx_callback = std::function<void(mx_result)>;
  using host_callback = std::function<void(const host_answer&)>;

  struct host_op {
    std::string name;
    std::vector<host_callback> waiters;
    bool done = false;
    int pending = 2;
    family_answer v6, v4;
  };

  struct mx_op {
    std::string domain;
    std::vector<mx_callback> waiters;
    bool done = false;
    bool implicit = false;
    std::vector<mx_host> hosts;  // sorted by preference
    std::vector<host_answer> answers;
    std::size_t pending = 0;
    seconds ttl{0};
    std::string note;  // records ignored, for the detail of an ok result
    bool secure = false;  // the MX answer (or its denial) had the AD bit
  };

  impl(boost::asio::io_context& io, resolver_options o)
      : io(io),
        options(std::move(o)),
        mx_cache(options.cache_entries),
        host_cache(options.cache_entries),
        rng(std::random_device{}()) {
    detail::driver_options d;
    for (const auto& s : options.servers) {
      auto entry = detail::server_csv_entry(s);
      if (!entry)
        throw std::runtime_error("DNS server \"" + s +
                                 "\": expected an IP address with an optional port, "
                                 "e.g. 127.0.0.1:5353 or [::1]:53");
      d.servers.push_back(std::move(*entry));
    }
    if (options.timeout <= std::chrono::milliseconds::zero())
      throw std::runtime_error("DNS timeout must be positive");
    if (options.tries < 1) throw std::runtime_error("DNS tries must be at least 1");
    d.timeout = options.timeout;
    d.tries = options.tries;
    driver = std::make_unique<detail::ares_driver>(io, d);
  }

  ~impl() {
    alive.reset();  // completions already posted are dropped
    for (auto& [name, op] : mx_ops) {
      op->done = true;
      op->waiters.clear();
    }
    for (auto& [name, op] : host_ops) {
      op->done = true;
      op->waiters.clear();
    }
    driver.reset();  // c-ares handlers run with ARES_EDESTRUCTION and find every op done
  }

  std::chrono::steady_clock::time_point now() const {
    return options.now ? options.now() : std::chrono::steady_clock::now();
  }

  // Posts any result to the io_context; dropped if the resolver is gone by then.
  template <class Result>
  void post_result(std::function<void(Result)> done, Result r) {
    boost::asio::post(io, [token = std::weak_ptr<char>(alive), done = std::move(done),
                           r = std::move(r)]() mutable {
      if (!token.expired()) done(std::move(r));
    });
  }

  void post(mx_callback done, mx_result r) {
    boost::asio::post(io, [token = std::weak_ptr<char>(alive), done = std::move(done),
                           r = std::move(r)]() mutable {
      if (!token.expired()) done(std::move(r));
    });
  }

  // Delivers a result with equal preferences in a fresh random order.
  void deliver(mx_callback done, mx_result r) {
    shuffle_ties(r.hosts, rng);
    post(std::move(done), std::move(r));
  }

  // --- A/AAAA of one name, shared by resolve_host, MX hosts and implicit MX ---
  // `done` may run before lookup_host returns (a cache hit).

  void lookup_host(const std::string& name, host_callback done) {
    seconds remaining{};
    if (const host_answer* hit = host_cache.find(name, now(), &remaining)) {
      host_answer a = *hit;
      a.ttl = remaining;
      done(a);
      return;
    }
    if (auto it = host_ops.find(name); it != host_ops.end()) {
      it->second->waiters.push_back(std::move(done));
      return;
    }
    auto op = std::make_shared<host_op>();
    op->name = name;
    op->waiters.push_back(std::move(done));
    host_ops.emplace(name, op);
    for (std::uint16_t type : {detail::type_aaaa, detail::type_a}) {
      driver->query(
          name, type,
          [this, op, type](int status, const unsigned char* abuf, int alen) {
            if (op->done) return;
            (type == detail::type_aaaa ? op->v6 : op->v4) =
                classify_family(status, abuf, alen, type);
            if (--op->pending == 0) finish_host(op);
          },
          options.dnssec);
    }
  }

  void finish_host(const std::shared_ptr<host_op>& op) {
    op->done = true;
    host_ops.erase(op->name);
    host_answer a = combine(op->name, op->v6, op->v4);
    if (a.cacheable && a.ttl > seconds::zero()) host_cache.put(op->name, a, now() + a.ttl);
    for (auto& w : op->waiters) w(a);
  }

  // --- MX ---

  void start_mx(const std::string& domain, mx_callback done) {
    if (auto it = mx_ops.find(domain); it != mx_ops.end()) {
      it->second->waiters.push_back(std::move(done));
      return;
    }
    auto op = std::make_shared<mx_op>();
    op->domain = domain;
    op->waiters.push_back(std::move(done));
    mx_ops.emplace(domain, op);
    driver->query(
        domain, detail::type_mx,
        [this, op](int status, const unsigned char* abuf, int alen) {
          if (!op->done) on_mx_answer(op, status, abuf, alen);
        },
        options.dnssec);
  }

  void on_mx_answer(const std::shared_ptr<mx_op>& op, int status, const unsigned char* abuf,
                    int alen) {
    const std::string& d = op->domain;
    op->secure = ad_bit(abuf, alen);
    if (status == ARES_SUCCESS) {
      auto records =
          abuf ? detail::parse_mx(message(abuf, static_cast<std::size_t>(alen))) : std::nullopt;
      if (!records)
        return finish(op, make_result(outcome::retry, "MX lookup for " + d + ": malformed reply"));
      if (!records->empty()) return use_mx_records(op, std::move(*records));
      status = ARES_ENODATA;  // e.g. only a CNAME in the answer
    }
    if (status == ARES_ENODATA) return start_implicit(op, negative_ttl_of(abuf, alen));
    if (status == ARES_ENOTFOUND)
      return finish(op, make_result(outcome::not_found, d + ": no such domain (NXDOMAIN)"),
                    negative_ttl_of(abuf, alen));
    if (bad_name_status(status))
      return finish(op, make_result(outcome::fail, d + ": malformed domain name"));
    finish(op, make_result(outcome::retry, "MX lookup for " + d + ": " + status_text(status)));
  }

  static bool is_root(const std::string& exchange) { return exchange.empty() || exchange == "."; }

  void use_mx_records(const std::shared_ptr<mx_op>& op, std::vector<detail::mx_record> records) {
    const std::string& d = op->domain;
    if (records.size() == 1 && is_root(records.front().exchange))
      return finish(
          op, make_result(outcome::null_mx, d + ": null MX (RFC 7505): the domain accepts no mail"),
          std::min(positive_ttl(records.front().ttl), max_negative_ttl));
    std::uint32_t ttl = records.front().ttl;
    std::vector<std::string> ignored;
    for (const auto& r : records) {
      ttl = std::min(ttl, r.ttl);
      if (is_root(r.exchange)) {
        ignored.push_back("null MX mixed with other MX records");
        continue;
      }
      if (detail::parse_ip(r.exchange) || detail::parse_domain_literal(r.exchange).is_literal) {
        ignored.push_back("MX " + r.exchange + " is an IP address, not a host name");
        continue;
      }
      auto name = detail::normalize_name(r.exchange);
      if (!name) {
        ignored.push_back("MX \"" + r.exchange + "\" is not a valid host name");
        continue;
      }
      auto same = std::find_if(op->hosts.begin(), op->hosts.end(),
                               [&](const mx_host& h) { return h.name == *name; });
      if (same != op->hosts.end())
        same->preference = std::min(same->preference, r.preference);
      else
        op->hosts.push_back({std::move(*name), r.preference, {}});
    }
    for (const auto& why : ignored) op->note += (op->note.empty() ? "" : "; ") + why;
    op->ttl = positive_ttl(ttl);
    if (op->hosts.empty())
      return finish(op,
                    make_result(outcome::not_found, d + ": no usable MX host (" + op->note + ")"),
                    std::min(op->ttl, max_negative_ttl));
    std::stable_sort(op->hosts.begin(), op->hosts.end(), [](const mx_host& a, const mx_host& b) {
      return a.preference < b.preference;
    });
    if (op->hosts.size() > max_mx_hosts) op->hosts.resize(max_mx_hosts);
    op->answers.resize(op->hosts.size());
    op->pending = op->hosts.size();
    auto self = op;  // the loop may finish the op (cache hits) before it ends
    for (std::size_t i = 0; i < self->hosts.size(); ++i) {
      lookup_host(self->hosts[i].name, [this, self, i](const host_answer& a) {
        if (self->done) return;
        self->answers[i] = a;
        if (--self->pending == 0) finish_mx_hosts(self);
      });
    }
  }

  void finish_mx_hosts(const std::shared_ptr<mx_op>& op) {
    mx_result r;
    bool temporary = false, cacheable = true;
    std::string temp_detail, perm_detail;
    seconds ttl = op->ttl;
    std::vector<mx_host> hosts;
    for (std::size_t i = 0; i < op->hosts.size(); ++i) {
      const host_answer& a = op->answers[i];
      if (a.what == outcome::ok) {
        op->hosts[i].addresses = a.addresses;
        op->hosts[i].secure = a.secure;
        op->hosts[i].canonical = a.canonical;
        ttl = std::min(ttl, a.ttl);
        cacheable = cacheable && a.cacheable;
        if (!a.cacheable) temp_detail += (temp_detail.empty() ? "" : "; ") + a.detail;
        hosts.push_back(std::move(op->hosts[i]));
      } else if (a.what == outcome::retry) {
        temporary = true;
        cacheable = false;
        temp_detail += (temp_detail.empty() ? "" : "; ") + a.detail;
        hosts.push_back(std::move(op->hosts[i]));  // kept without addresses
      } else {
        ttl = std::min(ttl, a.ttl);
        perm_detail += (perm_detail.empty() ? "" : "; ") + a.detail;
      }
    }
    const bool any_address = std::any_of(hosts.begin(), hosts.end(),
                                         [](const mx_host& h) { return !h.addresses.empty(); });
    const std::string& d = op->domain;
    if (any_address) {
      r.what = outcome::ok;
      r.secure = op->secure;
      r.hosts = std::move(hosts);
      for (const auto* part : {&op->note, &temp_detail, &perm_detail})
        if (!part->empty()) r.detail += (r.detail.empty() ? "" : "; ") + *part;
      return finish(op, std::move(r), cacheable ? ttl : seconds::zero());
    }
    if (temporary)
      return finish(op, make_result(outcome::retry,
                                    d + ": no MX host address available (" + temp_detail + ")"));
    finish(op,
           make_result(outcome::not_found, d + ": no MX host has an address (" + perm_detail + ")"),
           std::min(ttl, max_negative_ttl));
  }

  void start_implicit(const std::shared_ptr<mx_op>& op, seconds mx_negative_ttl) {
    op->implicit = true;
    lookup_host(op->domain, [this, op, mx_negative_ttl](const host_answer& a) {
      if (op->done) return;
      const std::string& d = op->domain;
      if (a.what == outcome::ok) {
        mx_result r;
        r.what = outcome::ok;
        r.implicit = true;
        r.secure = op->secure && a.secure;  // the MX denial and the addresses
        r.detail = a.cacheable ? d + ": no MX records, implicit MX"
                               : d + ": no MX records, implicit MX; " + a.detail;
        r.hosts.push_back({d, 0, a.addresses, a.secure, a.canonical});
        return finish(op, std::move(r),
                      a.cacheable ? std::min(mx_negative_ttl, a.ttl) : seconds::zero());
      }
      if (a.what == outcome::not_found)
        return finish(op,
                      make_result(outcome::not_found, a.detail.ends_with("(NXDOMAIN)")
                                                          ? d + ": no such domain (NXDOMAIN)"
                                                          : d + ": no MX and no A/AAAA records"),
                      std::min(mx_negative_ttl, a.ttl));
      finish(op, make_result(a.what, d + ": no MX records; " + a.detail));
    });
  }

  // Ends an MX op: cache (ttl > 0 and not retry/fail), then every waiter.
  void finish(const std::shared_ptr<mx_op>& op, mx_result r, seconds ttl = seconds::zero()) {
    op->done = true;
    mx_ops.erase(op->domain);
    if (ttl > seconds::zero() && r.what != outcome::retry && r.what != outcome::fail)
      mx_cache.put(op->domain, r, now() + ttl);
    for (auto& w : op->waiters) deliver(std::move(w), r);
  }

  void cancel() {
    auto mxs = std::exchange(mx_ops, {});
    auto hosts = std::exchange(host_ops, {});
    for (auto& [name, op] : mxs) {
      op->done = true;
      for (auto& w : op->waiters)
        post(std::move(w), make_result(outcome::retry, "lookup for " + name + " cancelled"));
    }
    for (auto& [name, op] : hosts) {
      op->done = true;
      host_answer a;
      a.what = outcome::retry;
      a.detail = "lookup for " + name + " cancelled";
      for (auto& w : op->waiters) w(a);  // MX waiters are done already: no-ops
    }
    driver->cancel();  // c-ares handlers run with ARES_ECANCELLED and find their op done
  }

  boost::asio::io_context& io;
  resolver_options options;
  detail::ttl_cache<mx_result> mx_cache;
  detail::ttl_cache<host_answer> host_cache;
  std::unordered_map<std::string, std::shared_ptr<mx_op>> mx_ops;
  std::unordered_map<std::string, std::shared_ptr<host_op>> host_ops;
  std::mt19937_64 rng;
  std::shared_ptr<char> alive = std::make_shared<char>();
  std::unique_ptr<detail::ares_driver> driver;
};

mx_resolver::mx_resolver(boost::asio::io_context& io, resolver_options options)
    : impl_(std::make_unique<impl>(io, std::move(options))) {}

mx_resolver::~mx_resolver() = default;

void mx_resolver::resolve_mx(std::string domain, std::function<void(mx_result)> done) {
  if (auto literal = detail::parse_domain_literal(domain); literal.is_literal) {
    if (!literal.valid)
      return impl_->post(std::move(done),
                         make_result(outcome::fail, domain + ": malformed address literal"));
    mx_result r;
    r.what = outcome::ok;
    r.hosts.push_back({literal.address, 0, {literal.address}});
    return impl_->post(std::move(done), std::move(r));
  }
  auto name = detail::normalize_name(domain);
  if (!name || detail::parse_ip(*name))
    return impl_->post(std::move(done),
                       make_result(outcome::fail, "\"" + domain + "\": malformed domain name"));
  if (const mx_result* hit = impl_->mx_cache.find(*name, impl_->now()))
    return impl_->deliver(std::move(done), *hit);
  impl_->start_mx(*name, std::move(done));
}

void mx_resolver::resolve_host(std::string host, std::function<void(mx_result)> done) {
  // "[192.0.2.1]", "[IPv6:2001:db8::1]", "[::1]", a bare address, or a name,
  // possibly bracketed ("[mail.example.org]", the relayhost form without MX).
  std::string_view text = host;
  std::optional<std::string> address;
  if (auto literal = detail::parse_domain_literal(text); literal.valid) {
    address = literal.address;
  } else {
    if (literal.is_literal) {
      if (text.size() < 3 || text.back() != ']')
        return impl_->post(std::move(done),
                           make_result(outcome::fail, "\"" + host + "\": malformed host name"));
      text = text.substr(1, text.size() - 2);
    }
    address = detail::parse_ip(text);
  }
  if (address) {
    mx_result r;
    r.what = outcome::ok;
    r.hosts.push_back({*address, 0, {*address}});
    return impl_->post(std::move(done), std::move(r));
  }
  auto name = detail::normalize_name(text);
  if (!name)
    return impl_->post(std::move(done),
                       make_result(outcome::fail, "\"" + host + "\": malformed host name"));
  impl_->lookup_host(*name, [self = impl_.get(), name = *name,
                             done = std::move(done)](const host_answer& a) mutable {
    mx_result r = make_result(a.what, a.detail);
    if (a.what == outcome::ok) r.hosts.push_back({name, 0, a.addresses});
    self->post(std::move(done), std::move(r));
  });
}

void mx_resolver::resolve_txt(std::string name, std::function<void(txt_result)> done) {
  auto post = [self = impl_.get()](std::function<void(txt_result)> d, txt_result r) {
    self->post_result(std::move(d), std::move(r));
  };
  auto normalized = detail::normalize_name(name);
  if (!normalized) {
    txt_result r;
    r.what = outcome::fail;
    r.detail = "\"" + name + "\": malformed domain name";
    return post(std::move(done), std::move(r));
  }
  // The driver is owned by impl_ and runs this handler at most once, before it goes.
  impl_->driver->query(*normalized, detail::type_txt,
                       [post, name = *normalized, done = std::move(done)](
                           int status, const unsigned char* abuf, int alen) mutable {
                         txt_result r;
                         const std::string what = "looking up TXT for " + name;
                         if (status == ARES_SUCCESS) {
                           auto records =
                               abuf ? detail::parse_txt(message(abuf, static_cast<std::size_t>(alen)))
                                    : std::nullopt;
                           if (!records) {
                             r.detail = "malformed reply " + what;
                           } else if (records->empty()) {
                             r.what = outcome::not_found;
                             r.detail = "no TXT record " + what;
                           } else {
                             r.what = outcome::ok;
                             r.records = std::move(*records);
                             r.ttl = detail::answer_ttl(message(abuf, static_cast<std::size_t>(alen)),
                                                        detail::type_txt)
                                         .value_or(0);
                           }
                         } else if (status == ARES_ENOTFOUND || status == ARES_ENODATA) {
                           r.what = outcome::not_found;
                           r.detail = (status == ARES_ENODATA ? "no TXT record " : "NXDOMAIN ") + what;
                           if (abuf)
                             r.ttl = detail::negative_ttl(message(abuf, static_cast<std::size_t>(alen)))
                                         .value_or(0);
                         } else {
                           r.what = bad_name_status(status) ? outcome::fail : outcome::retry;
                           r.detail = status_text(status) + " " + what;
                         }
                         post(std::move(done), std::move(r));
                       });
}

void mx_resolver::resolve_tlsa(std::string name, std::function<void(tlsa_result)> done) {
  auto normalized = detail::normalize_name(name);
  if (!normalized) {
    tlsa_result r;
    r.what = outcome::fail;
    r.detail = "\"" + name + "\": malformed domain name";
    return impl_->post_result(std::move(done), std::move(r));
  }
  // The driver is owned by impl_ and runs this handler at most once, before it goes.
  impl_->driver->query(
      *normalized, type_tlsa,
      [self = impl_.get(), name = *normalized, done = std::move(done)](
          int status, const unsigned char* abuf, int alen) mutable {
        tlsa_result r;
        r.secure = ad_bit(abuf, alen);
        const std::string what = "looking up TLSA for " + name;
        if (status == ARES_SUCCESS) {
          auto rdata = abuf ? detail::parse_rdata(message(abuf, static_cast<std::size_t>(alen)),
                                                  type_tlsa)
                            : std::nullopt;
          if (!rdata) {
            r.detail = "malformed reply " + what;
          } else {
            r.what = rdata->empty() ? outcome::not_found : outcome::ok;
            if (rdata->empty()) r.detail = "no TLSA record " + what;
            for (const auto& one : *rdata) {
              if (auto rec = parse_tlsa_rdata(one))
                r.records.push_back(std::move(*rec));
              else
                ++r.malformed;
            }
          }
        } else if (status == ARES_ENOTFOUND || status == ARES_ENODATA) {
          r.what = outcome::not_found;
          r.detail = (status == ARES_ENODATA ? "no TLSA record " : "NXDOMAIN ") + what;
        } else {
          r.what = bad_name_status(status) ? outcome::fail : outcome::retry;
          r.detail = status_text(status) + " " + what;
        }
        self->post_result(std::move(done), std::move(r));
      },
      true);
}

void mx_resolver::cancel() {
  impl_->cancel();
}

}  // namespace dns
