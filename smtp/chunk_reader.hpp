// Collects the chunks of a BDAT transfer (RFC 3030) into one message. The
// session counts the octets of each chunk and hands them here; nothing is
// un-stuffed and every octet is data (8-bit, NUL, a line that looks like "."),
// so no byte can end the message early: CHUNKING has no terminator to smuggle.
// Line endings are made CRLF as they arrive (a bare CR or bare LF becomes CRLF,
// also when a CR ends one chunk and its LF begins the next) so that the header
// checks, the added fields and the spool see the lines that delivery will send
// (the DATA writer would make the same change later). Past max_size stored
// octets the content is freed and the rest dropped: memory stays bounded and
// too_big() says so. Nothing here fails but the allocator.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace smtp {

class chunk_reader {
 public:
  explicit chunk_reader(std::size_t max_size);

  // Starts a new message; `expected_size` (e.g. from SIZE=) only presizes memory.
  void reset(std::size_t expected_size = 0);
  // Chunk octets, in order; any split gives the same content.
  void put(std::string_view octets);
  // After the LAST chunk: a CR that ended the data becomes CRLF.
  void end();
  // Frees the content and drops whatever follows; too_big() is then true.
  void discard();
  // The content went over max_size or was discarded: nothing is kept.
  bool too_big() const { return too_big_; }

  const std::string& content() const { return content_; }
  std::string take_content();
  // Octets given to put() since reset(), discarded ones included.
  std::uint64_t received() const { return received_; }

 private:
  void store(std::string_view bytes);

  std::size_t max_size_;
  std::string content_;
  std::uint64_t received_ = 0;
  bool pending_cr_ = false;  // the last octet was a CR whose LF may come next
  bool too_big_ = false;
};

}  // namespace smtp
