// relayctl report (DESIGN "Destinations, rules and events"): the compact record
// of one event that relayd keeps for reports (relayd/events_report_log.hpp
// writes them, one line each, in <spool>/events/YYYYMMDD.log per UTC day),
// and the pflogsumm-style summary over a time window. Pure: no I/O, no clock.
//
// A record line: seven fields separated by tabs, no tab or newline inside one:
//   TIME(Unix seconds) TYPE(received|deferred|...) DOMAIN DESTINATION STATUS SUBMITTER REPLY
// DOMAIN is the recipient's domain in lower case ("" for received; the
// destination for suspended and resumed); REPLY is cut at 300 octets.
#pragma once

#include <boost/json/object.hpp>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "relayd/events_format.hpp"

namespace relayd {

struct report_record {
  std::int64_t time = 0;  // Unix seconds
  event_type type = event_type::received;
  std::string domain;
  std::string destination;
  std::string status;
  std::string submitter;
  std::string reply;
};

// The record of an event (fields as events_format.hpp's JSON would carry them:
// invalid UTF-8 replaced).
report_record record_of(const event& e);
// One record line, '\n' included.
std::string to_line(const report_record& r);
// The record of one line (without its '\n'); nullopt for a damaged line.
std::optional<report_record> parse_record_line(std::string_view line);

// A reply as a group for "top reasons": the reply code (the first word of
// three digits 2xx-5xx) and the enhanced status after it are kept, every other
// word holding a digit (IDs, counts, IP addresses, ports) becomes '#', an
// e-mail address becomes <address>, white space is collapsed, at most 160
// octets. "host mx1.g.test[192.0.2.1] said: 421 4.7.28 rate limited, id 123" ->
// "host #.g.test[#.#.#.#] said: 421 4.7.28 rate limited, id #".
std::string normalise_reply(std::string_view reply);

// Who submitted, for the per-submitter table: "local user=alice" (or
// "local uid=N" without a name), "sasl=alice", "smtp 192.0.2.1", "relayd".
std::string submitter_key(std::string_view submitter);

// Counts of the records inside [since, until) (Unix seconds).
class report_summary {
 public:
  report_summary(std::int64_t since, std::int64_t until) : since_(since), until_(until) {}

  void add(const report_record& r);
  // A record line: counted when inside the window; false when damaged.
  bool add_line(std::string_view line);
  void note_damaged(std::uint64_t lines) { damaged_ += lines; }

  // {"since","until","received","delivered","deferred","bounced","expired","dead",
  //  "suspended","resumed","domains":[{"domain",delivered,deferred,bounced,expired,dead}],
  //  "domain_count","deferral_reasons":[{"reason","count"}],"bounce_reasons":[...],
  //  "submitters":[{"submitter","count"}],"damaged_lines"}; `top` rows at most in each
  //  list, the largest first (domains by all their recipients' events).
  boost::json::object to_json(std::size_t top) const;

 private:
  struct domain_counts {
    std::uint64_t delivered = 0, deferred = 0, bounced = 0, expired = 0, dead = 0;
    std::uint64_t all() const { return delivered + deferred + bounced + expired + dead; }
  };
  std::int64_t since_, until_;
  std::uint64_t totals_[8] = {};  // by event_type
  std::map<std::string, domain_counts> domains_;
  std::unordered_map<std::string, std::uint64_t> deferral_reasons_, bounce_reasons_, submitters_;
  std::uint64_t damaged_ = 0;
};

}  // namespace relayd
