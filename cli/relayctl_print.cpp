// Implements relayctl_print.hpp. Field names come from control_protocol.hpp, so
// a field the daemon renames is a compile error here; a field missing from a
// reply prints as empty or 0 rather than failing. Times are shown in local time.
#include "cli/relayctl_print.hpp"

#include <fmt/core.h>
#include <fmt/format.h>

#include <boost/json.hpp>
#include <cstdio>
#include <ctime>
#include <functional>
#include <iterator>
#include <optional>
#include <vector>

#include "relayd/control_protocol.hpp"
#include "relayd/duration_text.hpp"

namespace relayctl {
namespace json = boost::json;
namespace proto = relayd::control_protocol;
namespace key = proto::key;
namespace verb = proto::verb;
using proto::get_bool;
using proto::get_int;
using proto::get_string;

namespace {

std::string local_time(std::int64_t t, const char* format) {
  std::time_t tt = static_cast<std::time_t>(t);
  std::tm tm{};
  localtime_r(&tt, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, format, &tm);
  return buf;
}

// "Mon Jan  1 12:00:00" as in postqueue, or "-" for 0 (never).
std::string short_time(std::int64_t t) {
  return t == 0 ? std::string("-") : local_time(t, "%a %b %e %H:%M:%S");
}

// "2024-01-01T12:00:00+0100" (one word, for key=value lines), or "-" for 0.
std::string iso_time(std::int64_t t) {
  return t == 0 ? std::string("-") : local_time(t, "%Y-%m-%dT%H:%M:%S%z");
}

std::string plural(long long n, const char* word) {
  return fmt::format("{} {}{}", n, word, n == 1 ? "" : "s");
}

// "-- 3 Kbytes in 2 Requests." as postqueue -p closes its list.
void print_total(std::uint64_t bytes, std::uint64_t count) {
  std::printf("-- %llu Kbytes in %llu Request%s.\n",
              static_cast<unsigned long long>((bytes + 1023) / 1024),
              static_cast<unsigned long long>(count), count == 1 ? "" : "s");
}

// A request with the filter (if any) added.
json::object filtered_request(std::string_view what, const queue_filter& f) {
  auto req = proto::make_request(what);
  proto::add_filter(req, f);
  return req;
}

// Whether a line of a listing is its final {"ok":...} line (message and entry
// objects start with "id"); if so, checks it (a failure ends relayctl).
bool final_line(std::string_view line) {
  if (!line.starts_with("{\"ok\"")) return false;
  json::error_code ec;
  auto v = json::parse(line, ec);
  if (ec || !v.is_object()) fail("bad reply from relayd: " + std::string(line.substr(0, 200)));
  check_ok(v.as_object());
  return true;
}

// Calls `visit` for every object of a listing; returns on the final line. One
// parser and a per-line arena for all lines: a listing of 100,000 messages
// allocates almost nothing per message. `idle` (if any) runs whenever the next
// line is not there yet (to flush what was printed, so a slow filtered listing
// shows its lines as they come).
template <typename Visit>
void read_listing(control_client& c, const json::object& request, Visit visit,
                  const std::function<void()>& idle = {}) {
  c.send(request);
  json::parser p;
  unsigned char arena[16384];
  for (;;) {
    if (idle && !c.line_ready()) idle();
    const std::string_view line = c.read_line();
    if (final_line(line)) return;
    json::monotonic_resource mr(arena, sizeof arena);
    p.reset(&mr);
    json::error_code ec;
    p.write(line.data(), line.size(), ec);  // a whole value, or an error
    if (ec) fail("bad reply from relayd: " + std::string(line.substr(0, 200)));
    const json::value v = p.release();
    if (!v.is_object()) fail("bad reply from relayd: " + std::string(line.substr(0, 200)));
    visit(v.get_object());
  }
}

// "Mon Jan  1 12:00:00" for the arrival times of a listing: the messages come in
// arrival order, so most share their second with the one before.
class arrival_text {
 public:
  const std::string& operator()(std::int64_t t) {
    if (t != last_ || text_.empty()) {
      last_ = t;
      text_ = local_time(t, "%a %b %e %H:%M:%S");
    }
    return text_;
  }

 private:
  std::int64_t last_ = 0;
  std::string text_;
};

template <typename Each>
void for_each_recipient(const json::object& m, Each each) {
  const auto* rs = m.if_contains(key::recipients);
  if (!rs || !rs->is_array()) return;
  for (const auto& rv : rs->get_array())
    if (rv.is_object()) each(rv.get_object());
}

// A request naming one ID, ALL, or (nullopt) none, narrowed by a filter (with
// no ID: every message it matches); returns the checked reply.
json::object request_for(control_client& c, std::string_view what,
                         const std::optional<std::string>& id, const queue_filter& f) {
  json::object req = !id         ? proto::make_request(what)
                     : *id == "ALL" ? proto::make_request(what, proto::targets{true, {}})
                                    : proto::make_request(what, proto::targets{false, {*id}});
  proto::add_filter(req, f);
  c.send(req);
  return c.read_ok();
}

std::optional<std::string> id_or_none(const std::string& id) {
  return id.empty() ? std::nullopt : std::optional(id);
}

// show / dead show: the record under `field`, then content_length octets of message.
struct fetched_record {
  json::object record;
  std::string content;
};

fetched_record fetch_record(control_client& c, std::string_view what, const std::string& id,
                            std::string_view field) {
  c.send(proto::make_request(what, id));
  auto o = c.read_ok();
  const auto* v = o.if_contains(field);
  if (!v || !v->is_object()) fail("bad reply from relayd: no " + std::string(field));
  fetched_record f{v->get_object(), {}};
  f.content = c.read_bytes(static_cast<std::size_t>(get_int(o, key::content_length)));
  return f;
}

// The head of a show: id, state, arrival (and failed_at for a dead entry), size,
// sender, client.
void print_record_head(const json::object& m, const std::string& state, bool dead) {
  constexpr const char* date = "%a, %d %b %Y %H:%M:%S %z";
  std::printf("id: %s\n", get_string(m, key::id).c_str());
  std::printf("state: %s\n", state.c_str());
  std::printf("arrival: %s\n", local_time(get_int(m, key::arrival), date).c_str());
  if (dead) std::printf("failed_at: %s\n", local_time(get_int(m, key::failed_at), date).c_str());
  std::printf("size: %lld\n", static_cast<long long>(get_int(m, key::size)));
  std::printf("sender: <%s>\n", get_string(m, key::sender).c_str());
  const std::string ip = get_string(m, key::client_ip);
  std::printf("client: %s (helo %s)\n", ip.empty() ? "local" : ip.c_str(),
              get_string(m, key::helo).c_str());
}

// A show's DSN parameters (RFC 3461) and local submitter, when the record has them:
//   ret: hdrs
//   envid: ABC123
//   submitter: uid=33 gid=33 pid=1234 user=www-data unit=php8.2-fpm.service
//   executable: /usr/bin/php8.2
void print_submission(const json::object& m) {
  if (auto ret = get_string(m, key::ret); !ret.empty()) std::printf("ret: %s\n", ret.c_str());
  if (auto envid = get_string(m, key::envid); !envid.empty())
    std::printf("envid: %s\n", envid.c_str());
  const auto* sv = m.if_contains(key::submitter);
  if (!sv || !sv->is_object()) return;
  const auto& who = sv->get_object();
  auto or_dash = [](std::string s) { return s.empty() ? std::string("-") : s; };
  std::printf("submitter: uid=%lld gid=%lld pid=%lld user=%s unit=%s\n",
              static_cast<long long>(get_int(who, key::uid)),
              static_cast<long long>(get_int(who, key::gid)),
              static_cast<long long>(get_int(who, key::pid)),
              or_dash(get_string(who, key::user)).c_str(),
              or_dash(get_string(who, key::unit)).c_str());
  std::printf("executable: %s\n", or_dash(get_string(who, key::executable)).c_str());
}

// " notify=success,failure orcpt=rfc822;a@b" for a recipient that has them.
void print_recipient_dsn(const json::object& r) {
  if (const auto* nv = r.if_contains(key::notify); nv && nv->is_array()) {
    std::string words;
    for (const auto& w : nv->get_array())
      if (w.is_string()) words += (words.empty() ? "" : ",") + std::string(w.get_string());
    if (!words.empty()) std::printf(" notify=%s", words.c_str());
  }
  if (auto orcpt = get_string(r, key::orcpt); !orcpt.empty()) std::printf(" orcpt=%s", orcpt.c_str());
}

// " route=NAME" for a recipient on a [[route]]; "" on the default route.
std::string route_suffix(const json::object& r) {
  const std::string name = get_string(r, key::route);
  return name.empty() || name == "default" ? std::string() : " route=" + name;
}

// Ends a show's recipient line with its last reply, if any.
void end_recipient_line(const json::object& r) {
  if (auto reply = get_string(r, key::last_reply); !reply.empty()) std::printf(" (%s)", reply.c_str());
  std::printf("\n");
}

// The blank line and the raw message that close a show.
int print_content(const std::string& content) {
  std::printf("\n");
  std::fwrite(content.data(), 1, content.size(), stdout);
  return 0;
}

// 1536 -> "1.5 MiB"-style sizes for stats.
std::string human_bytes(std::uint64_t b) {
  static constexpr const char* units[] = {"bytes", "KiB", "MiB", "GiB", "TiB", "PiB"};
  double v = static_cast<double>(b);
  std::size_t u = 0;
  while (v >= 1024 && u + 1 < std::size(units)) {
    v /= 1024;
    ++u;
  }
  return u == 0 ? fmt::format("{} bytes", b) : fmt::format("{:.1f} {}", v, units[u]);
}

}  // namespace

// A string field without copying it ("" when missing or not a string).
std::string_view text_of(const json::object& o, std::string_view k) {
  const auto* v = o.if_contains(k);
  return v && v->is_string() ? std::string_view(v->get_string()) : std::string_view();
}

int print_queue(control_client& c, const queue_filter& f) {
  std::uint64_t count = 0, bytes = 0;
  arrival_text arrival;
  auto req = filtered_request(verb::list, f);
  req[key::brief] = true;  // only what is printed here
  // The listing is formatted into one buffer written out in large pieces (a
  // million messages are four million lines).
  fmt::memory_buffer out;
  auto write_out = [&out] {
    std::fwrite(out.data(), 1, out.size(), stdout);
    out.clear();
  };
  constexpr std::string_view spaces = "                                                ";  // 48
  auto put = [&out](std::string_view s) { out.append(s.data(), s.data() + s.size()); };
  // `s` padded with spaces to `width` on the right (left = false) or the left.
  auto padded = [&](std::string_view s, std::size_t width, bool left) {
    const std::string_view pad = spaces.substr(0, width > s.size() ? width - s.size() : 0);
    if (left) put(pad);
    put(s);
    if (!left) put(pad);
  };
  read_listing(c, req, [&](const json::object& m) {
    if (count == 0)
      fmt::format_to(std::back_inserter(out), "{:<18}{:>8} {:<21}{}\n", "-Queue ID-", "--Size--",
                     "----Arrival Time----", "-Sender/Recipient-------");
    ++count;
    const auto size = get_int(m, key::size);
    bytes += static_cast<std::uint64_t>(size);
    const char mark = text_of(m, key::state) == proto::state::held ? '!'
                      : get_bool(m, key::in_flight)                ? '*'
                                                                   : ' ';
    const std::string_view sender = text_of(m, key::sender);
    // "%-16s%c %8lld %s  %s\n" as postqueue -p, without a format string per line
    padded(text_of(m, key::id), 16, false);
    out.push_back(mark);
    out.push_back(' ');
    const fmt::format_int size_text(size);
    padded(std::string_view(size_text.data(), size_text.size()), 8, true);
    out.push_back(' ');
    put(arrival(get_int(m, key::arrival)));
    put("  ");
    put(sender.empty() ? std::string_view("MAILER-DAEMON") : sender);
    out.push_back('\n');
    for_each_recipient(m, [&](const json::object& r) {
      if (text_of(r, key::state) != proto::state::pending) return;
      if (const auto reason = text_of(r, key::last_reply); !reason.empty()) {
        put(spaces);
        out.push_back('(');
        put(reason);
        put(")\n");
      }
      put(spaces);
      put(text_of(r, key::address));
      if (const auto route = text_of(r, key::route); !route.empty() && route != "default") {
        put(" route=");
        put(route);
      }
      out.push_back('\n');
    });
    out.push_back('\n');
    if (out.size() >= 64 * 1024) write_out();
  }, [&] {
    write_out();
    std::fflush(stdout);
  });
  write_out();
  if (count == 0) {
    std::printf("Mail queue is empty\n");
  } else {
    print_total(bytes, count);
  }
  return 0;
}

// The daemon's lines as they come (they are already one JSON object each),
// flushed whenever relayctl would wait for more: a filtered listing of a huge
// queue shows its first lines at once.
int print_queue_json(control_client& c, const queue_filter& f) {
  c.send(filtered_request(verb::list, f));
  for (;;) {
    const std::string_view line = c.read_line();
    if (final_line(line)) return 0;
    std::fwrite(line.data(), 1, line.size(), stdout);
    std::fputc('\n', stdout);
    if (!c.line_ready()) std::fflush(stdout);
  }
}

// qshape's table: a header of age columns, TOTAL, then the busiest domains.
int print_shape(control_client& c, const queue_filter& f, std::size_t top) {
  auto req = filtered_request(verb::shape, f);
  req[key::top] = top;
  c.send(req);
  const auto o = c.read_ok();
  auto counts_of = [](const json::object& x) {
    std::vector<std::uint64_t> out;
    if (const auto* a = x.if_contains(key::counts); a && a->is_array())
      for (const auto& v : a->get_array()) out.push_back(v.is_int64() ? v.get_int64() : 0);
    return out;
  };
  std::vector<std::pair<std::string, std::vector<std::uint64_t>>> rows;
  {
    json::object total;
    if (const auto* t = o.if_contains(key::total)) total[key::counts] = *t;
    rows.emplace_back("TOTAL", counts_of(total));
  }
  if (const auto* ds = o.if_contains(key::domains); ds && ds->is_array())
    for (const auto& d : ds->get_array())
      if (d.is_object()) rows.emplace_back(get_string(d.get_object(), key::domain), counts_of(d.get_object()));
  std::vector<std::string> head{"T"};
  for (int m : {5, 10, 20, 40, 80, 160, 320, 640, 1280}) head.push_back(std::to_string(m));
  head.emplace_back("1280+");
  // Each row: its total, then the age columns (missing ones as 0).
  std::vector<std::vector<std::string>> cells;
  std::size_t name_width = 0;
  std::vector<std::size_t> width(head.size());
  for (std::size_t i = 0; i < head.size(); ++i) width[i] = head[i].size();
  for (auto& [name, counts] : rows) {
    counts.resize(head.size() - 1);
    std::uint64_t sum = 0;
    for (auto n : counts) sum += n;
    std::vector<std::string> row{std::to_string(sum)};
    for (auto n : counts) row.push_back(std::to_string(n));
    for (std::size_t i = 0; i < row.size(); ++i) width[i] = std::max(width[i], row[i].size());
    name_width = std::max(name_width, name.size());
    cells.push_back(std::move(row));
  }
  std::printf("%*s", static_cast<int>(name_width), "");
  for (std::size_t i = 0; i < head.size(); ++i)
    std::printf(" %*s", static_cast<int>(width[i]), head[i].c_str());
  std::printf("\n");
  for (std::size_t r = 0; r < rows.size(); ++r) {
    std::printf("%*s", static_cast<int>(name_width), rows[r].first.c_str());
    for (std::size_t i = 0; i < cells[r].size(); ++i)
      std::printf(" %*s", static_cast<int>(width[i]), cells[r][i].c_str());
    std::printf("\n");
  }
  const auto domains = get_int(o, key::domain_count);
  if (static_cast<std::size_t>(domains) > rows.size() - 1)
    std::printf("(%lld more domain%s; --top N shows more)\n",
                static_cast<long long>(domains - static_cast<std::int64_t>(rows.size() - 1)),
                domains - static_cast<std::int64_t>(rows.size() - 1) == 1 ? "" : "s");
  return 0;
}

int delete_messages(control_client& c, const std::string& id, const queue_filter& f) {
  auto o = request_for(c, verb::remove, id_or_none(id), f);
  std::printf("relayctl: deleted %s\n", plural(get_int(o, key::deleted), "message").c_str());
  return 0;
}

int queue_action(control_client& c, std::string_view what, const std::string& id,
                 const queue_filter& f) {
  auto o = request_for(c, what, id_or_none(id), f);
  const char* done = what == verb::flush     ? "flushed"
                     : what == verb::requeue ? "requeued"
                     : what == verb::hold    ? "held"
                                             : "released";
  std::printf("relayctl: %s %s\n", done, plural(get_int(o, key::count), "message").c_str());
  return 0;
}

int show_message(control_client& c, const std::string& id) {
  auto [m, content] = fetch_record(c, verb::show, id, key::message);
  print_record_head(m, get_string(m, key::state), false);
  print_submission(m);
  for_each_recipient(m, [](const json::object& r) {
    std::printf("recipient: <%s> state=%s attempts=%lld", get_string(r, key::address).c_str(),
                get_string(r, key::state).c_str(),
                static_cast<long long>(get_int(r, key::attempts)));
    print_recipient_dsn(r);
    std::printf("%s", route_suffix(r).c_str());
    end_recipient_line(r);
  });
  return print_content(content);
}

// Like -p, one block per entry with its failed recipients, each under its
// reason class and last reply.
int dead_list(control_client& c, bool as_json, const queue_filter& f) {
  std::uint64_t count = 0, bytes = 0;
  read_listing(c, filtered_request(verb::dead_list, f), [&](const json::object& m) {
    ++count;
    bytes += static_cast<std::uint64_t>(get_int(m, key::size));
    if (as_json) {
      std::printf("%s\n", json::serialize(m).c_str());
      return;
    }
    if (count == 1)
      std::printf("%-18s%8s %-21s%s\n", "-Queue ID-", "--Size--", "-----Failed Time----",
                  "-Sender/Recipient-------");
    const std::string sender = get_string(m, key::sender);
    std::printf("%-16s  %8lld %s  %s\n", get_string(m, key::id).c_str(),
                static_cast<long long>(get_int(m, key::size)),
                short_time(get_int(m, key::failed_at)).c_str(),
                sender.empty() ? "MAILER-DAEMON" : sender.c_str());
    for_each_recipient(m, [](const json::object& r) {
      const std::string reply = get_string(r, key::last_reply);
      std::printf("%48s(%s%s%s)\n", "", get_string(r, key::reason).c_str(),
                  reply.empty() ? "" : ": ", reply.c_str());
      std::printf("%48s%s%s\n", "", get_string(r, key::address).c_str(), route_suffix(r).c_str());
    });
    std::printf("\n");
  });
  if (as_json) return 0;
  if (count == 0) {
    std::printf("Dead spool is empty\n");
  } else {
    print_total(bytes, count);
  }
  return 0;
}

int dead_show(control_client& c, const std::string& id) {
  auto [m, content] = fetch_record(c, verb::dead_show, id, key::entry);
  print_record_head(m, "dead", true);
  const auto failed_at = get_int(m, key::failed_at);
  for_each_recipient(m, [failed_at](const json::object& r) {
    const auto last = get_int(r, key::last_attempt);
    std::printf(
        "recipient: <%s> reason=%s attempts=%lld first_attempt=%s last_attempt=%s "
        "failed_at=%s",
        get_string(r, key::address).c_str(), get_string(r, key::reason).c_str(),
        static_cast<long long>(get_int(r, key::attempts)),
        iso_time(get_int(r, key::first_attempt)).c_str(), iso_time(last).c_str(),
        iso_time(last != 0 ? last : failed_at).c_str());
    if (auto code = get_int(r, key::reply_code); code != 0)
      std::printf(" reply_code=%lld", static_cast<long long>(code));
    if (auto st = get_string(r, key::status); !st.empty()) std::printf(" status=%s", st.c_str());
    if (auto host = get_string(r, key::remote_host); !host.empty())
      std::printf(" remote_host=%s", host.c_str());
    if (auto cause = get_string(r, key::cause); !cause.empty()) std::printf(" cause=%s", cause.c_str());
    if (auto cmd = get_string(r, key::in_reply_to); !cmd.empty())
      std::printf(" in_reply_to=\"%s\"", cmd.c_str());
    end_recipient_line(r);
  });
  return print_content(content);
}

int dead_action(control_client& c, const std::string& action, const std::string& id,
                const queue_filter& f) {
  const bool replay = action == "replay";
  auto o = request_for(c, replay ? verb::dead_replay : verb::dead_purge, id_or_none(id), f);
  const auto n = get_int(o, key::count);
  std::printf("relayctl: %s %lld dead entr%s\n", replay ? "replayed" : "purged",
              static_cast<long long>(n), n == 1 ? "y" : "ies");
  return 0;
}

int stats(control_client& c, bool as_json) {
  c.send(proto::make_request(verb::stats));
  auto o = c.read_ok();
  const auto* sv = o.if_contains(key::stats);
  if (!sv || !sv->is_object()) fail("bad reply from relayd: no stats");
  const auto& st = sv->get_object();
  if (as_json) {
    std::printf("%s\n", json::serialize(st).c_str());
    return 0;
  }
  for (auto k : {key::active, key::deferred, key::held, key::dead, key::in_flight})
    std::printf("%-10s %lld\n", (std::string(k) + ":").c_str(),
                static_cast<long long>(get_int(st, k)));
  const auto messages = get_int(st, key::messages);
  const auto oldest = std::chrono::seconds(get_int(st, key::oldest_age_seconds));
  std::printf("%-10s %s\n", "oldest:",
              messages == 0 ? "-" : relayd::duration_breakdown(oldest).c_str());
  const auto used = static_cast<std::uint64_t>(get_int(st, key::spool_bytes));
  const auto max = static_cast<std::uint64_t>(get_int(st, key::spool_max_bytes));
  std::printf("%-10s %lld (%s)\n", "messages:", static_cast<long long>(messages),
              human_bytes(static_cast<std::uint64_t>(get_int(st, key::message_bytes))).c_str());
  std::printf("%-10s %s used of %s (%.1f%%)\n", "spool:", human_bytes(used).c_str(),
              human_bytes(max).c_str(),
              max == 0 ? 0.0 : 100.0 * static_cast<double>(used) / static_cast<double>(max));
  return 0;
}

int reload(control_client& c) {
  c.send(proto::make_request(verb::reload));
  auto o = c.read_ok();  // an error: "relayctl: WHY", exit 1 (the old configuration stays)
  std::printf("%s\n", proto::get_string(o, key::summary).c_str());
  return 0;
}

}  // namespace relayctl
