// Implements sendmail_submit.hpp: the transaction step by step over a
// unix_stream, each reply read with smtp::reply_parser and classified at once
// (2xx/3xx go on, 4xx temporary, 5xx permanent). Whether a broken connection
// may be retried through the drop directory depends only on whether the final
// "." was written (see submit_status::unknown).
#include "cli/sendmail_submit.hpp"

#include <cctype>
#include <optional>
#include <vector>

#include "cli/sendmail_socket.hpp"
#include "smtp/client_capabilities.hpp"
#include "smtp/command.hpp"
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

}  // namespace

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
  const smtp::server_capabilities caps = smtp::parse_capabilities(*ehlo);

  // REQUIRETLS (RFC 8689): a daemon that does not offer it must not get the
  // message without it; nothing is sent and the caller hears why.
  if (env.requiretls && !caps.requiretls) {
    c.quit();
    smtp::reply r{554, "5.7.10", "relayd does not offer REQUIRETLS on the local socket"};
    return refused(r, "EHLO");
  }
  // MAIL, every RCPT and DATA: one write when the daemon offers PIPELINING
  // (RFC 2920; DATA ends the group), else one round trip each. DSN parameters
  // go only to a server that advertises DSN (RFC 3461 4.1).
  std::vector<smtp::command> group;
  smtp::command mail;
  mail.what = smtp::verb::mail;
  mail.path = env.sender;
  if (env.body == smtp::body_type::eight_bit_mime && caps.eight_bit_mime)
    mail.body = smtp::body_type::eight_bit_mime;
  mail.smtputf8 = env.smtputf8;
  mail.requiretls = env.requiretls;
  if (caps.dsn) {
    mail.ret = env.ret;
    mail.envid = env.envid;
  }
  group.push_back(std::move(mail));
  for (const auto& rcpt : env.recipients) {
    smtp::command to;
    to.what = smtp::verb::rcpt;
    to.path = rcpt.address;
    if (caps.dsn) {
      to.notify = rcpt.notify;
      to.orcpt = rcpt.orcpt;
    }
    group.push_back(std::move(to));
  }
  smtp::command data;
  data.what = smtp::verb::data;
  group.push_back(std::move(data));

  std::string batch;
  for (std::size_t i = 0; i < group.size(); ++i) {
    const std::string line = group[i].encode();
    batch += line;
    if (caps.pipelining && i + 1 < group.size()) continue;
    if (auto w = c.send(batch); !w) return broken(submit_status::unreachable, w.error());
    batch.clear();
  }
  // The replies in order. All or nothing: the first refusal ends the
  // transaction. A pipelined DATA may still have been accepted (354): the
  // connection is then dropped without the final dot, so nothing is queued.
  for (std::size_t i = 0; i < group.size(); ++i) {
    auto r = c.reply(s.timeout);
    if (!r) return broken(submit_status::unreachable, r.error());
    const smtp::verb what = group[i].what;
    const bool ok = what == smtp::verb::data ? r->code == 354
                    : what == smtp::verb::rcpt ? r->code == 250 || r->code == 251
                                               : r->code == 250;
    if (ok) continue;
    std::string line = group[i].encode();
    line.resize(line.size() - 2);  // without CRLF, for the error message
    if (!caps.pipelining) c.quit();
    return refused(*r, line);
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
