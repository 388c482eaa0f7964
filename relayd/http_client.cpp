// Implements http_client.hpp: Beast over TCP, or over asio::ssl with SNI (names
// only) and host name verification. The name lookup runs on Asio's resolver thread.
#include "relayd/http_client.hpp"

#include <openssl/crypto.h>
#include <openssl/ssl.h>

#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

namespace relayd {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;

void wipe(std::string& s) {
  OPENSSL_cleanse(s.data(), s.size());
  s.clear();
}

template <typename Stream>
awaitable<std::expected<http_answer, std::string>> exchange(Stream& stream, beast::tcp_stream& tcp_layer,
                                                            const http_url& where,
                                                            http_post_request& r) {
  http::request<http::string_body> req{http::verb::post, where.target, 11};
  req.set(http::field::host, where.host);
  req.set(http::field::user_agent, "relayd");
  if (!r.accept.empty()) req.set(http::field::accept, r.accept);
  req.set(http::field::content_type, r.content_type);
  req.body() = std::move(r.body);
  req.prepare_payload();
  tcp_layer.expires_after(r.step_timeout);
  auto [wec, written] = co_await http::async_write(stream, req, use_tuple);
  wipe(req.body());
  if (wec) co_return std::unexpected("cannot send: " + wec.message());

  beast::flat_buffer buf;
  http::response_parser<http::string_body> parser;
  parser.header_limit(16 * 1024);
  parser.body_limit(r.max_answer);
  tcp_layer.expires_after(r.step_timeout);
  if (auto [ec, n] = co_await http::async_read(stream, buf, parser, use_tuple); ec)
    co_return std::unexpected("no answer: " + ec.message());
  tcp_layer.close();
  http_answer a;
  a.status = static_cast<int>(parser.get().result_int());
  a.body = std::move(parser.get().body());
  co_return a;
}

}  // namespace

std::optional<http_url> parse_http_url(std::string_view url, bool allow_plain) {
  http_url u;
  if (url.starts_with("https://")) {
    url.remove_prefix(8);
  } else if (allow_plain && url.starts_with("http://")) {
    url.remove_prefix(7);
    u.tls = false;
    u.port = "80";
  } else {
    return std::nullopt;
  }
  const auto slash = url.find('/');
  std::string_view authority = url.substr(0, slash);
  if (slash != std::string_view::npos) u.target = std::string(url.substr(slash));
  if (authority.starts_with('[')) {  // [v6]:port
    const auto close = authority.find(']');
    if (close == std::string_view::npos) return std::nullopt;
    u.host = std::string(authority.substr(1, close - 1));
    authority.remove_prefix(close + 1);
    if (authority.starts_with(':')) u.port = std::string(authority.substr(1));
  } else if (const auto colon = authority.find(':'); colon != std::string_view::npos) {
    u.host = std::string(authority.substr(0, colon));
    u.port = std::string(authority.substr(colon + 1));
  } else {
    u.host = std::string(authority);
  }
  if (u.host.empty() || u.port.empty()) return std::nullopt;
  return u;
}

struct http_client::tls_state {
  ssl::context ctx{ssl::context::tls_client};
};

http_client::http_client(http_url where) : where_(std::move(where)) {
  if (!where_.tls) return;
  tls_ = std::make_unique<tls_state>();
  SSL_CTX_set_min_proto_version(tls_->ctx.native_handle(), TLS1_2_VERSION);
  tls_->ctx.set_default_verify_paths();  // honours SSL_CERT_FILE / SSL_CERT_DIR
  tls_->ctx.set_verify_mode(ssl::verify_peer);
}

http_client::~http_client() = default;

awaitable<std::expected<http_answer, std::string>> http_client::post(asio::io_context& io,
                                                                     http_post_request req) {
  tcp::resolver resolver(io);
  auto [rec, endpoints] = co_await resolver.async_resolve(where_.host, where_.port, use_tuple);
  if (rec) {
    wipe(req.body);
    co_return std::unexpected("cannot resolve: " + rec.message());
  }
  if (!tls_) {
    beast::tcp_stream stream(io);
    stream.expires_after(req.step_timeout);
    if (auto [ec, ep] = co_await stream.async_connect(endpoints, use_tuple); ec) {
      wipe(req.body);
      co_return std::unexpected("cannot connect: " + ec.message());
    }
    co_return co_await exchange(stream, stream, where_, req);
  }
  beast::ssl_stream<beast::tcp_stream> stream(io, tls_->ctx);
  boost::system::error_code not_ip;
  asio::ip::make_address(where_.host, not_ip);
  if (not_ip) SSL_set_tlsext_host_name(stream.native_handle(), where_.host.c_str());
  stream.set_verify_callback(ssl::host_name_verification(where_.host));
  auto& tcp_layer = beast::get_lowest_layer(stream);
  tcp_layer.expires_after(req.step_timeout);
  if (auto [ec, ep] = co_await tcp_layer.async_connect(endpoints, use_tuple); ec) {
    wipe(req.body);
    co_return std::unexpected("cannot connect: " + ec.message());
  }
  tcp_layer.expires_after(req.step_timeout);
  if (auto [ec] = co_await stream.async_handshake(ssl::stream_base::client, use_tuple); ec) {
    wipe(req.body);
    std::string why = ec.message();
    if (const long v = SSL_get_verify_result(stream.native_handle()); v != X509_V_OK)
      why = X509_verify_cert_error_string(v);
    co_return std::unexpected("TLS handshake failed: " + why);
  }
  co_return co_await exchange(stream, tcp_layer, where_, req);
}

}  // namespace relayd
