// The control socket behind relayctl (protocol in control.hpp). Requests are
// parsed with limits (one line, 64 KiB); listing (queue and dead spool) and
// stats go through the spool in batches with short read transactions, so a huge
// queue never sits in memory at once. Spool writes are awaited with a work guard,
// so a shutdown never leaves one reporting to a stopped I/O context.
#include "relayd/control.hpp"

#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/json.hpp>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>

#include "relayd/async_call.hpp"
#include "relayd/metrics.hpp"
#include "relayd/scheduler.hpp"

namespace relayd {
namespace json = boost::json;
using unix_socket = asio::local::stream_protocol::socket;

namespace {

constexpr std::size_t max_request = 64 * 1024;
constexpr std::size_t list_batch = 1000;

std::int64_t seconds(std::int64_t us) { return us / 1'000'000; }

const char* rcpt_state_name(queue::rcpt_state s) {
  switch (s) {
    case queue::rcpt_state::pending: return "pending";
    case queue::rcpt_state::delivered: return "delivered";
    case queue::rcpt_state::failed: return "failed";
  }
  return "unknown";
}

// The message as relayctl -j prints it (DESIGN.md, relayctl).
json::object message_json(const queue::envelope_record& r, const config& cfg, bool in_flight) {
  bool deferred = false;
  json::array rcpts;
  for (const auto& rc : r.recipients) {
    if (rc.state == queue::rcpt_state::pending && rc.attempts > 0) deferred = true;
    rcpts.push_back(json::object{
        {"address", rc.address},
        {"state", rcpt_state_name(rc.state)},
        {"attempts", rc.attempts},
        {"last_reply", rc.last_reply},
        {"next_attempt", seconds(std::max(rc.next_attempt_us, r.arrival_us))},
        {"expires", seconds(r.arrival_us) + cfg.queue.max_lifetime.count()},
    });
  }
  const char* state = (r.flags & queue::flag_held) ? "held" : deferred ? "deferred" : "active";
  return json::object{
      {"id", r.id},
      {"state", state},
      {"size", r.size},
      {"arrival", seconds(r.arrival_us)},
      {"sender", r.sender},
      {"in_flight", in_flight},
      {"recipients", std::move(rcpts)},
  };
}

// A dead-spool entry as relayctl dead list --json prints it (control.hpp):
// its failed recipients only (entries of earlier versions also kept delivered ones).
json::object dead_json(const queue::envelope_record& r) {
  json::array rcpts;
  for (const auto& rc : r.recipients) {
    if (rc.state != queue::rcpt_state::failed) continue;
    rcpts.push_back(json::object{
        {"address", rc.address},
        {"reason", rc.reason.empty() ? std::string("unknown") : rc.reason},
        {"reply_code", rc.reply_code},
        {"status", rc.status},
        {"last_reply", rc.last_reply},
        {"remote_host", rc.remote_host},
        {"attempts", rc.attempts},
        {"first_attempt", seconds(rc.first_attempt_us)},
        {"last_attempt", seconds(rc.last_attempt_us)},
    });
  }
  return json::object{
      {"id", r.id},
      {"size", r.size},
      {"arrival", seconds(r.arrival_us)},
      {"sender", r.sender},
      {"failed_at", seconds(queue::failed_at(r))},
      {"recipients", std::move(rcpts)},
  };
}

std::int64_t now_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// "ids":[...] or "all":true; nullopt when neither is given.
std::optional<std::vector<std::string>> target_ids(const json::object& req) {
  if (auto* all = req.if_contains("all"); all && all->is_bool() && all->get_bool())
    return std::vector<std::string>{};
  auto* arr = req.if_contains("ids") ? req.at("ids").if_array() : nullptr;
  if (!arr || arr->empty()) return std::nullopt;
  std::vector<std::string> ids;
  for (const auto& v : *arr)
    if (v.is_string()) ids.emplace_back(v.get_string());
  return ids;
}

std::string error_line(std::string_view what) {
  return json::serialize(json::object{{"ok", false}, {"error", what}}) + "\n";
}

// True when something accepts connections on `path` (another relayd).
bool socket_alive(const std::string& path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  std::strncpy(sa.sun_path, path.c_str(), sizeof(sa.sun_path) - 1);
  bool alive = ::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) == 0;
  ::close(fd);
  return alive;
}

// Awaits a spool operation that reports (result, count). The work guard keeps
// the I/O context running until the report has been delivered.
template <typename Start>
auto counted_call(asio::io_context& io, Start start) {
  return from_callback<void(queue::result, std::size_t)>(
      [&io, start = std::move(start)](auto done) mutable {
        start([done = std::move(done), guard = asio::make_work_guard(io)](queue::result r,
                                                                          std::size_t n) mutable {
          done(std::move(r), n);
          guard.reset();
        });
      });
}

// "1 entry", "2 entries".
std::string entries(std::size_t n) {
  return fmt::format("{} entr{}", n, n == 1 ? "y" : "ies");
}

}  // namespace

control_server::control_server(asio::io_context& io, const config& cfg, queue::spool& spool)
    : io_(io), cfg_(cfg), spool_(spool), acceptor_(io), purge_timer_(io) {}

control_server::~control_server() = default;

std::expected<void, std::string> control_server::start() {
  const std::string& path = cfg_.control.socket;
  if (path.size() >= sizeof(sockaddr_un::sun_path))
    return std::unexpected(path + ": path too long for a Unix socket");
  std::error_code fec;
  auto parent = std::filesystem::path(path).parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent, fec);
  if (fec) return std::unexpected(parent.string() + ": " + fec.message());
  if (std::filesystem::exists(path, fec)) {
    if (socket_alive(path)) return std::unexpected(path + ": another relayd is running");
    std::filesystem::remove(path, fec);  // stale socket of a previous run
  }
  boost::system::error_code ec;
  asio::local::stream_protocol::endpoint ep(path);
  acceptor_.open(ep.protocol(), ec);
  if (!ec) acceptor_.bind(ep, ec);
  if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return std::unexpected(path + ": " + ec.message());
  if (::chmod(path.c_str(), 0660) != 0)
    return std::unexpected(path + ": chmod: " + std::strerror(errno));
  spdlog::info("control socket {}", path);
  asio::co_spawn(io_, accept_loop(), asio::detached);
  asio::co_spawn(io_, purge_loop(), [](std::exception_ptr e) {
    if (!e) return;
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& ex) {
      spdlog::error("dead spool retention: {}", ex.what());
    }
  });
  return {};
}

void control_server::stop() {
  stopped_ = true;
  purge_timer_.cancel();
  boost::system::error_code ec;
  if (!acceptor_.is_open()) return;
  acceptor_.close(ec);
  std::filesystem::remove(cfg_.control.socket, ec);
}

// [queue] dead_retention: at start, then every tenth of it (1 s to 1 h).
awaitable<void> control_server::purge_loop() {
  namespace chrono = std::chrono;
  const chrono::seconds retention = cfg_.queue.dead_retention;
  if (retention.count() <= 0) co_return;
  const auto every =
      std::clamp<chrono::seconds>(retention / 10, chrono::seconds(1), chrono::hours(1));
  const std::int64_t retention_us = chrono::duration_cast<chrono::microseconds>(retention).count();
  while (!stopped_) {
    const std::int64_t cutoff = now_us() - retention_us;
    auto [res, n] = co_await counted_call(
        io_, [&](auto done) { spool_.purge_dead_older_than(cutoff, std::move(done)); });
    if (res.code != queue::status::ok) {
      spdlog::error("dead spool: cannot purge expired entries: {}", res.detail);
    } else if (n != 0) {
      spdlog::info("dead spool: purged {} older than dead_retention ({}s)", entries(n),
                   retention.count());
    }
    if (stopped_) co_return;
    purge_timer_.expires_after(every);
    co_await purge_timer_.async_wait(use_tuple);
  }
}

awaitable<std::string> control_server::dead_list(unix_socket& sock) {
  std::string after, out;
  std::uint64_t count = 0, bytes = 0;
  for (;;) {
    out.clear();
    std::size_t visited = 0;
    after = spool_.scan_dead(after, list_batch, [&](const queue::envelope_record& r) {
      ++visited;
      ++count;
      bytes += r.size;
      out += json::serialize(dead_json(r));
      out += '\n';
    });
    if (!out.empty()) {
      auto [wec, wn] = co_await asio::async_write(sock, asio::buffer(out), use_tuple);
      if (wec) co_return std::string();
    }
    if (visited < list_batch) break;
  }
  co_return json::serialize(json::object{{"ok", true}, {"entries", count}, {"bytes", bytes}}) +
      "\n";
}

// The census of metrics.hpp (same states as relayd_queue_messages), in batches.
awaitable<std::string> control_server::stats() {
  constexpr std::size_t batch = 1000;
  queue_census census(now_us());
  std::uint64_t messages = 0, bytes = 0;
  std::string after;
  for (;;) {
    std::size_t seen = 0;
    after = spool_.scan(after, batch, [&](const queue::envelope_record& r) {
      ++seen;
      ++messages;
      bytes += r.size;
      census.add(r);
    });
    if (seen < batch) break;
    co_await asio::post(io_.get_executor(), asio::use_awaitable);
  }
  auto& g = census.gauges;
  g.dead = spool_.dead_count();
  g.spool_bytes = spool_.used_bytes();
  g.spool_max_bytes = effective_spool_max(cfg_.spool, g.spool_bytes, cfg_.queue.max_spool_size,
                                          cfg_.queue.min_free_disk);
  json::object st{
      {"active", g.active},
      {"deferred", g.deferred},
      {"held", g.held},
      {"dead", g.dead},
      {"messages", messages},
      {"message_bytes", bytes},
      {"in_flight", scheduler_ ? scheduler_->in_flight_count() : std::size_t{0}},
      {"oldest_age_seconds", static_cast<std::int64_t>(g.oldest_age_seconds)},
      {"spool_bytes", g.spool_bytes},
      {"spool_max_bytes", g.spool_max_bytes},
  };
  co_return json::serialize(json::object{{"ok", true}, {"stats", std::move(st)}}) + "\n";
}

// dead_replay / dead_purge.
awaitable<std::string> control_server::dead_action(std::string_view cmd, const json::object& req) {
  auto ids = target_ids(req);
  if (!ids) co_return error_line(fmt::format("{}: give \"ids\" or \"all\"", cmd));
  const bool replay = cmd == "dead_replay";
  const std::vector<std::string> named = *ids;
  auto [res, n] = co_await counted_call(io_, [&](auto done) {
    if (replay) {
      spool_.replay_dead(std::move(*ids), now_us(), std::move(done));
    } else {
      spool_.purge_dead(std::move(*ids), std::move(done));
    }
  });
  const bool all = named.empty();
  if (res.code == queue::status::ok || (all && res.code == queue::status::not_found)) {
    spdlog::info("control: {} {} of the dead spool", replay ? "replayed" : "purged", entries(n));
    // The scheduler may be asleep until a later due time: these are due now.
    if (replay && n != 0 && scheduler_) scheduler_->rescan(false);
    co_return json::serialize(json::object{{"ok", true}, {"count", n}}) + "\n";
  }
  if (res.code == queue::status::not_found) {
    co_return error_line(named.size() == 1
                             ? named[0] + ": no such dead-spool entry"
                             : std::string("none of these dead-spool entries exists"));
  }
  co_return error_line(fmt::format("{} failed: {}", replay ? "replay" : "purge", res.detail));
}

awaitable<void> control_server::accept_loop() {
  for (;;) {
    auto [ec, sock] = co_await acceptor_.async_accept(use_tuple);
    if (ec == asio::error::operation_aborted || !acceptor_.is_open()) co_return;
    if (ec) continue;
    asio::co_spawn(io_, serve(std::move(sock)), [](std::exception_ptr e) {
      if (!e) return;
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& ex) {
        spdlog::error("control: {}", ex.what());
      }
    });
  }
}

awaitable<void> control_server::serve(unix_socket sock) {
  std::string line;
  auto [ec, n] = co_await asio::async_read_until(
      sock, asio::dynamic_buffer(line, max_request), '\n', use_tuple);
  if (ec) {
    if (ec == asio::error::not_found)
      co_await asio::async_write(sock, asio::buffer(error_line("request too long")), use_tuple);
    co_return;
  }
  line.resize(n - 1);

  json::error_code jec;
  json::value req = json::parse(line, jec);
  const json::object* obj = jec ? nullptr : req.if_object();
  const json::string* cmd = obj && obj->contains("cmd") ? obj->at("cmd").if_string() : nullptr;
  if (!cmd) {
    co_await asio::async_write(sock, asio::buffer(error_line("bad request: want {\"cmd\":...}")),
                               use_tuple);
    co_return;
  }

  std::string out;
  if (*cmd == "list") {
    std::string after;
    std::uint64_t count = 0, bytes = 0;
    for (;;) {
      out.clear();
      std::size_t visited = 0;
      after = spool_.scan(after, list_batch, [&](const queue::envelope_record& r) {
        ++visited;
        ++count;
        bytes += r.size;
        out += json::serialize(message_json(r, cfg_, scheduler_ && scheduler_->in_flight(r.id)));
        out += '\n';
      });
      if (visited == 0) break;
      auto [wec, wn] = co_await asio::async_write(sock, asio::buffer(out), use_tuple);
      if (wec) co_return;
      if (visited < list_batch) break;
    }
    out = json::serialize(json::object{{"ok", true}, {"messages", count}, {"bytes", bytes}}) + "\n";
  } else if (*cmd == "show") {
    const json::string* id = obj->contains("id") ? obj->at("id").if_string() : nullptr;
    auto rec = id ? spool_.get(*id) : std::nullopt;
    auto body = rec ? spool_.body(*id) : std::nullopt;
    if (!id) {
      out = error_line("show: missing \"id\"");
    } else if (!rec || !body) {
      out = error_line(std::string(*id) + ": no such message");
    } else {
      auto m = message_json(*rec, cfg_, scheduler_ && scheduler_->in_flight(rec->id));
      m["client_ip"] = rec->client_ip;
      m["helo"] = rec->helo;
      out = json::serialize(json::object{
                {"ok", true}, {"message", std::move(m)}, {"content_length", body->size()}}) +
            "\n";
      out += *body;
    }
  } else if (*cmd == "delete") {
    std::vector<std::string> ids;
    bool all = obj->contains("all") && obj->at("all").is_bool() && obj->at("all").get_bool();
    if (auto* arr = obj->contains("ids") ? obj->at("ids").if_array() : nullptr) {
      for (const auto& v : *arr)
        if (v.is_string()) ids.emplace_back(v.get_string());
    }
    if (all) ids.clear();
    if (!all && ids.empty()) {
      out = error_line("delete: give \"ids\" or \"all\"");
    } else {
      auto [res, deleted] = co_await from_callback<void(queue::result, std::size_t)>(
          [&](auto done) { spool_.remove(ids, std::move(done)); });
      if (res.code == queue::status::ok || (all && res.code == queue::status::not_found)) {
        spdlog::info("control: deleted {} message(s)", deleted);
        out = json::serialize(json::object{{"ok", true}, {"deleted", deleted}}) + "\n";
      } else if (res.code == queue::status::not_found) {
        out = error_line(ids.size() == 1 ? ids[0] + ": no such message"
                                         : std::string("none of these messages exists"));
      } else {
        out = error_line("delete failed: " + res.detail);
      }
    }
  } else if (*cmd == "flush" || *cmd == "requeue" || *cmd == "hold" || *cmd == "release") {
    auto ids = *cmd == "flush" ? std::optional<std::vector<std::string>>(std::vector<std::string>{})
                               : target_ids(*obj);
    if (!ids) {
      out = error_line(fmt::format("{}: give \"ids\" or \"all\"", std::string_view(*cmd)));
    } else {
      const bool some = !ids->empty();
      const std::string what(*cmd);
      std::vector<std::string> named = *ids;
      auto [res, n] = co_await from_callback<void(queue::result, std::size_t)>([&](auto done) {
        if (what == "hold" || what == "release")
          spool_.set_held(std::move(*ids), what == "hold", std::move(done));
        else
          spool_.reschedule(std::move(*ids), now_us(), std::move(done));
      });
      if (res.code == queue::status::ok || (!some && res.code == queue::status::not_found)) {
        spdlog::info("control: {} {} message(s)", what, n);
        if (scheduler_ && what != "hold") scheduler_->rescan(what == "flush");
        out = json::serialize(json::object{{"ok", true}, {"count", n}}) + "\n";
      } else if (res.code == queue::status::not_found) {
        out = error_line(named.size() == 1 ? named[0] + ": no such message"
                                           : std::string("none of these messages exists"));
      } else {
        out = error_line(what + " failed: " + res.detail);
      }
    }
  } else if (*cmd == "dead_list") {
    out = co_await dead_list(sock);
    if (out.empty()) co_return;
  } else if (*cmd == "dead_show") {
    const json::string* id = obj->contains("id") ? obj->at("id").if_string() : nullptr;
    auto rec = id ? spool_.get_dead(*id) : std::nullopt;
    auto body = rec ? spool_.dead_body(*id) : std::nullopt;
    if (!id) {
      out = error_line("dead_show: missing \"id\"");
    } else if (!rec || !body) {
      out = error_line(std::string(*id) + ": no such dead-spool entry");
    } else {
      auto e = dead_json(*rec);
      e["client_ip"] = rec->client_ip;
      e["helo"] = rec->helo;
      out = json::serialize(json::object{
                {"ok", true}, {"entry", std::move(e)}, {"content_length", body->size()}}) +
            "\n";
      out += *body;
    }
  } else if (*cmd == "dead_replay" || *cmd == "dead_purge") {
    out = co_await dead_action(std::string_view(*cmd), *obj);
  } else if (*cmd == "stats") {
    out = co_await stats();
  } else {
    out = error_line(fmt::format("unknown command \"{}\"", std::string_view(*cmd)));
  }
  co_await asio::async_write(sock, asio::buffer(out), use_tuple);
}

}  // namespace relayd
