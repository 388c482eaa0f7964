// Named constructors for every reply relayd sends, so the codes, enhanced codes
// (RFC 3463) and wording live in one place. Each function returns a fresh
// smtp::reply; none fails. The greeting and the EHLO/HELO replies carry no
// enhanced code (RFC 2034); neither does 354.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "smtp/reply.hpp"

namespace smtp::replies {

// Connection.
reply greeting(std::string_view hostname);  // 220 HOSTNAME ESMTP relayd
// 250-HOSTNAME / PIPELINING / SIZE n / 8BITMIME / ENHANCEDSTATUSCODES / SMTPUTF8 /
// CHUNKING / DSN, then STARTTLS, REQUIRETLS (RFC 8689) and "AUTH PLAIN LOGIN"
// when offered.
reply ehlo(std::string_view hostname, std::uint64_t max_message_size, bool starttls = false,
           bool auth = false, bool requiretls = false);
reply helo(std::string_view hostname);     // 250 HOSTNAME
reply closing();                           // 221 2.0.0 Bye
reply shutting_down();                     // 421 4.3.2 Service shutting down
reply idle_timeout();                      // 421 4.4.2 Idle timeout
reply command_timeout();                   // 421 4.4.2 Timeout reading a command line
reply data_timeout();                      // 421 4.4.2 Timeout reading message data
reply too_many_connections();              // 421 4.7.0 Too many connections, try again later
reply too_many_connections_from_client();  // 421 4.7.0 Too many connections from you, slow down (rate)
reply too_many_errors();                   // 421 4.7.0 Too many errors
reply too_many_auth_failures();            // 421 4.7.0 Too many authentication failures

// Positive replies.
reply ok();                         // 250 2.0.0 Ok (RSET, NOOP)
reply sender_ok();                  // 250 2.1.0 Ok
reply recipient_ok();               // 250 2.1.5 Ok
reply start_data();                 // 354 End data with <CR><LF>.<CR><LF>
reply queued(std::string_view id);  // 250 2.0.0 Ok: queued as ID
reply chunk_received(std::uint64_t octets);  // 250 2.0.0 N octets received (BDAT, not LAST)
reply cannot_vrfy();                // 252 2.5.0 Cannot VRFY user, ...
reply help();                       // 214 2.0.0 ...

// Command syntax.
reply unknown_command();       // 500 5.5.1 Command unrecognized
reply not_implemented();       // 502 5.5.1 Command not implemented
reply line_too_long();         // 500 5.5.2 Line too long
reply bare_lf();               // 500 5.5.2 Bare LF in command; lines must end with CRLF
reply invalid_characters();    // 500 5.5.2 Syntax error: control character in command
reply no_arguments_allowed();  // 501 5.5.4 Syntax error: no arguments allowed
reply missing_argument();      // 501 5.5.4 Syntax error: argument required
reply helo_syntax();           // 501 5.5.4 Syntax: EHLO hostname
reply mail_syntax();           // 501 5.5.4 Syntax: MAIL FROM:<address> [parameters]
reply rcpt_syntax();           // 501 5.5.4 Syntax: RCPT TO:<address>
reply bdat_syntax();           // 501 5.5.4 Syntax: BDAT chunk-size [LAST]
reply bad_sender_syntax();     // 501 5.1.7 Bad sender address syntax
reply bad_recipient_syntax();  // 501 5.1.3 Bad recipient address syntax
reply bad_parameter();         // 501 5.5.4 Invalid parameter syntax
reply unknown_parameter();     // 555 5.5.4 Unsupported parameter

// Command sequence.
reply bad_sequence();         // 503 5.5.1 Bad sequence of commands
reply need_helo();            // 503 5.5.1 Bad sequence of commands: send EHLO or HELO first
reply nested_mail();          // 503 5.5.1 Bad sequence of commands: MAIL already given
reply need_mail();            // 503 5.5.1 Bad sequence of commands: send MAIL first
reply need_rcpt();            // 503 5.5.1 Bad sequence of commands: send RCPT first
reply data_after_bdat();      // 503 5.5.1 Bad sequence of commands: DATA after BDAT
reply no_valid_recipients();  // 554 5.5.1 No valid recipients

// Policy and limits.
reply relay_denied();         // 554 5.7.1 Relay access denied
reply too_many_recipients();  // 452 4.5.3 Too many recipients
reply message_too_big();      // 552 5.3.4 Message size exceeds fixed limit
reply header_too_big();       // 552 5.3.4 Message header too big
// 500 5.5.2 Line too long in message; text lines are limited to N octets
reply message_line_too_long(std::size_t max_line_length);
// 550 5.6.0 Bare CR or LF in message; lines must end with CRLF (then the connection closes)
reply bare_cr_or_lf_in_data();
reply needs_smtputf8();     // 553 5.6.7 Non-ASCII address requires SMTPUTF8
reply no_local_delivery();  // 550 5.1.1 Recipient address must have a domain; ...
// 550 5.1.1 <ADDRESS>: Recipient address rejected: user unknown in local recipient table
reply unknown_local_recipient(std::string_view address);

// STARTTLS (RFC 3207) and AUTH (RFC 4954).
reply ready_to_start_tls();      // 220 2.0.0 Ready to start TLS
reply tls_already_active();      // 503 5.5.1 Bad sequence of commands: TLS already active
reply in_transaction();          // 503 5.5.1 Bad sequence of commands: MAIL transaction in progress
reply auth_succeeded();          // 235 2.7.0 Authentication successful
reply already_authenticated();   // 503 5.5.1 Bad sequence of commands: already authenticated
reply auth_syntax();             // 501 5.5.4 Syntax: AUTH mechanism [initial-response]
reply auth_mechanism_unknown();  // 504 5.5.4 Unrecognized authentication type
reply auth_cancelled();          // 501 5.0.0 Authentication cancelled
reply auth_bad_base64();         // 501 5.5.2 Cannot decode response (base64 expected)
reply auth_required();           // 530 5.7.0 Authentication required
reply auth_failed();             // 535 5.7.8 Authentication credentials invalid
reply encryption_required();     // 538 5.7.11 Encryption required for requested authentication
                                 // mechanism
reply requiretls_not_offered();  // 530 5.7.10 REQUIRETLS needs a TLS session (STARTTLS first)

// Spool.
reply spool_full();   // 452 4.3.1 Insufficient system storage (spool, or smtp.max_data_memory)
reply local_error();  // 451 4.3.0 Local error in processing

// Local submission policy ([local] allowed_users, senders).
// 550 5.7.1 user NAME is not allowed to submit mail
reply local_user_not_allowed(std::string_view user);
// 553 5.7.1 user NAME may not send as <SENDER>
reply local_sender_not_allowed(std::string_view user, std::string_view sender);

}  // namespace smtp::replies
