// Implements events_format.hpp with Boost.JSON's serializer for the escaping.
#include "relayd/events_format.hpp"

#include <time.h>

#include <boost/json.hpp>
#include <cctype>
#include <cstdio>

#include "smtp/text.hpp"

namespace relayd {
namespace {

namespace json = boost::json;

// RFC 3339 UTC with microseconds.
std::string rfc3339(std::int64_t us) {
  std::int64_t secs = us / 1000000, frac = us % 1000000;
  if (frac < 0) {
    frac += 1000000;
    --secs;
  }
  const time_t t = static_cast<time_t>(secs);
  struct tm tm {};
  gmtime_r(&t, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(frac));
  return buf;
}

std::string trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return std::string(s);
}

}  // namespace

std::size_t utf8_length_at(std::string_view s, std::size_t i) {
  const auto c = static_cast<unsigned char>(s[i]);
  const std::size_t n =
      c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
  if (n == 0 || i + n > s.size()) return 0;
  for (std::size_t k = 1; k < n; ++k)
    if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return 0;
  return n;
}

std::string utf8_or_replaced(std::string_view s) {
  // Boost.JSON writes the octets as given; a receiver wants valid UTF-8.
  // Valid runs are copied whole; ASCII is the common case.
  std::string out;
  out.reserve(s.size());
  std::size_t run = 0;  // the start of the valid run not copied yet
  for (std::size_t i = 0; i < s.size();) {
    if (static_cast<unsigned char>(s[i]) < 0x80) {
      ++i;
      continue;
    }
    if (const std::size_t n = utf8_length_at(s, i); n != 0) {
      i += n;
      continue;
    }
    out.append(s.substr(run, i - run));
    out += "\xEF\xBF\xBD";
    run = ++i;
  }
  out.append(s.substr(run));
  return out;
}

std::string_view to_string(event_type t) {
  switch (t) {
    case event_type::received: return "received";
    case event_type::deferred: return "deferred";
    case event_type::delivered: return "delivered";
    case event_type::bounced: return "bounced";
    case event_type::dead: return "dead";
    case event_type::expired: return "expired";
    case event_type::suspended: return "suspended";
    case event_type::resumed: return "resumed";
  }
  return "unknown";
}

std::string to_json(const event& e) {
  json::object o;
  o["event_id"] = e.event_id;
  o["time"] = rfc3339(e.time_us);
  o["type"] = to_string(e.type);
  o["queue_id"] = e.queue_id;
  o["message_id"] = utf8_or_replaced(e.message_id);
  o["sender"] = utf8_or_replaced(e.sender);
  o["recipient"] = utf8_or_replaced(e.recipient);
  o["destination"] = utf8_or_replaced(e.destination);
  o["reply"] = utf8_or_replaced(e.reply);
  o["status"] = e.status;
  o["attempt"] = e.attempt;
  o["submitter"] = utf8_or_replaced(e.submitter);
  return json::serialize(o);
}

std::string message_id_of(std::string_view head) {
  std::string found;
  bool in_field = false;  // the current field is Message-ID (continuation lines append)
  while (!head.empty()) {
    const auto nl = head.find('\n');
    std::string_view line = head.substr(0, nl);
    head = nl == std::string_view::npos ? std::string_view() : head.substr(nl + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) break;  // end of the header
    if (line.front() == ' ' || line.front() == '\t') {
      if (in_field) found += trim(line);
      continue;
    }
    if (in_field) break;  // the field ended
    const auto colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    if (smtp::text::iequals(trim(line.substr(0, colon)), "Message-ID")) {
      in_field = true;
      found = trim(line.substr(colon + 1));
    }
    if (nl == std::string_view::npos) break;
  }
  return found;
}

std::string submitter_of(const queue::envelope_record& r, std::string_view sasl) {
  if (r.local) {
    std::string s = "local uid=" + std::to_string(r.local->uid);
    if (!r.local->user.empty()) s += " user=" + r.local->user;
    if (!r.local->unit.empty()) s += " unit=" + r.local->unit;
    return s;
  }
  if (r.client_ip.empty()) return "relayd";  // notices relayd made itself
  std::string s = "smtp " + r.client_ip;
  if (!sasl.empty()) s += " sasl=" + std::string(sasl);
  return s;
}

event_type event_type_of(const queue::recipient& r, bool notified) {
  switch (r.state) {
    case queue::rcpt_state::delivered: return event_type::delivered;
    case queue::rcpt_state::pending: return event_type::deferred;
    case queue::rcpt_state::failed: break;
  }
  if (r.reason == "expired") return event_type::expired;
  return notified ? event_type::bounced : event_type::dead;
}

}  // namespace relayd
