// relayctl's connection to relayd's control socket: blocking, one request per
// connection, buffered line reader (protocol in relayd/control_protocol.hpp).
// Every failure (no daemon, EOF, garbage) prints one line on stderr and exits 1:
// relayctl has nothing to clean up.
#pragma once

#include <boost/json/object.hpp>
#include <cstddef>
#include <string>

namespace relayctl {

// "PROGRAM: WHAT" on stderr (relayctl, or sendmail/mailq), exit status 1.
[[noreturn]] void fail(const std::string& what);

class control_client {
 public:
  explicit control_client(const std::string& socket_path);
  ~control_client();
  control_client(const control_client&) = delete;
  control_client& operator=(const control_client&) = delete;

  void send(const boost::json::object& request);
  // The next JSON line.
  boost::json::object read_object();
  // The next line without its '\n', unparsed; valid until the next read.
  std::string_view read_line();
  // Whether a whole line is already buffered (the next read_line() will not block).
  bool line_ready() const;
  // The next `n` raw bytes (a show's content).
  std::string read_bytes(std::size_t n);
  // read_object() for a final reply: fails with its "error" unless it says ok.
  boost::json::object read_ok();

 private:
  bool fill();

  int fd_ = -1;
  std::string buf_;
  std::size_t pos_ = 0;
};

// A final {"ok":...} line: on failure print its error and exit 1.
void check_ok(const boost::json::object& reply);

}  // namespace relayctl
