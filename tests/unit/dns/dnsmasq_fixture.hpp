// Test DNS servers on loopback: a real dnsmasq serving chosen records on a free
// port (started and stopped by the test), and a tiny fake server that answers
// every query with one rcode (SERVFAIL, REFUSED) or never (silent, for timeouts).
// Header-only, POSIX only, so any test suite can include it. Failures throw.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace relayd_test {

namespace dns_detail {

// A socket on 127.0.0.1 (port 0: any free port); throws on failure.
inline int bind_loopback(int type, std::uint16_t port) {
  int fd = ::socket(AF_INET, type | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::runtime_error(std::string("socket: ") + std::strerror(errno));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

inline std::uint16_t local_port(int fd) {
  sockaddr_in a{};
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  return ntohs(a.sin_port);
}

// A port free for both UDP and TCP right now (dnsmasq needs both).
inline std::uint16_t free_port() {
  for (int attempt = 0; attempt < 50; ++attempt) {
    int udp = bind_loopback(SOCK_DGRAM, 0);
    if (udp < 0) continue;
    std::uint16_t port = local_port(udp);
    int tcp = bind_loopback(SOCK_STREAM, port);
    ::close(udp);
    if (tcp >= 0) {
      ::close(tcp);
      return port;
    }
  }
  throw std::runtime_error("no free loopback port");
}

// True when something answers a DNS query on 127.0.0.1:port within `wait`.
inline bool answers(std::uint16_t port, std::chrono::milliseconds wait) {
  int fd = bind_loopback(SOCK_DGRAM, 0);
  if (fd < 0) return false;
  // ID 0x1234, RD, one question: "probe.invalid" A IN.
  const unsigned char query[] = {0x12, 0x34, 0x01, 0x00, 0,   1,   0,   0, 0,   0,   0,
                                 0,    5,    'p',  'r',  'o', 'b', 'e', 7, 'i', 'n', 'v',
                                 'a',  'l',  'i',  'd',  0,   0,   1,   0, 1};
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(port);
  to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::sendto(fd, query, sizeof query, 0, reinterpret_cast<sockaddr*>(&to), sizeof to);
  pollfd p{fd, POLLIN, 0};
  bool ok = false;
  if (::poll(&p, 1, static_cast<int>(wait.count())) == 1) {
    unsigned char buf[512];
    ok = ::recv(fd, buf, sizeof buf, 0) >= 12;
  }
  ::close(fd);
  return ok;
}

}  // namespace dns_detail

// dnsmasq on 127.0.0.1:port() serving only what `records` says, e.g.
//   {"--mx-host=example.test,mx1.example.test,10",
//    "--host-record=mx1.example.test,127.0.0.2,::2"}
// Names under `local_zones` (default "test") that are not configured answer
// NXDOMAIN; anything else answers REFUSED (no upstream). TTL: `ttl` seconds.
class dnsmasq {
 public:
  explicit dnsmasq(std::vector<std::string> records, int ttl = 60,
                   std::vector<std::string> local_zones = {"test"})
      : records_(std::move(records)), ttl_(ttl), zones_(std::move(local_zones)) {
    start();
  }
  ~dnsmasq() { stop(); }
  dnsmasq(const dnsmasq&) = delete;
  dnsmasq& operator=(const dnsmasq&) = delete;

  std::uint16_t port() const { return port_; }
  std::string server() const { return "127.0.0.1:" + std::to_string(port_); }
  bool running() const { return pid_ > 0; }

  void stop() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGTERM);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
  }

  // Starts again on the same port (after stop()).
  void restart() {
    stop();
    launch(port_);
    if (!wait_ready()) throw std::runtime_error("dnsmasq did not restart on its port");
  }

 private:
  void start() {
    for (int attempt = 0; attempt < 5; ++attempt) {
      launch(dns_detail::free_port());
      if (wait_ready()) return;
      stop();
    }
    throw std::runtime_error("dnsmasq did not start (is /usr/sbin/dnsmasq installed?)");
  }

  // Not --no-daemon: in that mode dnsmasq serves a TCP connection in its main
  // process and answers no UDP until the client closes it (c-ares keeps it open).
  void launch(std::uint16_t port) {
    port_ = port;
    std::vector<std::string> args = {"/usr/sbin/dnsmasq",
                                     "--keep-in-foreground",
                                     "--no-resolv",
                                     "--no-hosts",
                                     "--no-poll",
                                     "--conf-file=/dev/null",
                                     "--pid-file=",
                                     "--bind-interfaces",
                                     "--listen-address=127.0.0.1",
                                     "--port=" + std::to_string(port),
                                     "--local-ttl=" + std::to_string(ttl_),
                                     "--log-facility=-"};
    for (const auto& z : zones_) args.push_back("--local=/" + z + "/");
    args.insert(args.end(), records_.begin(), records_.end());
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
    pid_t pid = -1;
    int rc = posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0) throw std::runtime_error(std::string("posix_spawn dnsmasq: ") + std::strerror(rc));
    pid_ = pid;
  }

  bool wait_ready() {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (std::chrono::steady_clock::now() < deadline) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {  // exited: port taken, bad option
        pid_ = -1;
        return false;
      }
      if (dns_detail::answers(port_, std::chrono::milliseconds(50))) return true;
    }
    return false;
  }

  std::vector<std::string> records_;
  int ttl_;
  std::vector<std::string> zones_;
  std::uint16_t port_ = 0;
  pid_t pid_ = -1;
};

// A UDP DNS "server" on 127.0.0.1 that answers every query with `rcode`
// (2 SERVFAIL, 5 REFUSED), or with nothing at all when silent.
class fake_dns_server {
 public:
  static constexpr int servfail = 2;
  static constexpr int refused = 5;
  static constexpr int silent = -1;

  explicit fake_dns_server(int rcode) : rcode_(rcode) {
    fd_ = dns_detail::bind_loopback(SOCK_DGRAM, 0);
    if (fd_ < 0) throw std::runtime_error("fake DNS server: cannot bind");
    port_ = dns_detail::local_port(fd_);
    if (rcode_ != silent) thread_ = std::thread([this] { serve(); });
  }
  ~fake_dns_server() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
    ::close(fd_);
  }
  fake_dns_server(const fake_dns_server&) = delete;
  fake_dns_server& operator=(const fake_dns_server&) = delete;

  std::uint16_t port() const { return port_; }
  std::string server() const { return "127.0.0.1:" + std::to_string(port_); }
  int queries() const { return queries_; }

 private:
  void serve() {
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 20) != 1) continue;
      unsigned char buf[1500];
      sockaddr_storage from{};
      socklen_t len = sizeof from;
      ssize_t n = ::recvfrom(fd_, buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&from), &len);
      if (n < 12) continue;
      ++queries_;
      // The query echoed back as a response: QR and RA set, the chosen rcode,
      // no answers. The question stays, so the resolver accepts it as the reply.
      buf[2] = static_cast<unsigned char>(buf[2] | 0x80);
      buf[3] = static_cast<unsigned char>(0x80 | (rcode_ & 0x0F));
      buf[6] = buf[7] = buf[8] = buf[9] = 0;
      ::sendto(fd_, buf, static_cast<std::size_t>(n), 0, reinterpret_cast<sockaddr*>(&from), len);
    }
  }

  int rcode_;
  int fd_ = -1;
  std::uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> queries_{0};
  std::thread thread_;
};

// A loopback UDP port with nothing bound: queries get "connection refused".
inline std::uint16_t closed_udp_port() {
  int fd = dns_detail::bind_loopback(SOCK_DGRAM, 0);
  if (fd < 0) throw std::runtime_error("cannot bind");
  std::uint16_t port = dns_detail::local_port(fd);
  ::close(fd);
  return port;
}

}  // namespace relayd_test
