// Binary encoding of envelope records. encode() writes version 4; decode() reads
// versions 1 to 4 (an older recipient gets the defaults for the newer fields, and
// its free-text last_reply as reply_text):
//   u8 version | svarint arrival_us | varint size | varint flags
//   | str sender | str client_ip | str helo | varint nrcpt
//   | nrcpt × (str address | u8 state | varint attempts | svarint next_attempt_us
//              | str last_reply
//              [v2: | svarint first_attempt_us | svarint last_attempt_us
//                   | varint reply_code | str status | str remote_host | str reason]
//              [v3: | u8 cause | u8 in_reply_to | str reply_text]
//              [v4: | u8 notify | str orcpt])
//   [v4: | u8 ret | str envid | u8 has_local
//        [has_local: | varint uid | varint gid | svarint pid | str user
//                    | str executable | str unit]]
// varint: LEB128, at most 10 bytes; svarint: zigzag then varint; str: varint
// length then bytes. decode() checks every length against what is left and
// rejects truncation, trailing bytes, unknown versions and out-of-range values.
#include "queue/record.hpp"

#include <cstddef>
#include <iterator>
#include <limits>
#include <string>

namespace queue {
namespace {

// A recipient takes at least this many bytes: one per field.
static_assert(record_version == 4, "decode() below reads versions 1 to 4");
constexpr std::size_t min_recipient_bytes_v1 = 5;
constexpr std::size_t min_recipient_bytes_v2 = 11;
constexpr std::size_t min_recipient_bytes_v3 = 14;
constexpr std::size_t min_recipient_bytes_v4 = 16;
constexpr std::uint8_t notify_all_bits = smtp::notify_never | smtp::notify_success |
                                         smtp::notify_failure | smtp::notify_delay;

constexpr std::string_view cause_names[] = {
    "unknown", "none",     "reply", "refused",    "lost",         "timeout", "tls",
    "auth",    "protocol", "dns",   "capability", "local_config", "expired"};
static_assert(std::size(cause_names) == outcome_cause_last + 1);
constexpr std::string_view command_names[] = {
    "",          "the greeting", "EHLO",    "HELO", "STARTTLS", "AUTH",
    "MAIL FROM", "RCPT TO",      "DATA",    "end of DATA",      "QUIT"};
static_assert(std::size(command_names) == smtp_command_last + 1);
// Far above any max_recipients configuration; a larger count is damage.
constexpr std::uint64_t max_recipients = 1u << 20;

class writer {
 public:
  void u8(std::uint8_t v) { out_.push_back(static_cast<char>(v)); }
  void varint(std::uint64_t v) {
    while (v >= 0x80) {
      out_.push_back(static_cast<char>((v & 0x7f) | 0x80));
      v >>= 7;
    }
    out_.push_back(static_cast<char>(v));
  }
  void svarint(std::int64_t v) {
    varint((static_cast<std::uint64_t>(v) << 1) ^ static_cast<std::uint64_t>(v >> 63));
  }
  void str(std::string_view s) {
    varint(s.size());
    out_.append(s);
  }
  std::string take() { return std::move(out_); }

 private:
  std::string out_;
};

class reader {
 public:
  explicit reader(std::string_view in) : in_(in) {}

  std::size_t remaining() const { return in_.size() - pos_; }
  std::size_t position() const { return pos_; }
  const std::string& error() const { return error_; }

  bool u8(std::uint8_t& v, const char* what) {
    if (remaining() < 1) return truncated(what);
    v = static_cast<std::uint8_t>(in_[pos_++]);
    return true;
  }
  bool varint(std::uint64_t& v, const char* what) {
    v = 0;
    for (int shift = 0; shift < 70; shift += 7) {
      if (remaining() < 1) return truncated(what);
      auto b = static_cast<std::uint8_t>(in_[pos_++]);
      if (shift == 63 && (b & 0x7e) != 0) return fail(what, "varint overflows 64 bits");
      v |= static_cast<std::uint64_t>(b & 0x7f) << shift;
      if ((b & 0x80) == 0) return true;
    }
    return fail(what, "varint longer than 10 bytes");
  }
  bool svarint(std::int64_t& v, const char* what) {
    std::uint64_t u = 0;
    if (!varint(u, what)) return false;
    v = static_cast<std::int64_t>((u >> 1) ^ (~(u & 1) + 1));
    return true;
  }
  bool u32(std::uint32_t& v, const char* what) {
    std::uint64_t u = 0;
    if (!varint(u, what)) return false;
    if (u > std::numeric_limits<std::uint32_t>::max()) return fail(what, "value out of range");
    v = static_cast<std::uint32_t>(u);
    return true;
  }
  bool u16(std::uint16_t& v, const char* what) {
    std::uint64_t u = 0;
    if (!varint(u, what)) return false;
    if (u > std::numeric_limits<std::uint16_t>::max()) return fail(what, "value out of range");
    v = static_cast<std::uint16_t>(u);
    return true;
  }
  bool str(std::string& s, const char* what) {
    std::uint64_t n = 0;
    if (!varint(n, what)) return false;
    if (n > remaining()) {
      return fail(what, "length " + std::to_string(n) + " exceeds the " +
                            std::to_string(remaining()) + " bytes left");
    }
    s.assign(in_.substr(pos_, static_cast<std::size_t>(n)));
    pos_ += static_cast<std::size_t>(n);
    return true;
  }

  bool fail(const char* what, const std::string& why) {
    error_ = std::string(what) + " at byte " + std::to_string(pos_) + ": " + why;
    return false;
  }

 private:
  bool truncated(const char* what) { return fail(what, "truncated"); }

  std::string_view in_;
  std::size_t pos_ = 0;
  std::string error_;
};

}  // namespace

std::string_view to_string(outcome_cause c) {
  const auto i = static_cast<std::size_t>(c);
  return i < std::size(cause_names) ? cause_names[i] : "unknown";
}

std::string_view to_string(smtp_command c) {
  const auto i = static_cast<std::size_t>(c);
  return i < std::size(command_names) ? command_names[i] : "";
}

std::string encode(const envelope_record& r) {
  writer w;
  w.u8(record_version);
  w.svarint(r.arrival_us);
  w.varint(r.size);
  w.varint(r.flags);
  w.str(r.sender);
  w.str(r.client_ip);
  w.str(r.helo);
  w.varint(r.recipients.size());
  for (const recipient& rc : r.recipients) {
    w.str(rc.address);
    w.u8(static_cast<std::uint8_t>(rc.state));
    w.varint(rc.attempts);
    w.svarint(rc.next_attempt_us);
    w.str(rc.last_reply);
    w.svarint(rc.first_attempt_us);
    w.svarint(rc.last_attempt_us);
    w.varint(rc.reply_code);
    w.str(rc.status);
    w.str(rc.remote_host);
    w.str(rc.reason);
    w.u8(static_cast<std::uint8_t>(rc.cause));
    w.u8(static_cast<std::uint8_t>(rc.in_reply_to));
    w.str(rc.reply_text);
    w.u8(rc.notify);
    w.str(rc.orcpt);
  }
  w.u8(static_cast<std::uint8_t>(r.ret));
  w.str(r.envid);
  w.u8(r.local ? 1 : 0);
  if (r.local) {
    w.varint(r.local->uid);
    w.varint(r.local->gid);
    w.svarint(r.local->pid);
    w.str(r.local->user);
    w.str(r.local->executable);
    w.str(r.local->unit);
  }
  return w.take();
}

namespace {

// Every field of `rc` back to its default; the strings keep their buffers. A
// field added to `recipient` must be reset here too (decode_test checks a
// reused record against a fresh one).
void reset(recipient& rc) {
  rc.address.clear();
  rc.state = rcpt_state::pending;
  rc.attempts = 0;
  rc.next_attempt_us = 0;
  rc.last_reply.clear();
  rc.first_attempt_us = 0;
  rc.last_attempt_us = 0;
  rc.reply_code = 0;
  rc.status.clear();
  rc.remote_host.clear();
  rc.reason.clear();
  rc.cause = outcome_cause::unknown;
  rc.in_reply_to = smtp_command::none;
  rc.reply_text.clear();
  rc.notify = 0;
  rc.orcpt.clear();
}

// decode_into's body; the error is in.error() (or `error` for a bad version).
bool decode_fields(reader& in, envelope_record& r, std::string& error) {
  std::uint8_t version = 0;
  if (!in.u8(version, "version")) return false;
  if (version < 1 || version > record_version) {
    error = "unknown record version " + std::to_string(version);
    return false;
  }
  r.arrival_us = 0;
  r.size = 0;
  r.flags = 0;
  r.ret = smtp::dsn_ret::unspecified;
  r.envid.clear();
  r.local.reset();
  std::uint64_t nrcpt = 0;
  if (!in.svarint(r.arrival_us, "arrival") || !in.varint(r.size, "size") ||
      !in.u32(r.flags, "flags") || !in.str(r.sender, "sender") ||
      !in.str(r.client_ip, "client address") || !in.str(r.helo, "helo") ||
      !in.varint(nrcpt, "recipient count")) {
    return false;
  }
  const std::size_t min_recipient_bytes = version == 1   ? min_recipient_bytes_v1
                                          : version == 2 ? min_recipient_bytes_v2
                                          : version == 3 ? min_recipient_bytes_v3
                                                         : min_recipient_bytes_v4;
  if (nrcpt > max_recipients || nrcpt > in.remaining() / min_recipient_bytes) {
    in.fail("recipient count", std::to_string(nrcpt) + " recipients cannot fit in " +
                                   std::to_string(in.remaining()) + " bytes");
    return false;
  }
  r.recipients.resize(static_cast<std::size_t>(nrcpt));
  for (recipient& rc : r.recipients) {
    reset(rc);
    std::uint8_t state = 0;
    if (!in.str(rc.address, "recipient address") || !in.u8(state, "recipient state")) {
      return false;
    }
    if (state > static_cast<std::uint8_t>(rcpt_state::failed)) {
      in.fail("recipient state", "unknown value " + std::to_string(state));
      return false;
    }
    rc.state = static_cast<rcpt_state>(state);
    if (!in.u32(rc.attempts, "attempts") || !in.svarint(rc.next_attempt_us, "next attempt") ||
        !in.str(rc.last_reply, "last reply")) {
      return false;
    }
    if (version < 3) rc.reply_text = rc.last_reply;  // the facts were only this sentence
    if (version == 1) continue;
    if (!in.svarint(rc.first_attempt_us, "first attempt") ||
        !in.svarint(rc.last_attempt_us, "last attempt") || !in.u16(rc.reply_code, "reply code") ||
        !in.str(rc.status, "status") || !in.str(rc.remote_host, "remote host") ||
        !in.str(rc.reason, "reason")) {
      return false;
    }
    if (version == 2) continue;
    std::uint8_t cause = 0, command = 0;
    if (!in.u8(cause, "cause") || !in.u8(command, "in reply to") ||
        !in.str(rc.reply_text, "reply text")) {
      return false;
    }
    if (cause > outcome_cause_last) {
      in.fail("cause", "unknown value " + std::to_string(cause));
      return false;
    }
    if (command > smtp_command_last) {
      in.fail("in reply to", "unknown value " + std::to_string(command));
      return false;
    }
    rc.cause = static_cast<outcome_cause>(cause);
    rc.in_reply_to = static_cast<smtp_command>(command);
    if (version == 3) continue;
    if (!in.u8(rc.notify, "notify") || !in.str(rc.orcpt, "orcpt"))
      return false;
    if ((rc.notify & ~notify_all_bits) != 0 ||
        ((rc.notify & smtp::notify_never) != 0 && rc.notify != smtp::notify_never)) {
      in.fail("notify", "invalid value " + std::to_string(rc.notify));
      return false;
    }
  }
  if (version >= 4) {
    std::uint8_t ret = 0, has_local = 0;
    if (!in.u8(ret, "ret") || !in.str(r.envid, "envid") || !in.u8(has_local, "has local"))
      return false;
    if (ret > static_cast<std::uint8_t>(smtp::dsn_ret::headers)) {
      in.fail("ret", "unknown value " + std::to_string(ret));
      return false;
    }
    r.ret = static_cast<smtp::dsn_ret>(ret);
    if (has_local > 1) {
      in.fail("has local", "unknown value " + std::to_string(has_local));
      return false;
    }
    if (has_local == 1) {
      smtp::local_identity l;
      std::int64_t pid = 0;
      if (!in.u32(l.uid, "uid") || !in.u32(l.gid, "gid") || !in.svarint(pid, "pid") ||
          !in.str(l.user, "user") || !in.str(l.executable, "executable") ||
          !in.str(l.unit, "unit"))
        return false;
      if (pid < 0 || pid > std::numeric_limits<std::int32_t>::max()) {
        in.fail("pid", "out of range");
        return false;
      }
      l.pid = static_cast<std::int32_t>(pid);
      r.local = std::move(l);
    }
  }
  if (in.remaining() != 0) {
    error = std::to_string(in.remaining()) + " bytes of trailing garbage at byte " +
            std::to_string(in.position());
    return false;
  }
  return true;
}

}  // namespace

bool decode_into(std::string_view id, std::string_view bytes, envelope_record& r,
                 std::string& error) {
  reader in(bytes);
  r.id.assign(id);
  error.clear();
  if (decode_fields(in, r, error)) return true;
  if (error.empty()) error = in.error();
  return false;
}

std::expected<envelope_record, std::string> decode(std::string_view id, std::string_view bytes) {
  envelope_record r;
  std::string error;
  if (!decode_into(id, bytes, r, error)) return std::unexpected(std::move(error));
  return r;
}

}  // namespace queue
