// sendmail's SMTP client for relayd's local submission socket ([local] socket):
// blocking POSIX calls, every connect, read and write bounded by poll(2), no
// Asio. One transaction: EHLO, then MAIL FROM (BODY=8BITMIME, RET=, ENVID= when
// they apply), one RCPT per recipient (NOTIFY=, ORCPT=) and DATA, pipelined in
// one write when offered, the content dot-stuffed (smtp::dot_stuffer), QUIT.
// All or nothing: a refused recipient ends the transaction before the content
// is sent, and nothing is queued.
// Outcomes are named, never thrown: `unreachable` means the daemon cannot have
// the message (nothing was connected, or the end of DATA was never sent), so
// the caller may hand it to the drop directory; `unknown` (connection lost or
// timed out after the end of DATA) means it may be queued, so it must not.
#pragma once

#include <chrono>
#include <string>
#include <string_view>

#include "smtp/envelope.hpp"
#include "smtp/reply.hpp"

namespace sendmail {

// What goes into MAIL and RCPT: the sender, the recipients with NOTIFY/ORCPT,
// RET, ENVID, the body type and SMTPUTF8 (the envelope's other fields are not
// sent: relayd learns who submits from the socket).
using submission = smtp::envelope;

enum class submit_status {
  queued,       // 250 after DATA: the message is in the spool
  temporary,    // a 4xx reply (nothing queued)
  permanent,    // a 5xx reply (nothing queued)
  unreachable,  // no daemon, or it stopped answering before the end of DATA
  unknown,      // the connection failed after the end of DATA: maybe queued
};

struct submit_result {
  submit_status status = submit_status::unreachable;
  smtp::reply reply;   // the deciding reply (queued: the 250; 4xx/5xx: the refusal)
  std::string detail;  // for unreachable/unknown: what went wrong; else the command refused
  std::string queue_id;  // from "queued as ID" in the 250
};

struct submit_settings {
  std::string socket_path;
  std::string helo = "localhost";  // EHLO argument
  // Each wait for a reply or for the socket to take bytes; the final reply to
  // DATA gets final_timeout (the daemon syncs the spool first).
  std::chrono::milliseconds timeout{60'000};
  std::chrono::milliseconds final_timeout{300'000};
};

submit_result submit(const submit_settings& settings, const submission& envelope,
                     std::string_view content);

// The "queued as ID" of a 250 reply's text ("" when absent).
std::string queued_id(std::string_view reply_text);

}  // namespace sendmail
