// Implements delivery_outcome.hpp: client results, connect, TLS and DNS failures
// become outcomes of typed facts; describe() renders them. The sentences are the
// ones the log has always shown; nothing here ever parses one.
#include "relayd/delivery_outcome.hpp"

#include <fmt/format.h>

namespace relayd {
namespace {

using queue::outcome_cause;

// The reply as the server wrote it after its code: "5.1.1 No such user" (the
// enhanced code only when the server gave one), lines joined with "; ".
std::string reply_text(const smtp::reply& r) {
  std::string s = r.to_string();
  const auto space = s.find(' ');
  return space == std::string::npos ? std::string() : s.substr(space + 1);
}

// AUTH-related refusals whatever command they answer (530 to MAIL: we should
// have authenticated): our credentials, not the destination.
bool is_auth_code(int code) {
  return code == 530 || code == 534 || code == 535 || code == 538;
}

outcome_kind kind_of(smtp::delivery_status s) {
  switch (s) {
    case smtp::delivery_status::delivered: return outcome_kind::delivered;
    case smtp::delivery_status::permanent: return outcome_kind::failed;
    case smtp::delivery_status::temporary: break;
  }
  return outcome_kind::deferred;
}

outcome_cause cause_of(smtp::failure_cause c, outcome_cause lost_as) {
  switch (c) {
    case smtp::failure_cause::greeting_refused:
    case smtp::failure_cause::hello_refused:
    case smtp::failure_cause::service_closing: return outcome_cause::reply;
    case smtp::failure_cause::tls_unavailable: return outcome_cause::tls;
    case smtp::failure_cause::auth_rejected:
    case smtp::failure_cause::auth_temporary:
    case smtp::failure_cause::auth_unavailable: return outcome_cause::auth;
    case smtp::failure_cause::protocol_error: return outcome_cause::protocol;
    case smtp::failure_cause::connection_lost: return lost_as;
  }
  return outcome_cause::protocol;
}

recipient_outcome finished(recipient_outcome o) {
  o.description = describe(o);
  return o;
}

}  // namespace

recipient_outcome outcome_of(const smtp::recipient_result& r, std::string_view relay,
                             std::optional<outcome_cause> lost_as) {
  recipient_outcome o;
  o.what = kind_of(r.status);
  o.code = r.from_server ? static_cast<std::uint16_t>(r.response.code) : 0;
  o.status = smtp::dsn_status(r.response);
  o.text = reply_text(r.response);
  o.in_reply_to = command_of(r.in_reply_to);
  o.remote_host = relay;
  if (o.what == outcome_kind::delivered)
    o.cause = outcome_cause::none;
  else if (r.from_server)
    o.cause = is_auth_code(r.response.code) ? outcome_cause::auth : outcome_cause::reply;
  else if (lost_as)
    o.cause = *lost_as;
  else  // made by the client: SIZE over the limit, SMTPUTF8 refused, protocol error
    o.cause = o.what == outcome_kind::failed ? outcome_cause::capability : outcome_cause::protocol;
  if (o.what == outcome_kind::failed) o.reason = "rejected";
  if (o.what == outcome_kind::deferred && r.from_server)
    o.throttles_destination = smtp::is_throttling(r.response);
  return finished(std::move(o));
}

recipient_outcome outcome_of(const smtp::connection_failure& f, std::string_view relay,
                             std::optional<outcome_cause> lost_as) {
  recipient_outcome o;
  o.what = outcome_kind::deferred;
  o.code = f.from_server ? static_cast<std::uint16_t>(f.response.code) : 0;
  o.status = smtp::dsn_status(f.response);
  // A permanent refusal while setting up (e.g. 554 greeting) still only defers.
  if (o.status.starts_with('5')) o.status[0] = '4';
  o.text = reply_text(f.response);
  o.in_reply_to = command_of(f.phase);
  o.remote_host = relay;
  o.cause = cause_of(f.cause, lost_as.value_or(outcome_cause::lost));
  o.throttles_destination = f.destination_throttled;
  return finished(std::move(o));
}

recipient_outcome connect_failed(std::string_view relay, bool timed_out, std::string_view why) {
  recipient_outcome o;
  o.status = "4.4.1";
  o.cause = timed_out ? outcome_cause::timeout : outcome_cause::refused;
  // No host answered: remote_host stays empty (the log says relay=none).
  o.text = fmt::format("connect to {}: {}", relay, timed_out ? "timeout" : why);
  return finished(std::move(o));
}

recipient_outcome tls_failed(std::string_view relay, std::string_view why) {
  recipient_outcome o;
  o.status = "4.7.5";
  o.cause = outcome_cause::tls;
  o.in_reply_to = queue::smtp_command::starttls;
  o.text = fmt::format("TLS handshake with {} failed: {}", relay, why);
  return finished(std::move(o));
}

recipient_outcome no_host_answered() {
  recipient_outcome o;
  o.status = "4.4.1";
  o.cause = outcome_cause::refused;
  o.text = "no mail host answered";
  return finished(std::move(o));
}

recipient_outcome dns_failed(const dns::mx_result& mx, std::string_view relayhost) {
  recipient_outcome o;
  const bool permanent = dns::permanent(mx.what) && relayhost.empty();
  o.what = permanent ? outcome_kind::failed : outcome_kind::deferred;
  o.cause = outcome_cause::dns;
  o.status = !permanent ? "4.4.3" : mx.what == dns::outcome::null_mx ? "5.1.10" : "5.1.2";
  o.text = relayhost.empty() ? mx.detail : fmt::format("relayhost {}: {}", relayhost, mx.detail);
  o.reason = "no_route";
  return finished(std::move(o));
}

std::string describe(const recipient_outcome& o) {
  if (o.code != 0) {
    std::string s = fmt::format("host {} said: {} {}", o.remote_host, o.code, o.text);
    if (o.text.empty()) s.pop_back();
    if (o.in_reply_to != queue::smtp_command::none)
      s += fmt::format(" (in reply to {})", to_string(o.in_reply_to));
    return s;
  }
  if (o.remote_host.empty()) return o.text;
  return fmt::format("{}: {}", o.remote_host, o.text);
}

bool server_heard_nothing(const smtp::transaction_result& r) {
  if (r.recipients.empty()) return false;
  for (const auto& rr : r.recipients) {
    if (rr.from_server || rr.status != smtp::delivery_status::temporary ||
        rr.in_reply_to != smtp::client_phase::mail)
      return false;
  }
  return true;
}

outcome_kind fate_of(queue::rcpt_state s) {
  switch (s) {
    case queue::rcpt_state::delivered: return outcome_kind::delivered;
    case queue::rcpt_state::failed: return outcome_kind::failed;
    case queue::rcpt_state::pending: break;
  }
  return outcome_kind::deferred;
}

std::string_view log_word(outcome_kind k) {
  switch (k) {
    case outcome_kind::delivered: return "sent";
    case outcome_kind::failed: return "bounced";
    case outcome_kind::deferred: break;
  }
  return "deferred";
}

queue::smtp_command command_of(smtp::client_phase p) {
  using queue::smtp_command;
  switch (p) {
    case smtp::client_phase::greeting: return smtp_command::greeting;
    case smtp::client_phase::ehlo: return smtp_command::ehlo;
    case smtp::client_phase::helo: return smtp_command::helo;
    case smtp::client_phase::starttls:
    case smtp::client_phase::tls_handshake: return smtp_command::starttls;
    case smtp::client_phase::auth: return smtp_command::auth;
    case smtp::client_phase::mail: return smtp_command::mail;
    case smtp::client_phase::rcpt: return smtp_command::rcpt;
    case smtp::client_phase::data: return smtp_command::data;
    case smtp::client_phase::data_body:
    case smtp::client_phase::dot: return smtp_command::end_of_data;
    case smtp::client_phase::quit: return smtp_command::quit;
    case smtp::client_phase::ready:
    case smtp::client_phase::rset:
    case smtp::client_phase::closed: break;
  }
  return smtp_command::none;
}

void record_outcome(queue::recipient& r, const recipient_outcome& o) {
  r.reply_code = o.code;
  r.status = o.status;
  r.last_reply = o.description;
  if (!o.remote_host.empty() || o.counts_as_attempt) r.remote_host = o.remote_host;
  r.cause = o.cause;
  r.in_reply_to = o.in_reply_to;
  r.reply_text = o.text;
}

}  // namespace relayd
