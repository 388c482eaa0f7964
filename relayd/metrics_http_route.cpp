// The sans-I/O half of metrics_http.hpp: what to answer, decided from the bytes
// of a request head read so far. No allocation beyond the input, no I/O, never
// throws; garbage is a 400. Fuzzed by tests/fuzz/fuzz_metrics_route.cpp.
#include <algorithm>
#include <string_view>

#include "relayd/metrics_http.hpp"

namespace relayd {
namespace {

bool is_tchar(char c) {  // RFC 9110 token characters
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  return std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

// Bytes a request line may hold: visible ASCII and the separating spaces. Bytes
// >= 0x80 are tolerated in the target only by the 404 that follows.
bool request_line_byte(char c) {
  auto u = static_cast<unsigned char>(c);
  return u == ' ' || u == '\r' || (u > 0x20 && u != 0x7f);
}

// Where the head ends: the index just past the blank line (CRLFCRLF or LFLF),
// or npos while it is incomplete.
std::size_t head_end(std::string_view buf) {
  for (std::size_t i = buf.find('\n'); i != std::string_view::npos; i = buf.find('\n', i + 1)) {
    if (i + 1 < buf.size() && buf[i + 1] == '\n') return i + 2;
    if (i + 2 < buf.size() && buf[i + 1] == '\r' && buf[i + 2] == '\n') return i + 3;
  }
  return std::string_view::npos;
}

}  // namespace

http_route route_metrics_request(std::string_view head) {
  auto eol = head.find('\n');
  std::string_view line = head.substr(0, eol);
  if (line.ends_with('\r')) line.remove_suffix(1);
  // request-line = method SP request-target SP HTTP-version
  auto sp1 = line.find(' ');
  auto sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos || line.find(' ', sp2 + 1) != std::string_view::npos)
    return {400};
  std::string_view method = line.substr(0, sp1);
  std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  std::string_view version = line.substr(sp2 + 1);
  if (method.empty() || target.empty()) return {400};
  for (char c : method)
    if (!is_tchar(c)) return {400};
  for (char c : target)
    if (!request_line_byte(c) || c == '\r') return {400};
  if (version.size() != 8 || !version.starts_with("HTTP/") || version[6] != '.' ||
      version[5] < '0' || version[5] > '9' || version[7] < '0' || version[7] > '9')
    return {400};
  if (version[5] != '1') return {505};
  if (target.front() != '/') return {method == "OPTIONS" && target == "*" ? 405 : 400};
  std::string_view path = target.substr(0, target.find('?'));
  if (path != "/metrics") return {404};
  if (method == "GET") return {200, false};
  if (method == "HEAD") return {200, true};
  return {405};
}

std::optional<http_route> classify_metrics_head(std::string_view buf) {
  const auto first_eol = buf.find('\n');
  const std::string_view line = buf.substr(0, first_eol);
  // Garbage (TLS, binary) or a broken request line: answer without waiting.
  if (std::find_if_not(line.begin(), line.end(), request_line_byte) != line.end())
    return http_route{400};
  if (const auto end = head_end(buf); end != std::string_view::npos) {
    if (end > metrics_server::max_head) return http_route{431};
    return route_metrics_request(buf.substr(0, end));
  }
  if (first_eol != std::string_view::npos) {
    const auto early = route_metrics_request(line);
    if (early.status == 400 || early.status == 505) return early;
  }
  if (buf.size() > metrics_server::max_head) return http_route{431};
  return std::nullopt;
}

}  // namespace relayd
