// Implements sendmail_submit.hpp: the transaction step by step over a
// unix_stream, each reply read with smtp::reply_parser and classified at once
// (2xx/3xx go on, 4xx temporary, 5xx permanent). Whether a broken connection
// may be retried through the drop directory depends only on whether the final
// "." was written (see submit_status::unknown).
#include "cli/sendmail_submit.hpp"

#include <cctype>
#include <optional>

#include "cli/sendmail_socket.hpp"
#include "smtp/dot_stuffer.hpp"
#include "smtp/reply_parser.hpp"

namespace sendmail {
namespace {

constexpr std::size_t data_chunk = 64 * 1024;

class smtp_conversation {
 public:
  explicit smtp_conversation(const submit_settings& s) : s_(s) {}

  std::expected<void, std::string> connect() { return sock_.connect(s_.socket_path, s_.timeout); }

  // The next complete reply, or what went wrong reading it.
  std::expected<smtp::reply, std::string> reply(std::chrono::milliseconds timeout) {
    for (;;) {
      if (!pending_.empty()) {
        auto r = parser_.put(pending_);
        pending_.erase(0, r.consumed);
        if (r.what == smtp::reply_parser::status::reply) return parser_.take();
        if (r.what == smtp::reply_parser::status::error)
          return std::unexpected("bad reply from relayd: " +
                                 std::string(smtp::to_string(parser_.failure())));
      }
      if (auto r = sock_.read_some(pending_, timeout); !r) return std::unexpected(r.error());
    }
  }

  std::expected<void, std::string> send(std::string_view bytes) {
    return sock_.write_all(bytes, s_.timeout);
  }

  // Sends `line` + CRLF and reads its reply.
  std::expected<smtp::reply, std::string> command(const std::string& line) {
    if (auto w = send(line + "\r\n"); !w) return std::unexpected(w.error());
    return reply(s_.timeout);
  }

  void quit() {
    if (send("QUIT\r\n")) (void)reply(std::chrono::milliseconds(2000));
  }

 private:
  const submit_settings& s_;
  unix_stream sock_;
  smtp::reply_parser parser_;
  std::string pending_;
};

submit_result refused(const smtp::reply& r, std::string command) {
  submit_result out;
  out.status = r.code >= 500 ? submit_status::permanent : submit_status::temporary;
  out.reply = r;
  out.detail = std::move(command);
  return out;
}

submit_result broken(submit_status s, std::string why) {
  submit_result out;
  out.status = s;
  out.detail = std::move(why);
  return out;
}

// Whether the EHLO reply lists `keyword` (as a whole word, any case).
bool advertises(const smtp::reply& ehlo, std::string_view keyword) {
  std::size_t start = 0;
  const std::string& t = ehlo.text;
  while (start <= t.size()) {
    auto nl = t.find('\n', start);
    std::string_view line(t.data() + start, (nl == std::string::npos ? t.size() : nl) - start);
    std::string_view word = line.substr(0, line.find(' '));
    if (word.size() == keyword.size()) {
      bool same = true;
      for (std::size_t i = 0; i < word.size(); ++i)
        same &= std::toupper(static_cast<unsigned char>(word[i])) == keyword[i];
      if (same) return true;
    }
    if (nl == std::string::npos) break;
    start = nl + 1;
  }
  return false;
}

std::string notify_text(std::uint8_t bits) {
  if (bits & smtp::notify_never) return "NEVER";
  std::string out;
  auto add = [&](std::uint8_t b, const char* w) {
    if (!(bits & b)) return;
    if (!out.empty()) out += ',';
    out += w;
  };
  add(smtp::notify_success, "SUCCESS");
  add(smtp::notify_failure, "FAILURE");
  add(smtp::notify_delay, "DELAY");
  return out;
}

}  // namespace

std::string xtext(std::string_view s) {
  static constexpr char hex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (c < 0x21 || c > 0x7e || c == '+' || c == '=') {
      out += '+';
      out += hex[c >> 4];
      out += hex[c & 15];
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

std::string queued_id(std::string_view text) {
  constexpr std::string_view marker = "queued as ";
  auto at = text.find(marker);
  if (at == std::string_view::npos) return {};
  text.remove_prefix(at + marker.size());
  std::size_t n = 0;
  while (n < text.size() && std::isalnum(static_cast<unsigned char>(text[n]))) ++n;
  return std::string(text.substr(0, n));
}

submit_result submit(const submit_settings& s, const submission& env, std::string_view content) {
  smtp_conversation c(s);
  if (auto r = c.connect(); !r) return broken(submit_status::unreachable, r.error());
  auto greeting = c.reply(s.timeout);
  if (!greeting) return broken(submit_status::unreachable, greeting.error());
  if (greeting->code != 220) return refused(*greeting, "connect");

  auto ehlo = c.command("EHLO " + s.helo);
  if (!ehlo) return broken(submit_status::unreachable, ehlo.error());
  if (ehlo->code != 250) return refused(*ehlo, "EHLO");
  // DSN parameters go only to a server that advertises DSN (RFC 3461 4.1).
  const bool dsn = advertises(*ehlo, "DSN");

  // REQUIRETLS (RFC 8689): a daemon that does not offer it must not get the
  // message without it; nothing is sent and the caller hears why.
  if (env.requiretls && !advertises(*ehlo, "REQUIRETLS")) {
    c.quit();
    smtp::reply r{554, "5.7.10", "relayd does not offer REQUIRETLS on the local socket"};
    return refused(r, "EHLO");
  }
  std::string mail = "MAIL FROM:<" + env.sender + ">";
  if (env.body == smtp::body_type::eight_bit_mime && advertises(*ehlo, "8BITMIME"))
    mail += " BODY=8BITMIME";
  if (env.smtputf8) mail += " SMTPUTF8";
  if (env.requiretls) mail += " REQUIRETLS";
  if (dsn && env.ret == smtp::dsn_ret::full) mail += " RET=FULL";
  if (dsn && env.ret == smtp::dsn_ret::headers) mail += " RET=HDRS";
  if (dsn && !env.envid.empty()) mail += " ENVID=" + xtext(env.envid);
  auto r = c.command(mail);
  if (!r) return broken(submit_status::unreachable, r.error());
  if (r->code != 250) {
    c.quit();
    return refused(*r, mail);
  }
  for (const auto& rcpt : env.recipients) {
    std::string line = "RCPT TO:<" + rcpt.address + ">";
    if (dsn && rcpt.notify) line += " NOTIFY=" + notify_text(rcpt.notify);
    if (dsn && !rcpt.orcpt.empty()) line += " ORCPT=" + xtext(rcpt.orcpt);
    r = c.command(line);
    if (!r) return broken(submit_status::unreachable, r.error());
    if (r->code != 250 && r->code != 251) {
      c.quit();  // nothing was sent: the transaction dies with the connection
      return refused(*r, line);
    }
  }
  r = c.command("DATA");
  if (!r) return broken(submit_status::unreachable, r.error());
  if (r->code != 354) {
    c.quit();
    return refused(*r, "DATA");
  }

  smtp::dot_stuffer stuffer;
  std::string out;
  for (std::size_t at = 0; at < content.size(); at += data_chunk) {
    out.clear();
    stuffer.put(content.substr(at, data_chunk), out);
    if (auto w = c.send(out); !w) return broken(submit_status::unreachable, w.error());
  }
  out.clear();
  stuffer.finish(out);
  // From here on the daemon may have the message: a failure is `unknown`.
  if (auto w = c.send(out); !w) return broken(submit_status::unknown, w.error());
  auto final_reply = c.reply(s.final_timeout);
  if (!final_reply) return broken(submit_status::unknown, final_reply.error());
  if (final_reply->code != 250) {
    c.quit();
    return refused(*final_reply, "end of DATA");
  }
  c.quit();
  submit_result ok;
  ok.status = submit_status::queued;
  ok.reply = *final_reply;
  ok.queue_id = queued_id(final_reply->text);
  return ok;
}

}  // namespace sendmail
