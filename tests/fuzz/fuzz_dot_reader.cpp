// Fuzz target: the DATA reader. Splitting the input differently must not change
// the outcome (the reader is incremental), and content never exceeds its limit.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "smtp/dot_reader.hpp"

namespace {
smtp::dot_reader::status run(std::string_view in, std::size_t chunk, std::string* content) {
  smtp::dot_reader r(2048, 200);
  while (!in.empty()) {
    auto res = r.put(in.substr(0, chunk));
    in.remove_prefix(res.consumed);
    if (res.what != smtp::dot_reader::status::need_more) {
      if (res.what == smtp::dot_reader::status::complete) *content = r.content();
      return res.what;
    }
  }
  return smtp::dot_reader::status::need_more;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  std::string whole, bytewise;
  auto a = run(in, in.size() + 1, &whole);
  auto b = run(in, 1, &bytewise);
  if (a != b || whole != bytewise) std::abort();
  if (whole.size() > 2048) std::abort();
  return 0;
}
