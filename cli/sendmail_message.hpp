// The message sendmail reads on stdin, made ready to submit, without I/O:
// - input_reader: the bytes as they arrive, LF (or bare CR) line endings made
//   CRLF, and without -i/-oi the sendmail rule that a line holding a single "."
//   ends the input;
// - prepare_message: with -t the recipients of To:/Cc:/Bcc: (folded fields,
//   groups, comments and quoted names understood) and the Bcc: fields removed;
//   From:, Date: and Message-ID: added when missing;
// - qualify / check_address: a bare local part gets "@domain"; an address that
//   is not an RFC 5321 mailbox is an error naming it (exit 65 in main).
// Nothing here throws on input; malformed header fields are left as they are.
#pragma once

#include <cstdint>
#include <expected>
#include <string>
#include <string_view>
#include <vector>

namespace sendmail {

class input_reader {
 public:
  explicit input_reader(bool ignore_dots) : ignore_dots_(ignore_dots) {}
  // Takes the next bytes of stdin. False once a lone "." line ended the input:
  // the caller stops reading, and bytes after that line are not part of it.
  bool put(std::string_view chunk);
  // End of input: a last line without a line ending gets CRLF.
  void finish();
  bool ended() const { return ended_; }
  // The message so far, CRLF line endings.
  const std::string& message() const { return out_; }
  std::string take() { return std::move(out_); }

 private:
  void end_line();

  bool ignore_dots_;
  bool ended_ = false;
  bool pending_cr_ = false;  // the last byte was a CR: its LF may follow
  std::string line_;         // the current line, without its ending
  std::string out_;
};

// The addr-specs of an RFC 5322 address-list (a To:/Cc:/Bcc: value, unfolded or
// not): "Name <a@x>", a@x (comment), "Quoted, Name" <b@y>, group: c@z, d@z; .
// Elements without an address (an empty group, garbage) are skipped.
std::vector<std::string> parse_address_list(std::string_view value);

struct header_fixes {
  bool extract_recipients = false;  // -t
  std::string from_address;         // the envelope sender, qualified ("" for <>)
  std::string full_name;            // -F or the user's name; "" for none
  std::int64_t now = 0;             // Unix seconds, for Date:
  std::string message_id;           // "<unique@host>", for Message-ID:
};

struct prepared_message {
  std::string content;                         // CRLF, ready to dot-stuff
  std::vector<std::string> header_recipients;  // with -t: from To/Cc/Bcc, in order
};

// `content` is input_reader's CRLF message.
prepared_message prepare_message(std::string content, const header_fixes& fixes);

// The From: field for `address` with an optional display name, quoted when it
// holds specials: "From: \"Doe, J.\" <j@x>\r\n".
std::string from_field(std::string_view full_name, std::string_view address);

// "user" -> "user@domain"; an address with '@' (or an empty one) unchanged;
// surrounding <> removed.
std::string qualify(std::string_view address, std::string_view domain);
// Empty: a valid mailbox; otherwise why not ("bad address <x@>: ...").
std::expected<void, std::string> check_address(std::string_view address);

// Any octet with the high bit set (BODY=8BITMIME).
bool has_8bit(std::string_view content);

}  // namespace sendmail
