// Fuzz target: drop file parsing (relayd/maildrop_file.hpp). Arbitrary bytes
// never crash the reader; whatever parses passes check() and encodes back to
// exactly the same bytes (the format has one spelling per content).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "relayd/maildrop_file.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  auto d = relayd::maildrop::parse(bytes);
  if (!d) {
    if (d.error().empty()) {
      std::fputs("maildrop: refused without a reason\n", stderr);
      std::abort();
    }
    return 0;
  }
  if (!relayd::maildrop::check(d->envelope, d->message)) {
    std::fputs("maildrop: parsed a file check() refuses\n", stderr);
    std::abort();
  }
  if (relayd::maildrop::encode(d->envelope, d->message) != bytes) {
    std::fputs("maildrop: parse/encode round trip changed the bytes\n", stderr);
    std::abort();
  }
  return 0;
}
