// The outbound stream's deadlines (delivery_stream.hpp): a read past its deadline
// reports timed_out, and a deadline that passed just as its read completed does
// not cancel (or mark as timed out) the next read. The second is the race the
// review found in the old timer handler that captured a raw `this`.
#include "relayd/delivery_stream.hpp"

#include <gtest/gtest.h>

#include <boost/asio/ssl/context.hpp>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

namespace relayd {
namespace {

using namespace std::chrono_literals;
using error_code = boost::system::error_code;

struct connected_pair {
  asio::io_context io;
  asio::ssl::context ctx{asio::ssl::context::tls_client};
  tcp::acceptor acceptor{io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)};
  tcp::socket peer{io};
  outbound client{io, ctx};

  connected_pair() {
    error_code connected = asio::error::would_block;
    acceptor.async_accept(peer, [](error_code) {});
    asio::co_spawn(
        io,
        [&]() -> awaitable<void> { connected = co_await client.connect(acceptor.local_endpoint(), 5s); },
        asio::detached);
    io.run_for(5s);
    io.restart();
    EXPECT_FALSE(connected) << connected.message();
    EXPECT_TRUE(peer.is_open());
  }
};

struct read_result {
  error_code ec;
  std::string data;
};

TEST(delivery_stream, a_read_past_its_deadline_times_out) {
  connected_pair p;
  std::vector<read_result> got;
  asio::co_spawn(
      p.io,
      [&]() -> awaitable<void> {
        char buf[8];
        auto [ec, n] = co_await p.client.read_some(buf, sizeof buf, 20ms);
        got.push_back({ec, std::string(buf, n)});
      },
      asio::detached);
  p.io.run_for(5s);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].ec, asio::error::timed_out) << got[0].ec.message();
}

TEST(delivery_stream, a_deadline_that_passed_as_the_read_completed_spares_the_next_read) {
  connected_pair p;
  std::vector<read_result> got;
  asio::co_spawn(
      p.io,
      [&]() -> awaitable<void> {
        for (int i = 0; i < 2; ++i) {
          char buf[8];
          auto [ec, n] = co_await p.client.read_some(buf, sizeof buf, i == 0 ? 30ms : 5s);
          got.push_back({ec, std::string(buf, n)});
        }
      },
      asio::detached);
  p.io.poll();  // the first read waits, its deadline armed
  asio::write(p.peer, asio::buffer(std::string_view("A")));
  std::this_thread::sleep_for(100ms);  // the data is there and the deadline has passed:
  p.io.poll();                         // both are ready in the same turn, the read first
  ASSERT_GE(got.size(), 1u);
  ASSERT_FALSE(got[0].ec) << got[0].ec.message();
  EXPECT_EQ(got[0].data, "A");
  asio::write(p.peer, asio::buffer(std::string_view("B")));
  p.io.run_for(5s);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_FALSE(got[1].ec) << "the next read was hit by the old deadline: " << got[1].ec.message();
  EXPECT_EQ(got[1].data, "B");
}

// A write bigger than the socket can take at once: what send_now() could not
// send goes out asynchronously, after it and in order, once the peer reads.
TEST(delivery_stream, a_write_bigger_than_the_socket_buffer_arrives_whole_and_in_order) {
  connected_pair p;
  std::string big(16 << 20, '\0');
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>('a' + i % 23);
  error_code wrote = asio::error::would_block;
  std::string received;
  asio::co_spawn(
      p.io, [&]() -> awaitable<void> { wrote = co_await p.client.write(big, 10s); },
      asio::detached);
  asio::co_spawn(
      p.io,
      [&]() -> awaitable<void> {
        char buf[65536];
        while (received.size() < big.size()) {
          auto [ec, n] = co_await p.peer.async_read_some(asio::buffer(buf), use_tuple);
          if (ec) co_return;
          received.append(buf, n);
        }
      },
      asio::detached);
  p.io.run_for(20s);
  EXPECT_FALSE(wrote) << wrote.message();
  ASSERT_EQ(received.size(), big.size());
  EXPECT_TRUE(received == big) << "the bytes arrived out of order or changed";
}

// A peer that has gone: the write reports an error (no SIGPIPE, no hang).
TEST(delivery_stream, a_write_to_a_closed_peer_reports_an_error) {
  connected_pair p;
  p.peer.close();
  std::this_thread::sleep_for(50ms);
  error_code wrote;
  asio::co_spawn(
      p.io,
      [&]() -> awaitable<void> {
        // The first write may still be taken by the kernel (the RST comes
        // back to it); a later one meets the reset.
        for (int i = 0; i < 50 && !wrote; ++i) {
          wrote = co_await p.client.write(std::string(1024, 'x'), 5s);
          asio::steady_timer t(p.io, 10ms);
          co_await t.async_wait(use_tuple);
        }
      },
      asio::detached);
  p.io.run_for(10s);
  EXPECT_TRUE(wrote) << "fifty writes to a closed peer all succeeded";
}

}  // namespace
}  // namespace relayd
