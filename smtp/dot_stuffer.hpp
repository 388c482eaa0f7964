// Writes message content in the DATA form of RFC 5321 4.5.2, for the client side:
// a "." at the start of a line gets a second ".", the content ends with CRLF and
// then the "." CRLF terminator. Line endings go out as CRLF whatever they were: a
// bare CR or bare LF in the content becomes CRLF, so the only CRLF "." CRLF in the
// output is the terminator and a receiver cannot disagree with relayd on where
// the message ends (SMTP smuggling). Works on pieces of any size, so a 35 MB
// message is stuffed in bounded chunks; any split of the input gives the same
// output. Nothing here fails.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace smtp {

class dot_stuffer {
 public:
  // Appends the stuffed form of the next piece of content to `out`.
  void put(std::string_view content, std::string& out);
  // Appends the end: CRLF when the content did not end with a line ending, then
  // ".\r\n". The stuffer is then ready for the next message.
  void finish(std::string& out);
  void reset();

 private:
  bool line_start_ = true;   // the next content byte starts a line
  bool pending_cr_ = false;  // the last piece ended with a CR; its LF may follow
};

// The whole content at once, terminator included, in one allocation for
// CRLF-clean content.
std::string dot_stuff(std::string_view content);

}  // namespace smtp
