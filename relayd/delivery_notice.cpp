// Implements delivery_notice.hpp.
#include "relayd/delivery_notice.hpp"

#include <algorithm>
#include <chrono>

#include "relayd/config.hpp"
#include "relayd/duration_text.hpp"

namespace relayd {
namespace {

constexpr std::int64_t us_per_s = 1'000'000;

bool has_8bit(std::string_view s) {
  return std::any_of(s.begin(), s.end(), [](char c) { return static_cast<unsigned char>(c) >= 0x80; });
}

}  // namespace

bool may_notify(const config& cfg, const queue::envelope_record& message) {
  return cfg.queue.bounces && !message.sender.empty();
}

bool delay_warning_due(const config& cfg, const queue::envelope_record& message,
                       std::int64_t now_us) {
  const auto after = std::chrono::duration_cast<std::chrono::microseconds>(cfg.queue.delay_warning);
  return after.count() > 0 && may_notify(cfg, message) &&
         !(message.flags & queue::flag_delay_warned) && now_us - message.arrival_us >= after.count();
}

bool wants_notice(const queue::recipient& r, smtp::dsn_action action) {
  if (r.notify & smtp::notify_never) return false;
  switch (action) {
    case smtp::dsn_action::failed:
      return r.notify == 0 || (r.notify & smtp::notify_failure);
    case smtp::dsn_action::delayed:
      return r.notify == 0 || (r.notify & smtp::notify_delay);
    case smtp::dsn_action::relayed:
      return (r.notify & smtp::notify_success) != 0;
  }
  return false;
}

std::vector<queue::recipient> asking_for(std::span<const queue::recipient> recipients,
                                         smtp::dsn_action action) {
  std::vector<queue::recipient> out;
  for (const auto& r : recipients)
    if (wants_notice(r, action)) out.push_back(r);
  return out;
}

std::string remote_reply(const queue::recipient& r) {
  if (r.reply_code == 0) return {};
  if (r.cause != queue::outcome_cause::unknown)
    return r.reply_text.empty() ? std::to_string(r.reply_code)
                                : std::to_string(r.reply_code) + " " + r.reply_text;
  // A record from before version 3: its sentence is all there is.
  std::string_view text = r.last_reply;
  constexpr std::string_view said = " said: ";
  if (auto p = text.find(said); p != std::string_view::npos) text.remove_prefix(p + said.size());
  if (auto p = text.rfind(" (in reply to "); p != std::string_view::npos) text = text.substr(0, p);
  return std::string(text);
}

std::string remote_mta(std::string_view remote_host) {
  auto end = remote_host.find('[');
  if (end == std::string_view::npos) end = remote_host.rfind(':');
  std::string_view name = remote_host.substr(0, end);
  if (name == "none" || name == "unknown") return {};
  return std::string(name);
}

notice make_notice(const config& cfg, const queue::envelope_record& message,
                   std::span<const queue::recipient> recipients, smtp::dsn_action action,
                   std::string_view original, std::string id, std::int64_t now_us) {
  smtp::dsn_request req;
  req.reporting_mta = cfg.hostname;
  req.queue_id = message.id;
  req.original_sender = message.sender;
  req.envelope_id = message.envid;
  req.include_body = message.ret == smtp::dsn_ret::full;
  // RFC 8689 5: the notice of a REQUIRETLS message is redacted instead of
  // being sent with REQUIRETLS, so that it reaches the sender in any case.
  req.redacted = (message.flags & queue::flag_requiretls) != 0;
  req.arrival = message.arrival_us / us_per_s;
  req.now = now_us / us_per_s;
  req.message_id = "<" + id + "@" + cfg.hostname + ">";
  req.original = original;
  const auto lifetime = std::chrono::duration_cast<std::chrono::seconds>(cfg.queue.max_lifetime);
  for (const auto& r : recipients) {
    smtp::dsn_recipient d;
    d.address = r.address;
    d.original_recipient = r.orcpt;
    d.action = action;
    const bool expired = r.reason == "expired" || r.cause == queue::outcome_cause::expired;
    d.status = expired ? "4.4.7" : r.status;  // RFC 3463: delivery time expired
    d.remote_mta = remote_mta(r.remote_host);
    d.diagnostic = remote_reply(r);
    d.explanation = expired ? "not delivered for " + duration_text(lifetime) +
                                  " (max_lifetime); last attempt: " + r.last_reply
                            : r.last_reply;
    d.last_attempt = r.last_attempt_us / us_per_s;
    if (action == smtp::dsn_action::delayed)
      d.will_retry_until = message.arrival_us / us_per_s + lifetime.count();
    req.recipients.push_back(std::move(d));
  }

  notice n;
  n.message = smtp::compose_dsn(req);
  n.envelope.id = std::move(id);
  n.envelope.arrival_us = now_us;
  n.envelope.size = n.message.size();
  if (has_8bit(n.message)) n.envelope.flags |= queue::flag_eight_bit;
  if (has_8bit(message.sender)) n.envelope.flags |= queue::flag_smtputf8;
  n.envelope.sender = "";
  n.envelope.client_ip = "127.0.0.1";
  n.envelope.helo = cfg.hostname;
  queue::recipient to;
  to.address = message.sender;
  to.state = queue::rcpt_state::pending;
  to.next_attempt_us = now_us;
  n.envelope.recipients.push_back(std::move(to));
  return n;
}

}  // namespace relayd
