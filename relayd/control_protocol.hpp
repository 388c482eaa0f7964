// The control socket's protocol, shared by relayd (control_*.cpp) and relayctl
// (cli/): verbs, the field names of requests and replies, and the request parser.
// One JSON object per line; a name typed wrong on either side is a compile error.
// parse_request() never throws: a line that is not a valid request gets the error
// text the daemon answers with ({"ok":false,"error":...}). No Asio here.
//
// Requests and replies (one request per connection):
//   {"cmd":"list"}                  -> one message object per line, then {"ok":true,"messages":N,"bytes":B}
//                                      ("brief":true: id, state, size, arrival, sender, in_flight
//                                      and the pending recipients' address, state, last_reply, route)
//   {"cmd":"show","id":ID}          -> {"ok":true,"message":{...},"content_length":N}\n + N raw bytes
//   {"cmd":"delete","ids":[...]}    -> {"ok":true,"deleted":N}   ("all":true deletes every message)
//   {"cmd":"flush"}                 -> {"ok":true,"count":N}  every deferred message now
//   {"cmd":"requeue"|"hold"|"release","ids":[...]|"all":true} -> {"ok":true,"count":N}
//   {"cmd":"dead_list"}             -> one dead-entry object per line, then
//                                      {"ok":true,"entries":N,"bytes":B}
//   {"cmd":"dead_show","id":ID}     -> {"ok":true,"entry":{...},"content_length":N}\n + N raw bytes
//   {"cmd":"dead_replay"|"dead_purge","ids":[...]|"all":true} -> {"ok":true,"count":N}
//   {"cmd":"stats"}                 -> {"ok":true,"stats":{active, deferred, held, dead, ...}}
//   {"cmd":"wait","id":ID,"timeout":S} -> once every recipient of ID is final, or S seconds
//                                      (default 300) passed, or relayd stops:
//                                      {"ok":true,"id":ID,"final":true|false,
//                                       "recipients":[{address, state, last_reply}]}
//                                      state: delivered | failed | deferred | pending | held
//   {"cmd":"aliases_reload"}        -> {"ok":true,"aliases":N} ([local] aliases re-read; on
//                                      an error the daemon keeps the table it had)
//   {"cmd":"shape","top":N}         -> {"ok":true,"messages":M,"total":[...],"domains":[{"domain":D,
//                                      "counts":[...]}...],"domain_count":K}: queue_shape.hpp's
//                                      age columns, the N (default 20) busiest domains
// list, shape, flush, delete, requeue, hold, release, dead_list, dead_replay and
// dead_purge also take "filter":{"from","to","domain","reason":TEXT,"older":SECONDS}
// (relayd/queue_filter.hpp); on an action a filter with something in it stands
// for "all" when no "ids" are given, and narrows the "ids" when they are.
//   {"cmd":"reload"}                -> {"ok":true,"summary":TEXT} (the whole config re-read,
//                                      like SIGHUP; on an error nothing changed and
//                                      "error" says why)
//   {"cmd":"destinations"}          -> one object per destination {destination, policy,
//                                      state, rate, queued, in_flight, connections, until,
//                                      reason, last_reply}, then {"ok":true,"entries":N}
//   {"cmd":"suspend","id":DEST[,"timeout":S]} -> {"ok":true,"destination":NAME} (no
//                                      connection for S seconds; without S until resume)
//   {"cmd":"resume","id":DEST}      -> {"ok":true,"destination":NAME,"count":N} (N messages
//                                      made due now)
//   {"cmd":"report","since":S,"before":B,"top":N} -> {"ok":true,"report":{...}}: the events
//                                      from S seconds ago (default 86400) to B seconds ago
//                                      (default 0: now), counted (relayd/events_report.hpp);
//                                      N (default 10) rows in each list
//   {"cmd":"tls_rpt_send","id":"YYYY-MM-DD"} -> {"ok":true,"summary":TEXT} once the TLS
//                                      reports (RFC 8460) of that UTC day are queued, one
//                                      line per policy domain; an error without tls_rpt
// A dead entry: id, size, arrival, sender, failed_at and its failed recipients
// [{address, reason, reply_code, status, last_reply, remote_host, attempts,
// first_attempt, last_attempt, and for entries recorded since record version 3
// cause, in_reply_to, reply_text}] (times in Unix seconds, 0: never).
#pragma once

#include <boost/json/object.hpp>
#include <cstddef>
#include <expected>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "relayd/queue_filter.hpp"

namespace relayd::control_protocol {

// The longest request line the daemon reads.
inline constexpr std::size_t max_request = 64 * 1024;

namespace verb {
inline constexpr std::string_view list = "list";
inline constexpr std::string_view show = "show";
inline constexpr std::string_view remove = "delete";
inline constexpr std::string_view flush = "flush";
inline constexpr std::string_view requeue = "requeue";
inline constexpr std::string_view hold = "hold";
inline constexpr std::string_view release = "release";
inline constexpr std::string_view dead_list = "dead_list";
inline constexpr std::string_view dead_show = "dead_show";
inline constexpr std::string_view dead_replay = "dead_replay";
inline constexpr std::string_view dead_purge = "dead_purge";
inline constexpr std::string_view stats = "stats";
inline constexpr std::string_view wait = "wait";
inline constexpr std::string_view aliases_reload = "aliases_reload";
inline constexpr std::string_view dkim_check = "dkim_check";
inline constexpr std::string_view shape = "shape";
inline constexpr std::string_view reload = "reload";
inline constexpr std::string_view destinations = "destinations";
inline constexpr std::string_view suspend = "suspend";
inline constexpr std::string_view resume = "resume";
inline constexpr std::string_view report = "report";
inline constexpr std::string_view tls_rpt_send = "tls_rpt_send";
}  // namespace verb

// Field names, requests and replies alike.
namespace key {
// requests
inline constexpr std::string_view cmd = "cmd";
inline constexpr std::string_view id = "id";
inline constexpr std::string_view ids = "ids";
inline constexpr std::string_view all = "all";
inline constexpr std::string_view timeout = "timeout";  // wait: seconds
inline constexpr std::string_view filter = "filter";    // {from, to, domain, reason, older}
inline constexpr std::string_view from = "from";
inline constexpr std::string_view to = "to";
inline constexpr std::string_view older = "older";  // seconds
inline constexpr std::string_view top = "top";      // shape: how many domains
inline constexpr std::string_view brief = "brief";  // list: only what relayctl -p prints
// every final reply line
inline constexpr std::string_view ok = "ok";
inline constexpr std::string_view error = "error";
// counts in final reply lines
inline constexpr std::string_view deleted = "deleted";
inline constexpr std::string_view count = "count";
inline constexpr std::string_view messages = "messages";
inline constexpr std::string_view entries = "entries";
inline constexpr std::string_view bytes = "bytes";
// show / dead_show
inline constexpr std::string_view message = "message";
inline constexpr std::string_view entry = "entry";
inline constexpr std::string_view content_length = "content_length";
// a message or dead entry
inline constexpr std::string_view state = "state";
inline constexpr std::string_view size = "size";
inline constexpr std::string_view arrival = "arrival";
inline constexpr std::string_view sender = "sender";
inline constexpr std::string_view in_flight = "in_flight";
inline constexpr std::string_view recipients = "recipients";
inline constexpr std::string_view failed_at = "failed_at";
inline constexpr std::string_view client_ip = "client_ip";
inline constexpr std::string_view helo = "helo";
// DSN parameters (RFC 3461) and the local submitter, when the record has them
inline constexpr std::string_view ret = "ret";      // "full" | "hdrs"
inline constexpr std::string_view envid = "envid";
inline constexpr std::string_view submitter = "submitter";  // {uid,gid,pid,user,executable,unit}
inline constexpr std::string_view uid = "uid";
inline constexpr std::string_view gid = "gid";
inline constexpr std::string_view pid = "pid";
inline constexpr std::string_view user = "user";
inline constexpr std::string_view executable = "executable";
inline constexpr std::string_view unit = "unit";
// a recipient
inline constexpr std::string_view address = "address";
inline constexpr std::string_view attempts = "attempts";
inline constexpr std::string_view last_reply = "last_reply";
inline constexpr std::string_view next_attempt = "next_attempt";
inline constexpr std::string_view expires = "expires";
inline constexpr std::string_view reason = "reason";
inline constexpr std::string_view reply_code = "reply_code";
inline constexpr std::string_view status = "status";
inline constexpr std::string_view remote_host = "remote_host";
inline constexpr std::string_view cause = "cause";              // refused, timeout, reply, ...
inline constexpr std::string_view in_reply_to = "in_reply_to";  // the command a reply answered
inline constexpr std::string_view reply_text = "reply_text";    // the reply's text as sent
inline constexpr std::string_view first_attempt = "first_attempt";
inline constexpr std::string_view last_attempt = "last_attempt";
inline constexpr std::string_view notify = "notify";  // ["success","failure","delay"] or ["never"]
inline constexpr std::string_view route = "route";    // [[route]] name, or "default"
inline constexpr std::string_view orcpt = "orcpt";    // "rfc822;user@example.org"
// stats (and "messages", "in_flight" above)
inline constexpr std::string_view stats = "stats";
inline constexpr std::string_view active = "active";
inline constexpr std::string_view deferred = "deferred";
inline constexpr std::string_view held = "held";
inline constexpr std::string_view dead = "dead";
inline constexpr std::string_view message_bytes = "message_bytes";
inline constexpr std::string_view oldest_age_seconds = "oldest_age_seconds";
inline constexpr std::string_view spool_bytes = "spool_bytes";
inline constexpr std::string_view spool_max_bytes = "spool_max_bytes";
// wait
inline constexpr std::string_view final = "final";
// aliases_reload
inline constexpr std::string_view aliases = "aliases";
// shape (and "messages", "domain" above)
inline constexpr std::string_view total = "total";
inline constexpr std::string_view domains = "domains";
inline constexpr std::string_view counts = "counts";
inline constexpr std::string_view domain_count = "domain_count";
// reload
inline constexpr std::string_view summary = "summary";
// dkim_check: one line per [[dkim]] entry (and "state", "reason" above), then {"ok":true,"entries":N}
inline constexpr std::string_view domain = "domain";
inline constexpr std::string_view selector = "selector";
inline constexpr std::string_view key_file = "key";
inline constexpr std::string_view dns_match = "dns_match";  // what require_dns acts on
inline constexpr std::string_view record = "record";        // the TXT name looked up
// destinations, suspend, resume ("state", "reason", "last_reply", "in_flight" above)
inline constexpr std::string_view destination = "destination";
inline constexpr std::string_view policy = "policy";          // [[destination]] match, or ""
inline constexpr std::string_view rate = "rate";              // max_rate, "" when unlimited
inline constexpr std::string_view queued = "queued";          // messages in the queue for it
inline constexpr std::string_view connections = "connections";
inline constexpr std::string_view until = "until";            // Unix seconds, 0: none
inline constexpr std::string_view tls_policy = "tls_policy";    // "mta-sts enforce", "dane", ...
inline constexpr std::string_view tls_outcome = "tls_outcome";  // "verified TLSv1.3", "failed: ..."
inline constexpr std::string_view tls_at = "tls_at";            // Unix seconds, 0: unknown
// report (request: "since", "before", "top"; reply: "report")
inline constexpr std::string_view since = "since";    // seconds back from now
inline constexpr std::string_view before = "before";  // seconds back from now, 0: now
inline constexpr std::string_view report = "report";
}  // namespace key

// Values of key::state (a message) and of a recipient's state.
namespace state {
inline constexpr std::string_view active = "active";
inline constexpr std::string_view deferred = "deferred";
inline constexpr std::string_view held = "held";
inline constexpr std::string_view pending = "pending";
inline constexpr std::string_view delivered = "delivered";
inline constexpr std::string_view failed = "failed";
}  // namespace state

// What a verb takes besides "cmd".
enum class takes { nothing, id, targets, id_timeout };

// Who may run a verb (the daemon reads the client's SO_PEERCRED):
//   anyone: every local user (the queue listing and counts, as Postfix's mailq);
//   owner:  an admin, or the local user who submitted that message (show);
//   admin:  root, the daemon's own user, or a member of [control] admin_group.
enum class access { anyone, owner, admin };

struct verb_spec {
  std::string_view name;
  takes args;
  access who = access::admin;
  bool filtered = false;  // takes "filter"
};
// Every verb of the protocol.
std::span<const verb_spec> verbs();

// The messages (or dead entries) an action names: all of them, or these IDs.
struct targets {
  bool all = false;
  std::vector<std::string> ids;  // empty when all
};

struct request {
  std::string_view verb;         // one of verb::*
  access who = access::admin;    // the verb's access rule
  std::string id;                // takes::id
  std::optional<targets> which;  // takes::targets
  std::int64_t timeout_seconds = 0;  // takes::id_timeout; 0 when not given
  queue_filter filter;               // verb_spec::filtered; empty when not given
  std::size_t top = 20;              // shape; report: 10 unless given
  std::int64_t since_seconds = 86400;  // report
  std::int64_t before_seconds = 0;     // report
  bool brief = false;                // list
  std::int64_t peer_uid = -1;        // set by the server from SO_PEERCRED; -1: unknown
};

// One request line (without its '\n'); the error is the text to answer with.
std::expected<request, std::string> parse_request(std::string_view line);

// Requests as relayctl sends them (serialise and add '\n').
boost::json::object make_request(std::string_view verb);
boost::json::object make_request(std::string_view verb, std::string_view id);
boost::json::object make_request(std::string_view verb, const targets& which);
// Adds "filter" to a request (nothing for an empty filter).
void add_filter(boost::json::object& req, const queue_filter& f);
// {"cmd":"wait","id":ID,"timeout":S}
boost::json::object make_wait_request(std::string_view id, std::int64_t timeout_seconds);

// Final reply lines, '\n' included.
std::string ok_line(boost::json::object fields = {});
std::string error_line(std::string_view what);

// Reply accessors that tolerate a missing or mistyped field ("" / 0 / false).
std::string get_string(const boost::json::object& o, std::string_view key);
std::int64_t get_int(const boost::json::object& o, std::string_view key);
bool get_bool(const boost::json::object& o, std::string_view key);

}  // namespace relayd::control_protocol
