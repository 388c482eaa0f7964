// send_now (send_now.hpp): sends what fits without blocking, stops at a full
// buffer with the count of what went, and meets a closed peer without SIGPIPE.
#include "relayd/send_now.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <chrono>
#include <string>

namespace relayd {
namespace {

struct socket_pair {
  int fd[2] = {-1, -1};
  socket_pair() { EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, fd), 0); }
  ~socket_pair() {
    for (int f : fd)
      if (f >= 0) ::close(f);
  }
  std::string drain() {  // what the peer can read now
    std::string out;
    char buf[65536];
    for (;;) {
      const ssize_t n = ::recv(fd[1], buf, sizeof buf, MSG_DONTWAIT);
      if (n <= 0) return out;
      out.append(buf, static_cast<std::size_t>(n));
    }
  }
};

TEST(send_now, sends_what_fits_at_once) {
  socket_pair s;
  EXPECT_EQ(send_now(s.fd[0], "250 2.0.0 Ok\r\n"), 14u);
  EXPECT_EQ(s.drain(), "250 2.0.0 Ok\r\n");
}

TEST(send_now, stops_at_a_full_buffer_without_blocking) {
  socket_pair s;  // a blocking socket: only MSG_DONTWAIT keeps send_now from waiting
  const timeval give_up{3, 0};  // a send that waits returns after 3 s (a failure, not a hang)
  ASSERT_EQ(::setsockopt(s.fd[0], SOL_SOCKET, SO_SNDTIMEO, &give_up, sizeof give_up), 0);
  const std::string big(32 << 20, 'x');
  const auto t0 = std::chrono::steady_clock::now();
  const std::size_t sent = send_now(s.fd[0], big);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(1)) << "send_now waited";
  EXPECT_GT(sent, 0u);
  EXPECT_LT(sent, big.size());
  EXPECT_EQ(s.drain().size(), sent) << "the count is not what the peer can read";
}

TEST(send_now, a_closed_peer_is_a_short_count_not_a_signal) {
  socket_pair s;
  ::close(s.fd[1]);
  s.fd[1] = -1;
  EXPECT_EQ(send_now(s.fd[0], "QUIT\r\n"), 0u);  // EPIPE; SIGPIPE would end this test
}

TEST(send_now, nothing_to_send_is_zero) {
  socket_pair s;
  EXPECT_EQ(send_now(s.fd[0], ""), 0u);
}

}  // namespace
}  // namespace relayd
