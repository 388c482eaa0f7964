// Fuzz target: what a remote SMTP server sends, read by relayd's client side.
// The reply parser must give the same replies, error and octet count however the
// bytes are split, and stay within its limits. The whole client_session is then
// driven as the delivery agent's pump drives it (greeting, EHLO, STARTTLS, AUTH,
// pipelined MAIL/RCPT, DATA and content, QUIT, reused connections), once in
// chunks and once byte by byte: both must write the same commands and report the
// same events and results, every recipient gets one sane result, nothing is
// delivered without a 2xx to the final dot, and the client's output never holds
// a bare CR or LF or an extra CRLF "." CRLF (SMTP smuggling).
//
// Input: three option bytes, then the server's bytes. A 0xFF byte ends a
// segment: a TLS handshake may complete there (as when the pump decrypts fresh
// records after STARTTLS); segments are otherwise joined.
//   byte 0: 1 want_tls, 2 require_tls, 4 implicit_tls, 8 AUTH credentials,
//           16 allow_plaintext_auth, 32 a password too long for one AUTH PLAIN
//           line, 64 small reply limits, 128 a 7-octet body chunk size
//   byte 1: bits 0-1 messages (0..3), bits 2-4 recipients each (0..7),
//           32 null sender, 64 SMTPUTF8 message, 128 8BITMIME body
//   byte 2: bits 0-3 chunk size of the first run (0: a whole segment per feed),
//           16 SIZE beyond any limit, 32 an unsendable recipient, 64 postmaster,
//           128 a body with bare CR/LF and dot lines
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "smtp/client_session.hpp"
#include "smtp/reply_parser.hpp"

namespace {

using smtp::client_phase;
using smtp::client_session;
using smtp::reply_parser;

// An invariant that does not hold: say which, then crash for libFuzzer.
#define CHECK(ok) \
  ((ok) ? void() : (std::fprintf(stderr, "check failed, line %d: %s\n", __LINE__, #ok), std::abort()))

// ---- reply_parser -------------------------------------------------------------

struct parsed {
  std::vector<std::string> replies;  // code, enhanced code, text
  reply_parser::error error = reply_parser::error::none;
  std::size_t consumed = 0;
  bool operator==(const parsed&) const = default;
};

parsed parse_all(std::string_view in, std::size_t chunk, const smtp::reply_limits& limits) {
  reply_parser p(limits);
  parsed out;
  while (!in.empty()) {
    std::string_view piece = in.substr(0, chunk);
    while (true) {
      const auto r = p.put(piece);
      CHECK(r.consumed <= piece.size());
      piece.remove_prefix(r.consumed);
      in.remove_prefix(r.consumed);
      out.consumed += r.consumed;
      if (r.what == reply_parser::status::error) {
        CHECK(p.failure() != reply_parser::error::none);
        CHECK(p.put("250 ok\r\n").what == reply_parser::status::error);  // stays failed
        out.error = p.failure();
        return out;
      }
      // Never more than one line and one reply held, whatever the input.
      CHECK(p.get().text.size() <= limits.max_reply_size);
      if (r.what == reply_parser::status::need_more) {
        CHECK(piece.empty());
        break;
      }
      const smtp::reply got = p.take();
      CHECK(got.code >= 200 && got.code <= 599);
      if (!got.enhanced.empty()) {
        CHECK(got.enhanced[0] == static_cast<char>('0' + got.code / 100));
        CHECK(smtp::leading_enhanced_code(got.enhanced, got.enhanced[0]) == got.enhanced);
      }
      out.replies.push_back(std::to_string(got.code) + " [" + got.enhanced + "] " + got.text);
    }
  }
  return out;
}

// ---- client_session -------------------------------------------------------------

const char* const recipients_pool[] = {"a@example.org",   "b@example.net", "c@[192.0.2.1]",
                                       "d@example.com",   "e@example.org", "f@example.org",
                                       "g@[IPv6:2001:db8::1]"};
constexpr std::string_view plain_body = "Subject: hi\r\n\r\nHello.\r\n";
// Bare LF, bare CR, a lone "." line, "\r\n.\n" and no final line ending.
constexpr std::string_view nasty_body = ".leading dot\r\n.\r\nbare lf\n.\nbare cr\r.\r\r\n..\r\nend";

struct entry {
  std::string event;
  std::string output;  // written since the previous event
  std::vector<std::string> results;
  std::string phase;
  bool operator==(const entry&) const = default;
};

struct transcript {
  std::vector<entry> entries;
  std::size_t consumed = 0;
  // Index of the entry where STARTTLS's 220 was followed by more bytes of the
  // same segment: from there on the two runs legitimately differ (an injection
  // refused by feed() in one, a handshake over garbage in the other).
  std::size_t tls_cut = SIZE_MAX;
};

std::string show(const smtp::reply& r) {
  return std::to_string(r.code) + " [" + r.enhanced + "] " + r.text;
}

std::size_t count(std::string_view hay, std::string_view needle) {
  std::size_t n = 0;
  for (std::size_t at = hay.find(needle); at != std::string_view::npos;
       at = hay.find(needle, at + 1))
    ++n;
  return n;
}

class pump {
 public:
  pump(const smtp::client_options& o, const std::vector<smtp::outgoing_message>& messages)
      : session_(o), messages_(messages) {}

  transcript run(const std::vector<std::string_view>& segments, std::size_t chunk) {
    for (std::size_t s = 0; s < segments.size() && !done_; ++s) {
      std::string_view seg = segments[s];
      while (!seg.empty() && !done_) {
        std::string_view piece = seg.substr(0, chunk == 0 ? seg.size() : chunk);
        seg.remove_prefix(piece.size());
        feed(piece, seg);
      }
      if (!done_ && session_.phase() == client_phase::tls_handshake) {
        session_.tls_established();  // fresh bytes arrive through TLS
        drain();
      }
    }
    if (!done_) {  // end of input: the connection is gone
      const auto e = session_.connection_lost("fuzz input ended");
      drain();
      on_event(e);
      CHECK(session_.phase() == client_phase::closed);
    }
    CHECK(session_.feed("250 ok\r\n").consumed == 0);
    CHECK(session_.transactions() == transactions_);
    const std::string& all = written_;
    // No bare CR or LF, and exactly one CRLF "." CRLF per content written.
    for (std::size_t i = 0; i < all.size(); ++i) {
      if (all[i] == '\r') CHECK(i + 1 < all.size() && all[i + 1] == '\n');
      if (all[i] == '\n') CHECK(i > 0 && all[i - 1] == '\r');
    }
    CHECK(all.empty() || all.ends_with("\r\n"));
    CHECK(count(all, "\r\n.\r\n") == bodies_);
    return std::move(t_);
  }

 private:
  void drain() {
    while (!session_.output().empty()) {
      CHECK(session_.output().size() < (1u << 20));
      pending_output_ += session_.output();
      written_ += session_.output();
      session_.clear_output();
    }
  }

  void add(std::string event) {
    entry e;
    e.event = std::move(event);
    e.output = std::move(pending_output_);
    pending_output_.clear();
    e.phase = std::string(to_string(session_.phase()));
    t_.entries.push_back(std::move(e));
  }

  // The pump's reaction to `e`; done_ once the connection is over.
  void on_event(client_session::event e) {
    using event = client_session::event;
    switch (e) {
      case event::need_more:
        return;
      case event::start_tls:
        CHECK(session_.phase() == client_phase::tls_handshake);
        add("start_tls");
        return;
      case event::ready:
        CHECK(session_.phase() == client_phase::ready);
        add("ready");
        next();
        return;
      case event::transaction_done:
        record();
        if (session_.phase() == client_phase::closed) {
          done_ = true;
        } else {
          CHECK(session_.phase() == client_phase::ready);
          next();
        }
        return;
      case event::failed: {
        CHECK(session_.phase() == client_phase::closed);
        const smtp::connection_failure& f = session_.failure();
        CHECK(f.status != smtp::delivery_status::delivered);
        CHECK(f.response.code >= 400 && f.response.code <= 599);
        if (f.status == smtp::delivery_status::permanent)
          CHECK(f.from_server && f.response.code >= 500 &&
                (f.cause == smtp::failure_cause::greeting_refused ||
                 f.cause == smtp::failure_cause::hello_refused));
        add("failed " + std::string(to_string(f.cause)) + " " +
            std::string(to_string(f.status)) + " " + show(f.response) + " in " +
            std::string(to_string(f.phase)) + (f.local_fault ? " local" : "") +
            (f.destination_throttled ? " throttled" : ""));
        done_ = true;
        return;
      }
      case event::closed:
        CHECK(session_.phase() == client_phase::closed);
        add("closed");
        done_ = true;
        return;
    }
  }

  void record() {
    smtp::transaction_result r = session_.take_result();
    ++transactions_;
    CHECK(current_ < messages_.size());
    const smtp::outgoing_message& m = messages_[current_];
    CHECK(r.recipients.size() == m.recipients.size());
    std::vector<std::string> lines;
    for (std::size_t i = 0; i < r.recipients.size(); ++i) {
      const smtp::recipient_result& rr = r.recipients[i];
      CHECK(rr.address == m.recipients[i]);
      const int klass = rr.response.code / 100;
      CHECK(klass == 2 || klass == 4 || klass == 5);  // every recipient was decided
      switch (rr.status) {
        case smtp::delivery_status::delivered:
          CHECK(klass == 2 && rr.from_server && rr.in_reply_to == client_phase::dot);
          break;
        case smtp::delivery_status::temporary:
          CHECK(klass == 4);
          break;
        case smtp::delivery_status::permanent:
          CHECK(klass == 5);
          break;
      }
      lines.push_back(rr.address + ": " + std::string(to_string(rr.status)) + " " +
                      show(rr.response) + " " + std::string(to_string(rr.in_reply_to)) +
                      (rr.from_server ? "" : " client"));
    }
    CHECK(r.connection_closed == (session_.phase() == client_phase::closed));
    add(std::string("done") + (r.destination_throttled ? " throttled" : "") +
        (r.connection_closed ? " closed" : ""));
    t_.entries.back().results = std::move(lines);
  }

  // Phase ready: the next message, or QUIT.
  void next() {
    while (session_.phase() == client_phase::ready) {
      if (next_message_ == messages_.size()) {
        session_.quit();
        drain();
        return;
      }
      current_ = next_message_++;
      const auto e = session_.send(messages_[current_]);
      drain();
      if (e != client_session::event::transaction_done) {
        CHECK(e == client_session::event::need_more);
        return;
      }
      record();
      if (session_.phase() == client_phase::closed) {
        done_ = true;
        return;
      }
    }
  }

  // Feeds one piece; `rest` is what follows it in the same segment.
  void feed(std::string_view piece, std::string_view rest) {
    while (!done_) {
      const auto step = session_.feed(piece);
      CHECK(step.consumed <= piece.size());
      piece.remove_prefix(step.consumed);
      t_.consumed += step.consumed;
      if (session_.phase() == client_phase::data_body) ++bodies_;
      drain();
      if (step.what == client_session::event::start_tls && !(piece.empty() && rest.empty()))
        t_.tls_cut = std::min(t_.tls_cut, t_.entries.size());
      if (step.what == client_session::event::failed &&
          session_.failure().response.text.find("before the TLS handshake") != std::string::npos)
        t_.tls_cut = std::min(t_.tls_cut, t_.entries.size());
      on_event(step.what);
      if (piece.empty() || step.what == client_session::event::start_tls) return;
    }
  }

  client_session session_;
  const std::vector<smtp::outgoing_message>& messages_;
  transcript t_;
  std::string pending_output_;
  std::string written_;
  std::size_t next_message_ = 0;
  std::size_t current_ = 0;
  std::size_t transactions_ = 0;
  std::size_t bodies_ = 0;
  bool done_ = false;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 3) return 0;
  const std::uint8_t opt = data[0], msg = data[1], var = data[2];
  const std::string_view server(reinterpret_cast<const char*>(data + 3), size - 3);

  smtp::client_options o;
  o.helo_name = "relay.fuzz.test";
  o.want_tls = opt & 1;
  o.require_tls = opt & 2;
  o.implicit_tls = opt & 4;
  if (opt & 8) {
    o.auth_user = "relay";
    o.auth_password = opt & 32 ? std::string(400, 'p') : "secret";
  }
  o.allow_plaintext_auth = opt & 16;
  if (opt & 64) o.limits = smtp::reply_limits{64, 256, 8};
  if (opt & 128) o.body_chunk_size = 7;

  // The parser alone: whole input, chunks and single bytes agree.
  const parsed whole = parse_all(server, server.size() + 1, o.limits);
  CHECK(whole.consumed <= server.size());
  CHECK(parse_all(server, 1 + var % 16, o.limits) == whole);
  CHECK(parse_all(server, 1, o.limits) == whole);

  // The session.
  std::vector<smtp::outgoing_message> messages(msg & 3);
  const std::string_view body = var & 128 ? nasty_body : plain_body;
  for (std::size_t k = 0; k < messages.size(); ++k) {
    smtp::outgoing_message& m = messages[k];
    m.sender = msg & 32 ? "" : "sender@relay.fuzz.test";
    const std::size_t n = (msg >> 2) & 7;
    for (std::size_t i = 0; i < n; ++i) m.recipients.emplace_back(recipients_pool[(i + k) % 7]);
    if (var & 32) m.recipients.emplace_back("bad\r\nRCPT TO:<x@example.org>");
    if (var & 64) m.recipients.emplace_back("postmaster");
    if (msg & 64) m.recipients.emplace_back("\xc3\xbc@example.org");
    m.body = body;
    m.size = var & 16 ? std::uint64_t{1} << 40 : body.size();
    m.smtputf8 = msg & 64;
    m.body_8bit = msg & 128;
  }
  std::vector<std::string_view> segments;
  for (std::string_view rest = server;;) {
    const std::size_t ff = rest.find('\xff');
    segments.push_back(rest.substr(0, ff));
    if (ff == std::string_view::npos) break;
    rest.remove_prefix(ff + 1);
  }

  const transcript a = pump(o, messages).run(segments, var & 15);
  const transcript b = pump(o, messages).run(segments, 1);
  CHECK(a.tls_cut == b.tls_cut);
  if (a.tls_cut == SIZE_MAX) {
    CHECK(a.entries == b.entries);
    CHECK(a.consumed == b.consumed);
  } else {
    CHECK(a.entries.size() >= a.tls_cut && b.entries.size() >= a.tls_cut);
    for (std::size_t i = 0; i < a.tls_cut; ++i) CHECK(a.entries[i] == b.entries[i]);
  }
  return 0;
}
