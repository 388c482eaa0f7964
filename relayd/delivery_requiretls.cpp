// Implements delivery_requiretls.hpp. The header scan reads the header block
// only (smtp::header_block_end), unfolds each field and compares the name and
// the value without regard to case, as RFC 5234 strings are.
#include "relayd/delivery_requiretls.hpp"

#include <fmt/format.h>

#include "relayd/delivery_outcome.hpp"
#include "smtp/message.hpp"
#include "smtp/text.hpp"

namespace relayd {
namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() &&
         (s.front() == ' ' || s.front() == '\t' || s.front() == '\r' || s.front() == '\n'))
    s.remove_prefix(1);
  while (!s.empty() &&
         (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '\n'))
    s.remove_suffix(1);
  return s;
}

// Calls `field(name, value)` for each field of the header block, unfolded
// (continuation lines joined; the CRLFs stay in the value and are trimmed by
// the caller). Stops when `field` returns true.
template <class F>
bool any_field(std::string_view message, F field) {
  const std::string_view block = message.substr(0, smtp::header_block_end(message));
  std::size_t field_start = 0, pos = 0;
  const auto flush = [&](std::size_t field_end) {
    const std::string_view f = block.substr(field_start, field_end - field_start);
    const auto colon = f.find(':');
    return colon != std::string_view::npos && field(trim(f.substr(0, colon)), f.substr(colon + 1));
  };
  while (pos < block.size()) {
    const auto nl = block.find('\n', pos);
    const std::size_t next = nl == std::string_view::npos ? block.size() : nl + 1;
    // A line that starts with a space or tab continues the field above it.
    if (pos > field_start && block[pos] != ' ' && block[pos] != '\t') {
      if (flush(pos)) return true;
      field_start = pos;
    }
    pos = next;
  }
  return pos > field_start && flush(pos);
}

}  // namespace

std::string_view to_string(tls_verification v) {
  switch (v) {
    case tls_verification::none:
      return "none";
    case tls_verification::unauthenticated:
      return "unauthenticated";
    case tls_verification::webpki:
      return "webpki";
    case tls_verification::mta_sts:
      return "mta-sts";
    case tls_verification::dane:
      return "dane";
  }
  return "none";
}

bool tls_required_no(std::string_view message) {
  return any_field(message, [](std::string_view name, std::string_view value) {
    return smtp::text::iequals(name, "TLS-Required") && smtp::text::iequals(trim(value), "No");
  });
}

std::uint32_t requiretls_flags(bool requiretls_param, std::string_view message) {
  if (requiretls_param) return queue::flag_requiretls;
  return tls_required_no(message) ? queue::flag_tls_optional : 0;
}

bool recipient_policy_applies(std::uint32_t message_flags) {
  return (message_flags & queue::flag_requiretls) != 0 ||
         (message_flags & queue::flag_tls_optional) == 0;
}

std::string_view requiretls_check::status() const {
  switch (verdict) {
    case requiretls_verdict::send:
    case requiretls_verdict::send_with_requiretls:
      return "";
    case requiretls_verdict::no_requiretls:
      return "5.7.30";
    default:
      return "5.7.10";
  }
}

std::string requiretls_check::text() const {
  switch (verdict) {
    case requiretls_verdict::send:
    case requiretls_verdict::send_with_requiretls:
      return "";
    case requiretls_verdict::no_tls:
      return "REQUIRETLS: the next hop does not offer TLS (or the handshake failed)";
    case requiretls_verdict::not_verified:
      return "REQUIRETLS: the next hop's certificate is not verified for its name";
    case requiretls_verdict::name_not_authenticated:
      return "REQUIRETLS: the MX host name is not authenticated (no DNSSEC, MTA-STS or DANE)";
    case requiretls_verdict::no_requiretls:
      return "REQUIRETLS: the next hop does not advertise REQUIRETLS";
  }
  return "";
}

requiretls_check check_next_hop(std::uint32_t message_flags, const next_hop_facts& hop) {
  using enum requiretls_verdict;
  if ((message_flags & queue::flag_requiretls) == 0) return {send};
  switch (hop.verification) {
    case tls_verification::none:
      return {no_tls};
    case tls_verification::unauthenticated:
      return {not_verified};
    case tls_verification::webpki:
      // RFC 8689 4.2.1: a name from an unsigned MX answer proves nothing by
      // itself; MTA-STS (or DANE) must vouch for it.
      if (hop.name == next_hop_name::mx_insecure) return {name_not_authenticated};
      break;
    case tls_verification::mta_sts:
    case tls_verification::dane:
      break;
  }
  if (!hop.offers_requiretls) return {no_requiretls};
  return {send_with_requiretls};
}

void requiretls_walk::refused(const requiretls_check& c, std::string relay) {
  ++refused_;
  last_ = c;
  last_relay_ = std::move(relay);
}

recipient_outcome requiretls_walk::outcome() const {
  recipient_outcome o;
  const bool final = unreachable_ == 0;
  o.what = final ? outcome_kind::failed : outcome_kind::deferred;
  std::string status(last_.status().empty() ? "5.7.10" : last_.status());
  if (!final) status[0] = '4';
  o.status = std::move(status);
  o.cause = queue::outcome_cause::tls;
  o.remote_host = last_relay_;
  o.text = last_.text();
  if (!final) o.text += "; another host could not be asked and may qualify later";
  if (final) o.reason = "requiretls";
  o.description = describe(o);
  return o;
}

}  // namespace relayd
