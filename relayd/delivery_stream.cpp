// Implements delivery_stream.hpp over asio::ssl::stream<beast::tcp_stream>. The
// deadline of each operation is the tcp_stream's own expiry, armed just before
// the operation and owned by the stream's shared state: nothing here captures
// `this` in a timer handler.
#include "relayd/delivery_stream.hpp"

#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>

#include <cerrno>
#include <array>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/tcp_stream.hpp>

#include "relayd/send_now.hpp"

namespace relayd {
namespace {

namespace beast = boost::beast;
namespace ssl = asio::ssl;
using error_code = boost::system::error_code;

// Beast reports a passed deadline as beast::error::timeout.
error_code normalized(error_code ec) {
  return ec == beast::error::timeout ? error_code(asio::error::timed_out) : ec;
}

}  // namespace

struct outbound::impl {
  impl(asio::io_context& io, ssl::context& ctx) : stream(io, ctx) {}
  beast::tcp_stream& tcp() { return stream.next_layer(); }

  ssl::stream<beast::tcp_stream> stream;
  bool tls = false;
  bool name_checked = false;  // handshake() was asked to verify the name
  std::string tls_error;
};

outbound::outbound(asio::io_context& io, ssl::context& ctx)
    : impl_(std::make_unique<impl>(io, ctx)) {}

outbound::~outbound() {
  close();
}

awaitable<outbound::error_code> outbound::connect(const tcp::endpoint& ep, deadline timeout) {
  impl_->tcp().expires_after(timeout);
  auto [ec] = co_await impl_->tcp().async_connect(ep, use_tuple);
  co_return normalized(ec);
}

awaitable<std::pair<outbound::error_code, std::size_t>> outbound::read_some(char* buf,
                                                                            std::size_t n,
                                                                            deadline timeout) {
  impl_->tcp().expires_after(timeout);
  error_code ec;
  std::size_t got = 0;
  if (impl_->tls)
    std::tie(ec, got) = co_await impl_->stream.async_read_some(asio::buffer(buf, n), use_tuple);
  else
    std::tie(ec, got) = co_await impl_->tcp().async_read_some(asio::buffer(buf, n), use_tuple);
  co_return std::pair{normalized(ec), got};
}

awaitable<outbound::error_code> outbound::write(std::string_view data, deadline timeout) {
  // Plaintext: what the socket takes now is sent in place (send_now.hpp).
  if (!impl_->tls) {
    data.remove_prefix(send_now(impl_->tcp().socket().native_handle(), data));
    if (data.empty()) co_return error_code{};
  }
  impl_->tcp().expires_after(timeout);
  error_code ec;
  if (impl_->tls)
    std::tie(ec, std::ignore) =
        co_await asio::async_write(impl_->stream, asio::buffer(data), use_tuple);
  else
    std::tie(ec, std::ignore) =
        co_await asio::async_write(impl_->tcp(), asio::buffer(data), use_tuple);
  co_return normalized(ec);
}

awaitable<outbound::error_code> outbound::handshake(const std::string& server_name,
                                                    bool verify_name, deadline timeout) {
  SSL* ssl = impl_->stream.native_handle();
  error_code not_ip;
  asio::ip::make_address(server_name, not_ip);
  if (!server_name.empty() && not_ip) SSL_set_tlsext_host_name(ssl, server_name.c_str());
  impl_->name_checked = !server_name.empty();
  // OpenSSL checks the name during the chain verification, so a mismatch is
  // reported as such (X509_V_ERR_HOSTNAME_MISMATCH / IP_ADDRESS_MISMATCH); with
  // verify_none (verify_name unset) it is only recorded, for verified().
  // Added, not set: DANE may have named the TLSA base domain first (arm_dane).
  if (!server_name.empty()) {
    if (not_ip)
      SSL_add1_host(ssl, server_name.c_str());
    else
      X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), server_name.c_str());
  }
  (void)verify_name;  // the context's verify mode decides whether a failure aborts
  impl_->tcp().expires_after(timeout);
  auto [raw] = co_await impl_->stream.async_handshake(ssl::stream_base::client, use_tuple);
  const error_code ec = normalized(raw);
  impl_->tls_error.clear();
  if (!ec) {
    impl_->tls = true;
    co_return ec;
  }
  // What an operator needs: the verification result when the chain or the name
  // was refused, else OpenSSL's reason.
  const long v = SSL_get_verify_result(ssl);
  if (v != X509_V_OK)
    impl_->tls_error =
        std::string("certificate verification failed: ") + X509_verify_cert_error_string(v);
  else
    impl_->tls_error = ec == asio::error::timed_out ? "timed out" : ec.message();
  co_return ec;
}

ssl_st* outbound::native_ssl() {
  return impl_->stream.native_handle();
}

bool outbound::verified() const {
  const auto facts = tls_session();
  return facts && facts->verified;
}

const std::string& outbound::tls_error() const {
  return impl_->tls_error;
}

std::optional<outbound::tls_facts> outbound::tls_session() const {
  if (!impl_->tls) return std::nullopt;
  SSL* ssl = impl_->stream.native_handle();
  tls_facts f;
  f.version = SSL_get_version(ssl);
  f.cipher = SSL_get_cipher_name(ssl);
  const long v = SSL_get_verify_result(ssl);
  if (SSL_get0_peer_certificate(ssl) == nullptr)
    f.problem = "no certificate";
  else if (v != X509_V_OK)
    f.problem = X509_verify_cert_error_string(v);
  else if (!impl_->name_checked)
    f.problem = "the name was not checked";
  f.verified = f.problem.empty();
  return f;
}

bool outbound::peer_spoke_while_idle() {
  char c;
  const auto n =
      ::recv(impl_->tcp().socket().native_handle(), &c, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n < 0) return errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR;
  return true;  // 0: the peer closed; > 0: bytes nobody asked for
}

std::string outbound::local_address() const {
  error_code ec;
  const auto ep = impl_->stream.next_layer().socket().local_endpoint(ec);
  return ec ? std::string() : ep.address().to_string();
}

void outbound::close() {
  error_code ec;
  impl_->tcp().socket().shutdown(tcp::socket::shutdown_both, ec);
  impl_->tcp().close();
}

awaitable<pump_step> pump(outbound& c, smtp::client_session& s, std::string& in,
                          deadline timeout) {
  using queue::outcome_cause;
  std::array<char, 16384> buf;
  for (;;) {
    while (!s.output().empty()) {
      if (auto ec = co_await c.write(s.output(), timeout)) {
        const bool timed_out = ec == asio::error::timed_out;
        co_return pump_step{s.connection_lost(timed_out ? "timeout" : ec.message()),
                            timed_out ? outcome_cause::timeout : outcome_cause::lost};
      }
      s.clear_output();
    }
    if (!in.empty()) {
      auto st = s.feed(in);
      in.erase(0, st.consumed);
      if (st.what != smtp::client_session::event::need_more) co_return pump_step{st.what, {}};
      if (!s.output().empty()) continue;
    }
    auto [ec, n] = co_await c.read_some(buf.data(), buf.size(), timeout);
    if (ec) {
      const bool timed_out = ec == asio::error::timed_out;
      co_return pump_step{s.connection_lost(timed_out                   ? "timeout"
                                            : ec == asio::error::eof    ? "connection closed"
                                                                        : ec.message()),
                          timed_out ? outcome_cause::timeout : outcome_cause::lost};
    }
    in.append(buf.data(), n);
  }
}

}  // namespace relayd
