// Fuzz target: spool record decoding. Arbitrary bytes never crash the decoder,
// and whatever decodes re-encodes to a record that decodes to the same fields.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "queue/record.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view bytes(reinterpret_cast<const char*>(data), size);
  auto rec = queue::decode("0000000000000001", bytes);
  if (!rec) return 0;
  auto again = queue::decode(rec->id, queue::encode(*rec));
  if (!again || again->sender != rec->sender || again->recipients.size() != rec->recipients.size() ||
      again->size != rec->size || again->flags != rec->flags)
    std::abort();
  for (std::size_t i = 0; i < rec->recipients.size(); ++i) {
    const auto& a = rec->recipients[i];
    const auto& b = again->recipients[i];
    if (a.cause != b.cause || a.in_reply_to != b.in_reply_to || a.reply_text != b.reply_text ||
        a.last_reply != b.last_reply || a.reply_code != b.reply_code)
      std::abort();
  }
  return 0;
}
