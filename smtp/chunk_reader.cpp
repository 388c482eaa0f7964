// BDAT content collection (see chunk_reader.hpp): runs of ordinary octets are
// stored as they are; CR and LF are rewritten into CRLF pairs, one pair per
// line ending, whichever of CR, LF or CRLF the client used.
#include "smtp/chunk_reader.hpp"

#include <utility>

#include "smtp/content_buffer.hpp"

namespace smtp {

chunk_reader::chunk_reader(std::size_t max_size) : max_size_(max_size) {}

void chunk_reader::reset(std::size_t expected_size) {
  content_buffer::presize(content_, expected_size, max_size_);
  received_ = 0;
  pending_cr_ = false;
  too_big_ = false;
}

void chunk_reader::put(std::string_view octets) {
  received_ += octets.size();
  while (!octets.empty()) {
    if (pending_cr_) {
      // CR then anything: one line ending; an LF right after it belongs to it.
      store("\r\n");
      pending_cr_ = false;
      if (octets.front() == '\n') {
        octets.remove_prefix(1);
        continue;
      }
    }
    const std::size_t eol = octets.find_first_of("\r\n");
    store(octets.substr(0, eol));
    if (eol == std::string_view::npos) return;
    if (octets[eol] == '\r') {
      pending_cr_ = true;
    } else {
      store("\r\n");  // a bare LF
    }
    octets.remove_prefix(eol + 1);
  }
}

void chunk_reader::end() {
  if (pending_cr_) store("\r\n");
  pending_cr_ = false;
}

void chunk_reader::discard() {
  too_big_ = true;
  content_buffer::release(content_);
}

std::string chunk_reader::take_content() {
  return std::exchange(content_, std::string());
}

void chunk_reader::store(std::string_view bytes) {
  if (too_big_ || bytes.empty()) return;
  if (content_.size() + bytes.size() > max_size_) {
    discard();  // the message is lost anyway
    return;
  }
  content_buffer::append(content_, bytes);
}

}  // namespace smtp
