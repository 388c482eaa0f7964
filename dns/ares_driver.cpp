// c-ares driven by Asio (see ares_driver.hpp). c-ares reports which sockets it
// wants to read or write through its socket-state callback; each gets a watch
// whose async_wait calls ares_process_fd. ares_timeout drives one steady_timer.
// Asio handlers hold a weak token so none touches the driver after destruction.
#include "dns/ares_driver.hpp"

#include <ares.h>

#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <mutex>
#include <random>
#include <stdexcept>
#include <unordered_map>

namespace dns::detail {

namespace asio = boost::asio;

namespace {

void library_init() {
  static std::once_flag once;
  std::call_once(once, [] {
    if (int rc = ares_library_init(ARES_LIB_INIT_ALL); rc != ARES_SUCCESS)
      throw std::runtime_error(std::string("c-ares: ") + ares_strerror(rc));
  });
}

// One socket c-ares has open; the descriptor is only borrowed.
struct watch {
  watch(asio::io_context& io, int fd) : fd(fd), sd(io) {}
  ~watch() { release(); }
  void release() {
    closed = true;
    if (sd.is_open()) sd.release();  // cancels pending waits; c-ares closes the fd
  }

  int fd;
  asio::posix::stream_descriptor sd;
  bool want[2] = {false, false};     // [0] read, [1] write: what c-ares asked for
  bool waiting[2] = {false, false};  // an async_wait is outstanding
  bool closed = false;
};

// How many servers c-ares would take from /etc/resolv.conf.
std::size_t system_server_count() {
  ares_channel probe = nullptr;
  ares_options o{};
  o.flags = ARES_FLAG_NOSEARCH;
  if (ares_init_options(&probe, &o, ARES_OPT_FLAGS) != ARES_SUCCESS) return 0;
  ares_addr_node* servers = nullptr;
  std::size_t count = 0;
  if (ares_get_servers(probe, &servers) == ARES_SUCCESS)
    for (auto* s = servers; s != nullptr; s = s->next) ++count;
  ares_free_data(servers);
  ares_destroy(probe);
  return count;
}

}  // namespace

struct ares_driver::impl {
  impl(asio::io_context& io) : io(io), timer(io) {}

  static void on_sock_state(void* data, ares_socket_t fd, int readable, int writable) {
    static_cast<impl*>(data)->sock_state(fd, readable != 0, writable != 0);
  }

  static void on_answer(void* arg, int status, int /*timeouts*/, unsigned char* abuf,
                        int alen) noexcept {
    std::unique_ptr<handler> h(static_cast<handler*>(arg));
    (*h)(status, abuf, alen);
  }

  // ares_send hands over every reply as ARES_SUCCESS: map the rcode as ares_query does.
  static void on_sent(void* arg, int status, int timeouts, unsigned char* abuf,
                      int alen) noexcept {
    if (status == ARES_SUCCESS && abuf != nullptr && alen >= 12) {
      const int rcode = abuf[3] & 0x0F;
      const int answers = (abuf[6] << 8) | abuf[7];
      switch (rcode) {
        case 0: status = answers > 0 ? ARES_SUCCESS : ARES_ENODATA; break;
        case 1: status = ARES_EFORMERR; break;
        case 2: status = ARES_ESERVFAIL; break;
        case 3: status = ARES_ENOTFOUND; break;
        case 4: status = ARES_ENOTIMP; break;
        case 5: status = ARES_EREFUSED; break;
        default: status = ARES_EBADRESP; break;
      }
    } else if (status == ARES_SUCCESS) {
      status = ARES_EBADRESP;
    }
    on_answer(arg, status, timeouts, abuf, alen);
  }

  void sock_state(int fd, bool readable, bool writable) {
    auto it = watches.find(fd);
    if (!readable && !writable) {  // c-ares is about to close the socket
      if (it != watches.end()) {
        it->second->release();
        watches.erase(it);
      }
      return;
    }
    std::shared_ptr<watch> w;
    if (it != watches.end()) {
      w = it->second;
    } else {
      w = std::make_shared<watch>(io, fd);
      boost::system::error_code ec;
      w->sd.assign(fd, ec);
      if (ec) return;  // cannot watch it: the query will time out in c-ares
      watches.emplace(fd, w);
    }
    w->want[0] = readable;
    w->want[1] = writable;
    for (int dir = 0; dir < 2; ++dir)
      if (w->want[dir] && !w->waiting[dir]) start_wait(w, dir);
  }

  void start_wait(const std::shared_ptr<watch>& w, int dir) {
    w->waiting[dir] = true;
    w->sd.async_wait(
        dir == 0 ? asio::posix::descriptor_base::wait_read
                 : asio::posix::descriptor_base::wait_write,
        [this, w, dir, token = std::weak_ptr<char>(alive)](const boost::system::error_code& ec) {
          if (token.expired()) return;
          w->waiting[dir] = false;
          if (w->closed || ec) return;
          ares_process_fd(channel, dir == 0 ? w->fd : ARES_SOCKET_BAD,
                          dir == 1 ? w->fd : ARES_SOCKET_BAD);
          if (!w->closed && w->want[dir] && !w->waiting[dir]) start_wait(w, dir);
          arm_timer();
        });
  }

  // Wakes up for c-ares' next retransmission or timeout. A wait that is already
  // due no later than the new deadline is kept; an early wake-up is harmless.
  void arm_timer() {
    timeval tv{};
    timeval* next = ares_timeout(channel, nullptr, &tv);
    if (next == nullptr) {  // nothing outstanding: let the io_context run out of work
      if (timer_waiting) {
        timer_waiting = false;
        ++timer_generation;
        timer.cancel();
      }
      return;
    }
    // c-ares rounds to milliseconds: a timeout less than 1 ms away reads as 0
    // but is not processed yet, so never wake up sooner than 1 ms from now.
    auto delay = std::max<std::chrono::microseconds>(
        std::chrono::seconds(next->tv_sec) + std::chrono::microseconds(next->tv_usec),
        std::chrono::milliseconds(1));
    auto deadline = std::chrono::steady_clock::now() + delay;
    if (timer_waiting && timer.expiry() <= deadline) return;
    timer.expires_at(deadline);
    timer_waiting = true;
    const unsigned generation = ++timer_generation;
    timer.async_wait([this, generation,
                      token = std::weak_ptr<char>(alive)](const boost::system::error_code& ec) {
      if (token.expired() || generation != timer_generation) return;
      timer_waiting = false;
      if (ec) return;
      ares_process_fd(channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
      arm_timer();
    });
  }

  asio::io_context& io;
  ares_channel channel = nullptr;
  asio::steady_timer timer;
  bool timer_waiting = false;
  unsigned timer_generation = 0;
  std::unordered_map<int, std::shared_ptr<watch>> watches;
  std::shared_ptr<char> alive = std::make_shared<char>();
};

ares_driver::ares_driver(asio::io_context& io, const driver_options& options)
    : impl_(std::make_unique<impl>(io)) {
  library_init();
  ares_options o{};
  o.flags = ARES_FLAG_NOSEARCH;  // "example.org" is never expanded with search domains
  // c-ares 1.18 answers a query whose every server said SERVFAIL or REFUSED with
  // ARES_ECONNREFUSED. With a single server nothing is lost by taking its reply
  // as it is, and the outcome then names the real rcode; with several, c-ares
  // keeps moving on to the next server when one fails.
  const std::size_t servers =
      options.servers.empty() ? system_server_count() : options.servers.size();
  if (servers == 1) o.flags |= ARES_FLAG_NOCHECKRESP;
  o.timeout = static_cast<int>(options.timeout.count());
  o.tries = options.tries;
  o.sock_state_cb = &impl::on_sock_state;
  o.sock_state_cb_data = impl_.get();
  const int mask = ARES_OPT_FLAGS | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_SOCK_STATE_CB;
  if (int rc = ares_init_options(&impl_->channel, &o, mask); rc != ARES_SUCCESS)
    throw std::runtime_error(std::string("c-ares initialisation failed: ") + ares_strerror(rc));
  if (!options.servers.empty()) {
    std::string csv;
    for (const auto& s : options.servers) csv += (csv.empty() ? "" : ",") + s;
    if (int rc = ares_set_servers_ports_csv(impl_->channel, csv.c_str()); rc != ARES_SUCCESS) {
      ares_destroy(impl_->channel);
      throw std::runtime_error("DNS servers \"" + csv + "\": " + ares_strerror(rc));
    }
  }
}

ares_driver::~ares_driver() {
  impl_->alive.reset();          // queued Asio handlers become no-ops
  ares_destroy(impl_->channel);  // handlers run with ARES_EDESTRUCTION; sockets released
  for (auto& [fd, w] : impl_->watches) w->release();
  impl_->timer.cancel();
}

void ares_driver::query(const std::string& name, int type, handler done, bool ask_ad) {
  auto* arg = new handler(std::move(done));
  if (!ask_ad) {
    ares_query(impl_->channel, name.c_str(), 1 /* C_IN */, type, &impl::on_answer, arg);
  } else {
    unsigned char* q = nullptr;
    int qlen = 0;
    // c-ares 1.18's ares_send keeps the id it is given: an unpredictable one.
    const auto id = static_cast<unsigned short>(std::random_device{}());
    if (int rc = ares_create_query(name.c_str(), 1 /* C_IN */, type, id, 1 /* RD */, &q, &qlen, 0);
        rc != ARES_SUCCESS) {
      impl::on_answer(arg, rc, 0, nullptr, 0);
      return;
    }
    q[3] |= 0x20;  // AD
    ares_send(impl_->channel, q, qlen, &impl::on_sent, arg);
    ares_free_string(q);
  }
  impl_->arm_timer();
}

void ares_driver::cancel() {
  ares_cancel(impl_->channel);
  impl_->arm_timer();
}

}  // namespace dns::detail
