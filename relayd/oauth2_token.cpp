// Implements oauth2_token.hpp: the token cache policy, the answer parsing and the
// HTTPS POST (relayd/http_client.hpp on the I/O thread's io_context). Secrets
// never reach the log.
#include "relayd/oauth2_token.hpp"

#include <openssl/crypto.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <boost/json.hpp>
#include <functional>
#include <optional>
#include <stdexcept>
#include <vector>

#include "relayd/async_call.hpp"
#include "relayd/config.hpp"
#include "relayd/http_client.hpp"
#include "relayd/secret_file.hpp"
#include "smtp/text.hpp"

namespace relayd {
namespace {

namespace json = boost::json;
using namespace std::chrono_literals;

constexpr std::size_t max_answer = 64 * 1024;
constexpr auto step_timeout = 30s;

// application/x-www-form-urlencoded (HTML's encoding: space as '+').
void add_form(std::string& out, std::string_view name, std::string_view value) {
  if (!out.empty()) out.push_back('&');
  out += name;
  out.push_back('=');
  static constexpr char hex[] = "0123456789ABCDEF";
  for (unsigned char c : value) {
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '*') {
      out.push_back(static_cast<char>(c));
    } else if (c == ' ') {
      out.push_back('+');
    } else {
      out.push_back('%');
      out.push_back(hex[c >> 4]);
      out.push_back(hex[c & 15]);
    }
  }
}

void wipe(std::string& s) {
  OPENSSL_cleanse(s.data(), s.size());
  s.clear();
}

const json::string* string_at(const json::object& o, std::string_view key) {
  const json::value* v = o.if_contains(key);
  return v ? v->if_string() : nullptr;
}

}  // namespace

std::expected<oauth2_token_reply, std::string> parse_token_reply(std::string_view body) {
  boost::system::error_code ec;
  json::value v = json::parse(body, ec);
  if (ec || !v.is_object()) return std::unexpected("the answer is not a JSON object");
  const json::object& o = v.get_object();
  oauth2_token_reply r;
  const json::string* token = string_at(o, "access_token");
  if (token == nullptr || token->empty())
    return std::unexpected("the answer has no access_token string");
  r.access_token = std::string(*token);
  if (const json::string* t = string_at(o, "token_type")) {
    r.token_type = std::string(*t);
    if (!smtp::text::iequals(r.token_type, "bearer"))
      return std::unexpected("token_type " + r.token_type + " is not Bearer");
  }
  if (const json::value* e = o.if_contains("expires_in")) {
    // Providers send a number; some send it as a string ("3599").
    std::int64_t secs = -1;
    if (e->is_int64()) secs = e->get_int64();
    else if (e->is_uint64()) secs = static_cast<std::int64_t>(std::min<std::uint64_t>(e->get_uint64(), 1u << 30));
    else if (e->is_double()) secs = static_cast<std::int64_t>(e->get_double());
    else if (const json::string* s = e->if_string()) {
      secs = 0;
      for (char c : *s) {
        if (c < '0' || c > '9' || secs > (1 << 30)) { secs = -1; break; }
        secs = secs * 10 + (c - '0');
      }
    }
    if (secs <= 0) return std::unexpected("expires_in is not a positive number of seconds");
    r.expires_in = std::chrono::seconds(secs);
  }
  if (const json::string* rt = string_at(o, "refresh_token")) r.refresh_token = std::string(*rt);
  return r;
}

std::string describe_token_error(int status, std::string_view body) {
  std::string out = "HTTP " + std::to_string(status);
  boost::system::error_code ec;
  json::value v = json::parse(body, ec);
  if (!ec && v.is_object()) {
    const auto& o = v.get_object();
    const json::string* error = string_at(o, "error");
    const json::string* desc = string_at(o, "error_description");
    if (error) out += ": " + std::string(*error);
    if (desc) out += ": " + std::string(*desc);
    if (error || desc) return out;
  }
  std::string text(body.substr(0, 200));
  std::ranges::replace_if(text, [](unsigned char c) { return c < 0x20 || c == 0x7f; }, ' ');
  if (!text.empty()) out += ": \"" + text + "\"";
  return out;
}

oauth2_token_cache::state oauth2_token_cache::at(time_point now) const {
  if (token_.empty()) return state::none;
  if (now < refresh_at_) return state::fresh;
  if (now < usable_until_) return state::refresh_ahead;
  return state::expired;
}

void oauth2_token_cache::store(std::string token, std::chrono::seconds expires_in,
                               time_point now) {
  using ms = std::chrono::milliseconds;
  const ms life = expires_in;
  const time_point expiry = now + life;
  token_ = std::move(token);
  refresh_at_ = expiry - std::min<ms>(life / 4, 5min);
  usable_until_ = expiry - std::min<ms>(life / 10, 30s);
}

void oauth2_token_cache::forget(const std::string& token) {
  if (token == token_) {
    wipe(token_);
    refresh_at_ = usable_until_ = {};
  }
}

using token_result = std::expected<std::string, oauth2_error>;

struct oauth2_token_source::state : std::enable_shared_from_this<state> {
  state(asio::io_context& io_, const oauth2_settings& s, std::string key_)
      : io(io_), settings(s), key(std::move(key_)), client(checked_url(settings, key)) {
    if (!settings.client_secret_file.empty()) {
      secret_file_ = open_file(settings.client_secret_file, "client_secret_file");
      client_secret = read_or_throw(*secret_file_, "client_secret_file");
    }
    refresh_file_ = open_file(settings.refresh_token_file, "refresh_token_file");
    refresh_token = file_refresh_token = read_or_throw(*refresh_file_, "refresh_token_file");
  }
  ~state() {
    wipe(client_secret);
    wipe(refresh_token);
    wipe(file_refresh_token);
  }

  secret_file open_file(const std::string& path, std::string_view name) {
    auto f = secret_file::open(path);
    if (!f) throw std::runtime_error(key + "." + std::string(name) + ": " + f.error());
    return std::move(*f);
  }
  std::string read_or_throw(secret_file& f, std::string_view name) {
    auto v = f.read_first_line();
    if (!v) throw std::runtime_error(key + "." + std::string(name) + ": " + v.error());
    return std::move(*v);
  }

  static http_url checked_url(const oauth2_settings& s, const std::string& key) {
    auto url = parse_http_url(s.token_url, false);
    if (!url) throw std::runtime_error(key + ".token_url: cannot parse " + s.token_url);
    return *url;
  }
  std::string label() const { return "token endpoint " + client.label(); }
  oauth2_error failed(queue::outcome_cause cause, int status, std::string text) const {
    return {cause, status, label() + ": " + text};
  }

  awaitable<std::expected<oauth2_token_reply, oauth2_error>> request();
  // Runs one request and answers every waiter. Owns `self` until it is done.
  static awaitable<void> fetch(std::shared_ptr<state> self);
  void start_fetch() {
    if (fetching) return;
    fetching = true;
    asio::co_spawn(io, fetch(shared_from_this()), asio::detached);
  }

  asio::io_context& io;
  oauth2_settings settings;
  std::string key;
  http_client client;
  std::optional<secret_file> secret_file_, refresh_file_;
  std::string client_secret, refresh_token;
  std::string file_refresh_token;  // the refresh token file's content when last read or written
  oauth2_token_cache cache;
  bool fetching = false;
  std::vector<std::function<void(token_result)>> waiters;
};

awaitable<std::expected<oauth2_token_reply, oauth2_error>> oauth2_token_source::state::request() {
  using std::unexpected;
  constexpr auto local_config = queue::outcome_cause::local_config;
  http_post_request req;
  req.accept = "application/json";
  req.content_type = "application/x-www-form-urlencoded";
  add_form(req.body, "grant_type", "refresh_token");
  add_form(req.body, "client_id", settings.client_id);
  if (!client_secret.empty()) add_form(req.body, "client_secret", client_secret);
  add_form(req.body, "refresh_token", refresh_token);
  if (!settings.scope.empty()) add_form(req.body, "scope", settings.scope);
  req.max_answer = max_answer;
  req.step_timeout = step_timeout;
  auto answer = co_await client.post(io, std::move(req));  // wipes the form
  if (!answer) co_return unexpected(failed(local_config, 0, answer.error()));
  const auto& res = *answer;
  const int status = res.status;
  if (status >= 300 && status < 400)
    co_return unexpected(failed(local_config, status, "HTTP " + std::to_string(status) +
                                                          " redirect (not followed)"));
  if (status != 200) {
    // 400/401 (invalid_grant, invalid_client): the provider refused our credentials.
    const auto cause = status == 400 || status == 401 ? queue::outcome_cause::auth : local_config;
    co_return unexpected(failed(cause, status, describe_token_error(status, res.body)));
  }
  auto reply = parse_token_reply(res.body);
  if (!reply) co_return unexpected(failed(local_config, status, reply.error()));
  co_return std::move(*reply);
}

awaitable<void> oauth2_token_source::state::fetch(std::shared_ptr<state> self) {
  std::expected<oauth2_token_reply, oauth2_error> r =
      std::unexpected(oauth2_error{queue::outcome_cause::local_config, 0, "token request failed"});
  try {
    r = co_await self->request();
  } catch (const std::exception& e) {
    r = std::unexpected(self->failed(queue::outcome_cause::local_config, 0, e.what()));
  }
  token_result answer = std::unexpected(oauth2_error{});
  if (r) {
    self->cache.store(r->access_token, r->expires_in, std::chrono::steady_clock::now());
    spdlog::info("{}: new access token from the {} (expires in {} s)", self->key, self->label(),
                 r->expires_in.count());
    if (!r->refresh_token.empty() && r->refresh_token != self->refresh_token) {
      wipe(self->refresh_token);
      self->refresh_token = r->refresh_token;
      if (auto w = self->refresh_file_->replace(r->refresh_token); w) {
        self->file_refresh_token = r->refresh_token;
        spdlog::info("{}: the provider rotated the refresh token; written to {}", self->key,
                     self->settings.refresh_token_file);
      } else {
        spdlog::warn("{}: the provider rotated the refresh token; kept in memory only ({})",
                     self->key, w.error());
      }
      wipe(r->refresh_token);
    }
    answer = std::move(r->access_token);
  } else {
    spdlog::error("{}: {}", self->key, r.error().text);
    answer = std::unexpected(r.error());
  }
  self->fetching = false;
  for (auto& w : std::exchange(self->waiters, {})) w(answer);
}

oauth2_token_source::oauth2_token_source(asio::io_context& io, const oauth2_settings& s,
                                         std::string key)
    : s_(std::make_shared<state>(io, s, std::move(key))) {}

oauth2_token_source::~oauth2_token_source() = default;

awaitable<token_result> oauth2_token_source::token() {
  auto& s = *s_;
  switch (s.cache.at(std::chrono::steady_clock::now())) {
    case oauth2_token_cache::state::fresh:
      co_return s.cache.token();
    case oauth2_token_cache::state::refresh_ahead:
      s.start_fetch();  // callers go on with the current one meanwhile
      co_return s.cache.token();
    default:
      break;
  }
  // `s_` outlives this call: the source belongs to the connector, which lives
  // until io.run() has returned.
  co_return co_await from_callback<void(token_result)>([&](auto done) {
    s.waiters.emplace_back(std::move(done));
    s.start_fetch();
  });
}

void oauth2_token_source::refused(const std::string& token) {
  s_->cache.forget(token);
}

void oauth2_token_source::reload() {
  auto& s = *s_;
  if (s.secret_file_) {
    if (auto v = s.secret_file_->read_first_line(); v) {
      wipe(s.client_secret);
      s.client_secret = std::move(*v);
      spdlog::info("SIGHUP: {}.client_secret_file re-read", s.key);
    } else {
      spdlog::error("{}.client_secret_file: {} (the previous secret stays in use)", s.key, v.error());
    }
  }
  if (auto v = s.refresh_file_->read_first_line(); !v) {
    spdlog::error("{}.refresh_token_file: {} (the previous token stays in use)", s.key, v.error());
  } else if (*v != s.file_refresh_token) {
    wipe(s.refresh_token);
    s.refresh_token = *v;
    s.file_refresh_token = std::move(*v);
    spdlog::info("{}.refresh_token_file: a new refresh token is in use", s.key);
  }
}

}  // namespace relayd
