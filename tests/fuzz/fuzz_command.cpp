// Fuzz target: the SMTP command parser. Whatever parses must encode to a line
// that parses back to the same command.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "smtp/command.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view line(reinterpret_cast<const char*>(data), size);
  auto cmd = smtp::command::parse(line);
  if (cmd) {
    std::string wire = cmd->encode();  // CRLF-terminated
    if (wire.size() < 2 || wire.substr(wire.size() - 2) != "\r\n") std::abort();
    auto again = smtp::command::parse(std::string_view(wire).substr(0, wire.size() - 2));
    if (!again || !(*again == *cmd)) std::abort();
  } else {
    (void)smtp::to_reply(cmd.error()).encode();
  }
  return 0;
}
