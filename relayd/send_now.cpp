// Implements send_now.hpp.
#include "relayd/send_now.hpp"

#include <sys/socket.h>

#include <cerrno>

namespace relayd {

std::size_t send_now(int fd, std::string_view data) {
  std::size_t sent = 0;
  while (sent < data.size()) {
    const ssize_t n =
        ::send(fd, data.data() + sent, data.size() - sent, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n > 0)
      sent += static_cast<std::size_t>(n);
    else if (n < 0 && errno == EINTR)
      continue;
    else
      break;  // EAGAIN: the rest waits for the socket; an error: the rest reports it
  }
  return sent;
}

}  // namespace relayd
