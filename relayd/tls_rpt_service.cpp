// Implements tls_rpt_service.hpp. The counts live in `state` behind a mutex:
// record() and the rounds run on the I/O thread, the writer thread only copies
// the changed entries out and writes them. A round owns the shared state and
// its own progress, so a lookup that answers after stop() touches nothing gone.
#include "relayd/tls_rpt_service.hpp"

#include <fcntl.h>
#include <pthread.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "dns/mx_resolver.hpp"
#include "queue/record.hpp"
#include "queue/spool.hpp"
#include "relayd/config.hpp"
#include "relayd/delivery_scheduler.hpp"
#include "relayd/http_client.hpp"
#include "relayd/net.hpp"
#include "relayd/read_file.hpp"
#include "smtp/text.hpp"

namespace relayd {
namespace fs = std::filesystem;

namespace {

std::int64_t now_seconds() { return static_cast<std::int64_t>(std::time(nullptr)); }
std::int64_t day_of(std::int64_t t) { return day_start_of(t); }

// A finished day whose reports still fail is tried every hour until this long
// after its start (two days after its end), then dropped with a log line.
constexpr std::int64_t give_up_after_s = 3 * 86400;

// A domain as a file name: letters, digits, '.', '-' and '_' stay (after
// lower-casing), anything else is %HH, and a leading '.' too.
std::string file_name(std::string_view domain) {
  static constexpr char hex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : smtp::text::lower(std::string(domain))) {
    if ((std::isalnum(c) && c < 0x80) || c == '-' || c == '_' || (c == '.' && !out.empty())) {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

std::optional<std::string> domain_of_file(std::string_view name) {
  std::string out;
  for (std::size_t i = 0; i < name.size(); ++i) {
    if (name[i] != '%') {
      out += name[i];
      continue;
    }
    if (i + 2 >= name.size()) return std::nullopt;
    const std::string hex(name.substr(i + 1, 2));
    char* end = nullptr;
    const long v = std::strtol(hex.c_str(), &end, 16);
    if (end != hex.c_str() + 2) return std::nullopt;
    out += static_cast<char>(v);
    i += 2;
  }
  return out;
}

// Writes `data` to `path` so that a crash leaves the old or the new content.
bool write_durably(const fs::path& path, const std::string& data, std::string& error) {
  const fs::path tmp = path.string() + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    error = tmp.string() + ": " + std::strerror(errno);
    return false;
  }
  std::size_t at = 0;
  while (at < data.size()) {
    const ssize_t n = ::write(fd, data.data() + at, data.size() - at);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    at += static_cast<std::size_t>(n);
  }
  const bool ok = at == data.size() && ::fdatasync(fd) == 0;
  if (!ok) error = tmp.string() + ": " + std::strerror(errno);
  ::close(fd);
  if (!ok || ::rename(tmp.c_str(), path.c_str()) != 0) {
    if (ok) error = path.string() + ": " + std::strerror(errno);
    ::unlink(tmp.c_str());
    return false;
  }
  if (const int dfd = ::open(path.parent_path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
      dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  return true;
}

}  // namespace

tls_rpt_service::settings tls_rpt_settings(const config& cfg) {
  tls_rpt_service::settings s;
  s.dir = (fs::path(cfg.spool) / "tls-rpt").string();
  s.from = cfg.delivery.tls_rpt_from;
  const auto at = s.from.rfind('@');
  s.submitter = smtp::text::lower(at == std::string::npos ? cfg.hostname : s.from.substr(at + 1));
  s.organization =
      cfg.delivery.tls_rpt_organization.empty() ? s.submitter : cfg.delivery.tls_rpt_organization;
  s.hostname = cfg.hostname;
  return s;
}

struct tls_rpt_service::state {
  state(asio::io_context& io_, settings s_, queue::spool& spool_, scheduler& sched_,
        dns::mx_resolver& dns_)
      : io(io_), s(std::move(s_)), spool(spool_), sched(sched_), dns(dns_), timer(io_) {}
  asio::io_context& io;
  settings s;
  queue::spool& spool;
  scheduler& sched;
  dns::mx_resolver& dns;
  asio::steady_timer timer;

  std::mutex mu;  // guards everything below
  std::condition_variable wake;
  bool stopping = false;
  bool started = false;
  std::map<std::int64_t, std::map<std::string, tls_rpt::domain_day>> days;
  std::set<std::pair<std::int64_t, std::string>> dirty;
  std::set<std::int64_t> full_logged;
  std::set<std::int64_t> sending;  // days with a round under way
  // Destinations ("mailto:ADDR" or the https: URL) that have a finished day's
  // report of a domain, while another of its destinations still fails: a later
  // round does not send it twice (kept in memory only).
  std::set<std::tuple<std::int64_t, std::string, std::string>> served;
  std::thread writer;

  bool was_served(std::int64_t day, const std::string& domain, const std::string& dest) {
    std::lock_guard lock(mu);
    return served.contains({day, domain, dest});
  }
  void mark_served(std::int64_t day, const std::string& domain, const std::string& dest) {
    std::lock_guard lock(mu);
    served.insert({day, domain, dest});
  }

  fs::path file_of(std::int64_t day, const std::string& domain) const {
    return fs::path(s.dir) / day_name(day) / file_name(domain);
  }

  void load() {
    std::error_code ec;
    if (!fs::exists(s.dir, ec)) return;
    std::size_t files = 0;
    for (const auto& d : fs::directory_iterator(s.dir, ec)) {
      const auto day = parse_day_name(d.path().filename().string());
      if (!day || !d.is_directory(ec)) continue;
      for (const auto& f : fs::directory_iterator(d.path(), ec)) {
        const std::string name = f.path().filename().string();
        if (name.ends_with(".tmp")) continue;
        auto domain = domain_of_file(name);
        auto text = read_file(f.path().string());
        auto counts = text ? tls_rpt::domain_day::decode(*text)
                           : std::expected<tls_rpt::domain_day, std::string>(
                                 std::unexpected(text.error()));
        if (!domain || !counts) {
          spdlog::warn("tls-rpt: {}: not a day's counts ({}): left alone", f.path().string(),
                       counts ? "bad file name" : counts.error());
          continue;
        }
        days[*day][*domain] = std::move(*counts);
        ++files;
      }
    }
    if (files) spdlog::info("tls-rpt: {} stored domain-days read from {}", files, s.dir);
  }

  // The writer thread: every flush_interval, or when woken to stop.
  void write_loop() {
    std::unique_lock lock(mu);
    for (;;) {
      wake.wait_for(lock, s.flush_interval, [&] { return stopping; });
      write_dirty(lock);
      if (stopping) return;
    }
  }

  void write_dirty(std::unique_lock<std::mutex>& lock) {
    std::vector<std::pair<fs::path, std::string>> out;
    for (const auto& [day, domain] : dirty) {
      auto d = days.find(day);
      if (d == days.end()) continue;
      auto e = d->second.find(domain);
      if (e == d->second.end()) continue;
      out.emplace_back(file_of(day, domain), e->second.encode());
    }
    dirty.clear();
    lock.unlock();
    for (const auto& [path, data] : out) {
      std::error_code ec;
      fs::create_directories(path.parent_path(), ec);
      std::string error;
      if (ec || !write_durably(path, data, error))
        spdlog::error("tls-rpt: cannot store counts: {}", ec ? ec.message() : error);
    }
    lock.lock();
  }

  void forget(std::int64_t day, const std::string& domain) {
    {
      std::lock_guard lock(mu);
      if (auto d = days.find(day); d != days.end()) {
        d->second.erase(domain);
        if (d->second.empty()) days.erase(d);
      }
      dirty.erase({day, domain});
      for (auto it = served.lower_bound({day, domain, std::string()});
           it != served.end() && std::get<0>(*it) == day && std::get<1>(*it) == domain;)
        it = served.erase(it);
    }
    std::error_code ec;
    fs::remove(file_of(day, domain), ec);
    fs::remove(fs::path(s.dir) / day_name(day), ec);  // only when empty
  }
};

namespace {

using state_ptr = std::shared_ptr<tls_rpt_service::state>;

struct round {
  std::int64_t day = 0;
  bool past = false;  // a finished day: reported domains are forgotten
  std::map<std::string, tls_rpt::domain_day> domains;
  std::size_t pending = 0;
  std::vector<std::string> lines;
  std::function<void(std::string)> done;
};

void finish_domain(const state_ptr& s, const std::shared_ptr<round>& r) {
  if (--r->pending > 0) return;
  {
    std::lock_guard lock(s->mu);
    s->sending.erase(r->day);
  }
  std::string all;
  for (const auto& l : r->lines) all += l + "\n";
  if (r->done) r->done(std::move(all));
}

// Queues one report for `domain` to `to`; the line says how it went.
void queue_report(const state_ptr& s, const std::shared_ptr<round>& r, const std::string& domain,
                  const tls_rpt::domain_day& counts, const std::string& to,
                  std::function<void(bool)> after) {
  const std::string id = s->spool.new_id();
  tls_rpt::report_info info{s->s.organization, s->s.from, s->s.submitter,
                            day_name(r->day) + "." + id + "@" + s->s.submitter, r->day};
  const std::int64_t now = now_seconds();
  auto message = tls_rpt::report_message(info, domain, counts, to,
                                         "<" + id + ".tlsrpt@" + s->s.hostname + ">", now);
  if (!message) {
    r->lines.push_back(domain + ": report to " + to + " not built: " + message.error());
    after(false);
    return;
  }
  queue::envelope_record e;
  e.id = id;
  e.arrival_us = now * 1'000'000;
  e.size = message->size();
  e.sender = s->s.from;
  e.client_ip = "127.0.0.1";
  e.helo = s->s.hostname;
  queue::recipient rcpt;
  rcpt.address = to;
  rcpt.next_attempt_us = e.arrival_us;
  e.recipients.push_back(std::move(rcpt));
  s->spool.enqueue(std::move(e), std::move(*message),
                   [s, r, domain, to, id, arrival = now * 1'000'000,
                    after = std::move(after)](queue::result res) mutable {
                     asio::post(s->io, [s, r, domain, to, id, arrival, res,
                                        after = std::move(after)] {
                       if (res.code != queue::status::ok) {
                         r->lines.push_back(domain + ": report to " + to +
                                            " not queued: " + res.detail);
                         spdlog::error("tls-rpt: {} report for {} to {} not queued: {}",
                                       day_name(r->day), domain, to, res.detail);
                         after(false);
                         return;
                       }
                       s->sched.notify_enqueued(arrival);
                       r->lines.push_back(domain + ": report queued as " + id + " to " + to);
                       spdlog::info("{}: tls-rpt report for {} ({}) to <{}>", id, domain,
                                    day_name(r->day), to);
                       after(true);
                     });
                   });
}

// Posts one report for `domain` to an https: destination (RFC 8460 5.3.1): the
// gzipped JSON as application/tlsrpt+gzip, certificate and host name verified;
// any 2xx answer is a delivery. The line says how it went.
awaitable<void> post_report(state_ptr s, std::shared_ptr<round> r, std::string domain,
                            std::string url, http_url where, std::string body,
                            std::function<void(bool)> after) {
  std::expected<http_answer, std::string> answer = std::unexpected("not sent");
  try {
    http_client client(where);
    http_post_request req;
    req.content_type = "application/tlsrpt+gzip";
    req.body = std::move(body);
    req.max_answer = 16 * 1024;
    answer = co_await client.post(s->io, std::move(req));
  } catch (const std::exception& e) {
    answer = std::unexpected(std::string("error: ") + e.what());
  }
  const bool ok = answer && answer->status >= 200 && answer->status < 300;
  if (ok) {
    r->lines.push_back(domain + ": report posted to " + url + " (HTTP " +
                       std::to_string(answer->status) + ")");
    spdlog::info("tls-rpt: {} report for {} posted to {} (HTTP {})", day_name(r->day), domain,
                 url, answer->status);
  } else {
    const std::string why =
        answer ? "HTTP " + std::to_string(answer->status) : answer.error();
    r->lines.push_back(domain + ": report to " + url + " not posted: " + why);
    spdlog::warn("tls-rpt: {} report for {} not posted to {}: {}", day_name(r->day), domain, url,
                 why);
  }
  after(ok);
}

// Sends `domain`'s report to one destination of its record: a mail queued for
// a mailto:, a POST for an https: URL. `after` gets whether it went.
void send_report(const state_ptr& s, const std::shared_ptr<round>& r, const std::string& domain,
                 const tls_rpt::domain_day& counts, bool https, const std::string& dest,
                 std::function<void(bool)> after) {
  if (!https) {
    queue_report(s, r, domain, counts, dest, std::move(after));
    return;
  }
  auto where = parse_http_url(dest, false);
  if (!where) {
    // Nothing a later round could do better: counted as done.
    r->lines.push_back(domain + ": https destination " + dest + " is not a usable URL; skipped");
    after(true);
    return;
  }
  tls_rpt::report_info info{s->s.organization, s->s.from, s->s.submitter,
                            day_name(r->day) + "." + s->spool.new_id() + "@" + s->s.submitter,
                            r->day};
  auto body = tls_rpt::gzip(tls_rpt::report_json(info, domain, counts));
  if (!body) {
    r->lines.push_back(domain + ": report to " + dest + " not built: " + body.error());
    after(false);
    return;
  }
  asio::co_spawn(s->io,
                 post_report(s, r, domain, dest, std::move(*where), std::move(*body),
                             std::move(after)),
                 asio::detached);
}

void report_domain(const state_ptr& s, const std::shared_ptr<round>& r, const std::string& domain) {
  s->dns.resolve_txt("_smtp._tls." + domain, [s, r, domain](dns::txt_result t) {
    if (t.what == dns::outcome::retry) {
      r->lines.push_back(domain + ": _smtp._tls lookup failed for now (" + t.detail +
                         "); tried again later");
      finish_domain(s, r);
      return;
    }
    auto where = t.what == dns::outcome::ok
                     ? tls_rpt::parse_record(t.records)
                     : std::expected<tls_rpt::destinations, std::string>(
                           std::unexpected("no _smtp._tls record"));
    if (!where) {
      r->lines.push_back(domain + ": no report (" + where.error() + ")");
      if (r->past) s->forget(r->day, domain);
      finish_domain(s, r);
      return;
    }
    // (https?, destination, the key it is remembered by once served)
    std::vector<std::tuple<bool, std::string, std::string>> todo;
    for (const auto& to : where->mailto) todo.emplace_back(false, to, "mailto:" + to);
    for (const auto& url : where->https) todo.emplace_back(true, url, url);
    std::erase_if(todo, [&](const auto& d) {
      if (!r->past || !s->was_served(r->day, domain, std::get<2>(d))) return false;
      r->lines.push_back(domain + ": already sent to " + std::get<1>(d));
      return true;
    });
    if (todo.empty()) {
      if (r->past) s->forget(r->day, domain);
      finish_domain(s, r);
      return;
    }
    // The domain is done when every destination has its report (a mail queued,
    // a POST answered 2xx); otherwise the next round tries the others again.
    auto left = std::make_shared<std::size_t>(todo.size());
    auto all_ok = std::make_shared<bool>(true);
    const tls_rpt::domain_day& counts = r->domains.at(domain);
    for (auto& [https, dest, key] : todo) {
      send_report(s, r, domain, counts, https, dest,
                  [s, r, domain, key, left, all_ok](bool ok) {
                    if (ok && r->past) s->mark_served(r->day, domain, key);
                    *all_ok = *all_ok && ok;
                    if (--*left > 0) return;
                    if (r->past && !*all_ok && now_seconds() >= r->day + give_up_after_s) {
                      r->lines.push_back(domain + ": given up; the day ended over a day ago");
                      spdlog::warn("tls-rpt: {} report for {}: given up", day_name(r->day), domain);
                      s->forget(r->day, domain);
                    } else if (*all_ok && r->past) {
                      s->forget(r->day, domain);
                    }
                    finish_domain(s, r);
                  });
    }
  });
}

void start_round(const state_ptr& s, std::int64_t day, std::function<void(std::string)> done) {
  auto r = std::make_shared<round>();
  r->day = day;
  r->past = day < day_of(now_seconds());
  r->done = std::move(done);
  {
    std::lock_guard lock(s->mu);
    if (s->stopping || !s->sending.insert(day).second) {
      if (r->done) r->done(day_name(day) + ": a round for this day is under way\n");
      return;
    }
    if (auto d = s->days.find(day); d != s->days.end()) r->domains = d->second;
  }
  if (r->domains.empty()) {
    {
      std::lock_guard lock(s->mu);
      s->sending.erase(day);
    }
    if (r->done) r->done(day_name(day) + ": no TLS sessions recorded\n");
    return;
  }
  r->pending = r->domains.size();
  for (const auto& [domain, counts] : r->domains) report_domain(s, r, domain);
}

awaitable<void> hourly(state_ptr s) {
  for (;;) {
    std::vector<std::int64_t> past;
    {
      std::lock_guard lock(s->mu);
      if (s->stopping) co_return;
      const std::int64_t today = day_of(now_seconds());
      for (const auto& [day, domains] : s->days)
        if (day < today) past.push_back(day);
    }
    for (auto day : past)
      start_round(s, day, [day](std::string lines) {
        for (std::size_t at = 0, nl; (nl = lines.find('\n', at)) != std::string::npos; at = nl + 1)
          spdlog::info("tls-rpt {}: {}", day_name(day), lines.substr(at, nl - at));
      });
    s->timer.expires_after(std::chrono::hours(1));
    auto [ec] = co_await s->timer.async_wait(asio::as_tuple(asio::use_awaitable));
    if (ec == asio::error::operation_aborted) {
      std::lock_guard lock(s->mu);
      if (s->stopping) co_return;
    }
  }
}

}  // namespace

tls_rpt_service::tls_rpt_service(asio::io_context& io, settings s, queue::spool& spool,
                                 scheduler& sched, dns::mx_resolver& dns)
    : state_(std::make_shared<state>(io, std::move(s), spool, sched, dns)) {}

tls_rpt_service::~tls_rpt_service() { stop(); }

void tls_rpt_service::start() {
  state_->load();
  {
    std::lock_guard lock(state_->mu);
    state_->started = true;
  }
  state_->writer = std::thread([s = state_] {
    ::pthread_setname_np(::pthread_self(), "tls-rpt");  // for top -H, ps -L, perf
    s->write_loop();
  });
  asio::co_spawn(state_->io, hourly(state_), asio::detached);
}

void tls_rpt_service::stop() {
  {
    std::lock_guard lock(state_->mu);
    if (!state_->started || state_->stopping) return;
    state_->stopping = true;
  }
  state_->wake.notify_all();
  if (state_->writer.joinable()) state_->writer.join();
  state_->timer.cancel();
}

void tls_rpt_service::record(const tls_rpt::session& s) {
  if (s.applied.domain.empty()) return;
  const std::int64_t today = day_of(now_seconds());
  const std::string domain = smtp::text::lower(s.applied.domain);
  std::lock_guard lock(state_->mu);
  if (state_->stopping) return;
  auto& day = state_->days[today];
  auto it = day.find(domain);
  if (it == day.end()) {
    if (day.size() >= state_->s.max_domains_per_day) {
      if (state_->full_logged.insert(today).second)
        spdlog::warn("tls-rpt: {} policy domains counted today; more are not counted",
                     state_->s.max_domains_per_day);
      return;
    }
    it = day.emplace(domain, tls_rpt::domain_day{}).first;
  }
  it->second.add(s);
  state_->dirty.insert({today, domain});
}

void tls_rpt_service::send(std::int64_t day_start, std::function<void(std::string)> done) {
  start_round(state_, day_of(day_start), std::move(done));
}

}  // namespace relayd
