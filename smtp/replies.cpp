// The texts and codes of every reply relayd sends (see replies.hpp). Changing a
// wording here changes it everywhere; tests and dialogue files match the codes.
#include "smtp/replies.hpp"

#include <string>
#include <utility>

namespace smtp::replies {
namespace {

reply make(int code, const char* enhanced, std::string text) {
  return reply{code, enhanced, std::move(text)};
}

}  // namespace

reply greeting(std::string_view hostname) {
  return make(220, "", std::string(hostname) + " ESMTP relayd");
}

reply ehlo(std::string_view hostname, std::uint64_t max_message_size, bool starttls, bool auth,
           bool requiretls) {
  std::string text(hostname);
  text += "\nPIPELINING\nSIZE ";
  text += std::to_string(max_message_size);
  text += "\n8BITMIME\nENHANCEDSTATUSCODES\nSMTPUTF8";
  text += "\nCHUNKING";
  text += "\nDSN";  // RFC 3461
  if (starttls) text += "\nSTARTTLS";
  if (requiretls) text += "\nREQUIRETLS";
  if (auth) text += "\nAUTH PLAIN LOGIN";
  return make(250, "", std::move(text));
}

reply helo(std::string_view hostname) {
  return make(250, "", std::string(hostname));
}
reply closing() {
  return make(221, "2.0.0", "Bye");
}
reply shutting_down() {
  return make(421, "4.3.2", "Service shutting down");
}
reply idle_timeout() {
  return make(421, "4.4.2", "Idle timeout, closing connection");
}
reply command_timeout() {
  return make(421, "4.4.2", "Timeout reading command, closing connection");
}
reply data_timeout() {
  return make(421, "4.4.2", "Timeout reading message data, closing connection");
}
reply too_many_connections() {
  return make(421, "4.7.0", "Too many connections, try again later");
}
reply too_many_connections_from_client() {
  return make(421, "4.7.0", "Too many connections from you, slow down");
}
reply too_many_errors() {
  return make(421, "4.7.0", "Too many errors, closing connection");
}

reply too_many_auth_failures() {
  return make(421, "4.7.0", "Too many authentication failures, closing connection");
}

reply ok() {
  return make(250, "2.0.0", "Ok");
}
reply sender_ok() {
  return make(250, "2.1.0", "Ok");
}
reply recipient_ok() {
  return make(250, "2.1.5", "Ok");
}
reply start_data() {
  return make(354, "", "End data with <CR><LF>.<CR><LF>");
}
reply queued(std::string_view id) {
  return make(250, "2.0.0", "Ok: queued as " + std::string(id));
}
reply chunk_received(std::uint64_t octets) {
  return make(250, "2.0.0", std::to_string(octets) + " octets received");
}
reply cannot_vrfy() {
  return make(252, "2.5.0", "Cannot VRFY user, but will accept message and attempt delivery");
}
reply help() {
  return make(214, "2.0.0", "Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP");
}

reply unknown_command() {
  return make(500, "5.5.1", "Command unrecognized");
}
reply not_implemented() {
  return make(502, "5.5.1", "Command not implemented");
}
reply line_too_long() {
  return make(500, "5.5.2", "Line too long");
}
reply bare_lf() {
  return make(500, "5.5.2", "Bare LF in command; lines must end with CRLF");
}
reply invalid_characters() {
  return make(500, "5.5.2", "Syntax error: control character in command");
}
reply no_arguments_allowed() {
  return make(501, "5.5.4", "Syntax error: no arguments allowed");
}
reply missing_argument() {
  return make(501, "5.5.4", "Syntax error: argument required");
}
reply helo_syntax() {
  return make(501, "5.5.4", "Syntax: EHLO hostname (or HELO hostname)");
}
reply mail_syntax() {
  return make(501, "5.5.4", "Syntax: MAIL FROM:<address> [parameters]");
}
reply rcpt_syntax() {
  return make(501, "5.5.4", "Syntax: RCPT TO:<address>");
}
reply bad_sender_syntax() {
  return make(501, "5.1.7", "Bad sender address syntax");
}
reply bdat_syntax() {
  return make(501, "5.5.4", "Syntax: BDAT chunk-size [LAST]");
}
reply bad_recipient_syntax() {
  return make(501, "5.1.3", "Bad recipient address syntax");
}
reply bad_parameter() {
  return make(501, "5.5.4", "Invalid parameter syntax");
}
reply unknown_parameter() {
  return make(555, "5.5.4", "Unsupported parameter");
}

reply bad_sequence() {
  return make(503, "5.5.1", "Bad sequence of commands");
}
reply need_helo() {
  return make(503, "5.5.1", "Bad sequence of commands: send EHLO or HELO first");
}
reply nested_mail() {
  return make(503, "5.5.1", "Bad sequence of commands: MAIL already given");
}
reply need_mail() {
  return make(503, "5.5.1", "Bad sequence of commands: send MAIL first");
}
reply need_rcpt() {
  return make(503, "5.5.1", "Bad sequence of commands: send RCPT first");
}
reply data_after_bdat() {
  return make(503, "5.5.1", "Bad sequence of commands: DATA after BDAT");
}
reply no_valid_recipients() {
  return make(554, "5.5.1", "No valid recipients");
}

reply relay_denied() {
  return make(554, "5.7.1", "Relay access denied");
}
reply too_many_recipients() {
  return make(452, "4.5.3", "Too many recipients");
}
reply message_too_big() {
  return make(552, "5.3.4", "Message size exceeds fixed limit");
}
reply header_too_big() {
  return make(552, "5.3.4", "Message header too big");
}
reply message_line_too_long(std::size_t max_line_length) {
  return make(500, "5.5.2",
              "Line too long in message; text lines are limited to " +
                  std::to_string(max_line_length) + " octets");
}
reply bare_cr_or_lf_in_data() {
  return make(550, "5.6.0", "Bare CR or LF in message; lines must end with CRLF");
}
reply needs_smtputf8() {
  return make(553, "5.6.7", "Non-ASCII address requires SMTPUTF8");
}
reply no_local_delivery() {
  return make(550, "5.1.1", "Recipient address must have a domain; there are no local mailboxes");
}
reply unknown_local_recipient(std::string_view address) {
  return make(550, "5.1.1",
              "<" + std::string(address) +
                  ">: Recipient address rejected: user unknown in local recipient table");
}

reply ready_to_start_tls() {
  return make(220, "2.0.0", "Ready to start TLS");
}
reply tls_already_active() {
  return make(503, "5.5.1", "Bad sequence of commands: TLS already active");
}
reply in_transaction() {
  return make(503, "5.5.1", "Bad sequence of commands: MAIL transaction in progress");
}
reply auth_succeeded() {
  return make(235, "2.7.0", "Authentication successful");
}
reply already_authenticated() {
  return make(503, "5.5.1", "Bad sequence of commands: already authenticated");
}
reply auth_syntax() {
  return make(501, "5.5.4", "Syntax: AUTH mechanism [initial-response]");
}
reply auth_mechanism_unknown() {
  return make(504, "5.5.4", "Unrecognized authentication type");
}
reply auth_cancelled() {
  return make(501, "5.0.0", "Authentication cancelled");
}
reply auth_bad_base64() {
  return make(501, "5.5.2", "Cannot decode response (base64 expected)");
}
reply auth_required() {
  return make(530, "5.7.0", "Authentication required");
}
reply auth_failed() {
  return make(535, "5.7.8", "Authentication credentials invalid");
}
reply encryption_required() {
  return make(538, "5.7.11", "Encryption required for requested authentication mechanism");
}

reply requiretls_not_offered() {
  return make(530, "5.7.10", "REQUIRETLS needs a TLS session: issue STARTTLS first");
}

reply spool_full() {
  return make(452, "4.3.1", "Insufficient system storage");
}
reply local_error() {
  return make(451, "4.3.0", "Local error in processing");
}

reply local_user_not_allowed(std::string_view user) {
  return make(550, "5.7.1", "user " + std::string(user) + " is not allowed to submit mail");
}
reply local_sender_not_allowed(std::string_view user, std::string_view sender) {
  return make(553, "5.7.1",
              "user " + std::string(user) + " may not send as <" + std::string(sender) + ">");
}

}  // namespace smtp::replies
