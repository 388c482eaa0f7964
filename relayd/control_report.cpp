// The report command of the control socket (relayctl report): the records of
// events_report_log.hpp in the asked window, counted by events_report.hpp.
// The events committed before the request are written first (the record's
// writer wakes once a second). The day files are read in 1 MiB pieces,
// yielding to the I/O thread between pieces as the other bulk commands do
// between batches. A file that cannot be read, or a damaged line, is skipped
// with a warning: the report says how many lines it skipped.
#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <array>
#include <boost/json.hpp>
#include <cerrno>
#include <cstring>

#include "queue/clock.hpp"
#include "relayd/async_call.hpp"
#include "relayd/control_handlers.hpp"
#include "relayd/delivery_scheduler.hpp"
#include "relayd/events_log.hpp"
#include "relayd/events_report.hpp"
#include "relayd/events_report_log.hpp"

namespace relayd {
namespace proto = control_protocol;
namespace key = control_protocol::key;

namespace {

constexpr std::size_t piece = 1u << 20;

awaitable<std::string> report(control_context& ctx, const proto::request& req, const line_writer&) {
  const std::int64_t now = queue::wall_clock_us() / 1'000'000;
  const std::int64_t since = now - req.since_seconds, until = now - req.before_seconds + 1;
  report_summary summary(since, until);
  const std::string dir = report_dir(ctx.cfg.spool);
  if (ctx.cfg.events.report_days == 0)
    co_return proto::error_line("no report: [events] report_days is 0");
  // The record's writer wakes once a second: what has happened counts now.
  if (event_log* events = ctx.sched ? ctx.sched->events() : nullptr)
    co_await from_callback<void()>([&](auto done) { events->flush_report(std::move(done)); });
  for (const auto& path : report_files(dir, since, until)) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      spdlog::warn("report: cannot read {}: {} (skipped)", path, std::strerror(errno));
      continue;
    }
    std::string pending;  // a line not yet ended
    std::uint64_t damaged_before = 0;
    std::vector<char> buf(piece);
    for (;;) {
      const ssize_t n = ::read(fd, buf.data(), buf.size());
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        spdlog::warn("report: cannot read {}: {} (the rest is skipped)", path, std::strerror(errno));
        break;
      }
      if (n == 0) break;
      pending.append(buf.data(), static_cast<std::size_t>(n));
      std::size_t start = 0;
      for (std::size_t nl; (nl = pending.find('\n', start)) != std::string::npos; start = nl + 1)
        if (nl > start && !summary.add_line(std::string_view(pending).substr(start, nl - start)))
          ++damaged_before;
      pending.erase(0, start);
      co_await asio::post(ctx.io.get_executor(), asio::use_awaitable);
    }
    ::close(fd);
    // A last line without its end is one being written, or one a crash cut.
    if (!pending.empty() && !summary.add_line(pending)) ++damaged_before;
    if (damaged_before != 0)
      spdlog::warn("report: {}: {} damaged line(s) skipped", path, damaged_before);
  }
  co_return proto::ok_line({{key::report, summary.to_json(req.top)}});
}

constexpr std::array<control_command, 1> commands{{{proto::verb::report, report}}};

}  // namespace

std::span<const control_command> control_report_commands() { return commands; }

}  // namespace relayd
