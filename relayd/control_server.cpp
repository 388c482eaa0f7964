// Implements control_server.hpp: binds the socket, accepts, reads one request
// line (at most control_protocol::max_request bytes), parses it without I/O
// (control_protocol::parse_request) and runs the handler its verb names in the
// table built from the command families. Each connection is one coroutine that
// holds the server state, so a stop() during a request never frees what it uses.
// The socket is open to every local user (mode 0666); each verb's access rule
// (control_protocol::access) is checked against the client's SO_PEERCRED and
// SO_PEERGROUPS before its handler runs, and a refusal names what is needed.
#include "relayd/control_server.hpp"

#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <boost/asio/read_until.hpp>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <unordered_map>
#include <vector>

#include <fmt/format.h>

#include "relayd/control_handlers.hpp"
#include "relayd/inbound_local.hpp"
#include "relayd/privileges.hpp"
#include "relayd/delivery_scheduler.hpp"

namespace relayd {
namespace proto = control_protocol;
using unix_socket = asio::local::stream_protocol::socket;

namespace {

// verb -> handler, from every command family; every protocol verb has a row.
std::unordered_map<std::string_view, control_handler> build_table() {
  std::unordered_map<std::string_view, control_handler> table;
  for (auto family : {control_queue_commands(), control_dead_commands(), control_stats_commands(),
                      control_wait_commands(), control_aliases_commands(),
                      control_dkim_commands(), control_reload_commands(),
                      control_destinations_commands(), control_report_commands(),
                      control_tls_rpt_commands()})
    for (const auto& c : family) table.emplace(c.verb, c.run);
  for (const auto& v : proto::verbs())
    if (!table.contains(v.name)) throw std::logic_error("control: no handler for " + std::string(v.name));
  return table;
}

// The client's credentials; nullopt when the kernel does not tell.
struct peer_credentials {
  uid_t uid = 0;
  std::vector<gid_t> groups;  // primary first, then the supplementary ones
};
std::optional<peer_credentials> credentials_of(int fd) {
  ucred cred{};
  socklen_t len = sizeof cred;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return std::nullopt;
  peer_credentials p{cred.uid, {cred.gid}};
  std::vector<gid_t> more(64);
  len = static_cast<socklen_t>(more.size() * sizeof(gid_t));
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, more.data(), &len) != 0 && errno == ERANGE) {
    more.resize(len / sizeof(gid_t));
    if (::getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, more.data(), &len) != 0) len = 0;
  }
  more.resize(len / sizeof(gid_t));
  p.groups.insert(p.groups.end(), more.begin(), more.end());
  return p;
}

void log_exception(std::exception_ptr e) {
  if (!e) return;
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    spdlog::error("control: {}", ex.what());
  }
}

}  // namespace

struct control_server::impl : std::enable_shared_from_this<impl> {
  impl(asio::io_context& io_, const config& cfg_, queue::spool& spool_)
      : ctx{io_, cfg_, spool_, nullptr}, acceptor(io_), table(build_table()) {}
  awaitable<void> accept_loop();
  awaitable<void> serve(unix_socket sock);

  // "" when `peer` may run the request, else why not.
  std::string refusal(const proto::request& req, const std::optional<peer_credentials>& peer) const;

  control_context ctx;
  asio::local::stream_protocol::acceptor acceptor;
  const std::unordered_map<std::string_view, control_handler> table;
  std::optional<gid_t> admin_gid;  // [control] admin_group, resolved at start
};

std::string control_server::impl::refusal(const proto::request& req,
                                          const std::optional<peer_credentials>& peer) const {
  if (req.who == proto::access::anyone) return {};
  if (!peer) return "permission denied: the client's credentials are unknown";
  const bool admin = peer->uid == 0 || peer->uid == ::geteuid() ||
                     (admin_gid && std::ranges::find(peer->groups, *admin_gid) != peer->groups.end());
  if (admin) return {};
  if (req.who == proto::access::owner) {
    auto rec = ctx.spool.get(req.id);
    if (!rec) rec = ctx.spool.get_dead(req.id);
    if (rec && rec->local && rec->local->uid == peer->uid) return {};
    if (!rec) return fmt::format("{}: no such message", req.id);
  }
  const std::string who = ctx.cfg.control.admin_group.empty()
                              ? "root or the relayd user"
                              : "root, the relayd user or group " + ctx.cfg.control.admin_group;
  return fmt::format("permission denied: {} needs {}{}", req.verb, who,
                     req.who == proto::access::owner ? " (or the message's own submitter)" : "");
}

control_server::control_server(asio::io_context& io, const config& cfg, queue::spool& spool)
    : impl_(std::make_shared<impl>(io, cfg, spool)) {}

control_server::~control_server() { stop(); }

void control_server::set_aliases(alias_source& a) { impl_->ctx.aliases = &a; }
void control_server::set_dkim_monitor(dkim_dns_monitor& m) { impl_->ctx.dkim = &m; }
void control_server::set_tls_reports(tls_rpt_service* r) { impl_->ctx.tls_reports = r; }
void control_server::set_reloader(std::function<std::expected<std::string, std::string>()> r) {
  impl_->ctx.reload = std::move(r);
}

void control_server::set_scheduler(scheduler* s) {
  impl_->ctx.sched = s;
  if (!s) return;
  // The scheduler may outlive this server: its observer holds the server weakly.
  s->set_outcome_observer([w = std::weak_ptr<impl>(impl_)](
                              const queue::envelope_record& m,
                              std::span<const queue::spool::recipient_update> u,
                              queue::spool::completion c) {
    if (auto self = w.lock()) self->ctx.waits.record(m, u, c);
  });
}

std::expected<void, std::string> control_server::start() {
  const std::string& path = impl_->ctx.cfg.control.socket;
  if (const std::string& admin = impl_->ctx.cfg.control.admin_group; !admin.empty()) {
    impl_->admin_gid = group_id(admin);
    if (!impl_->admin_gid)
      return std::unexpected("control.admin_group: no group named \"" + admin + "\"");
  }
  if (path.size() >= sizeof(sockaddr_un::sun_path))
    return std::unexpected(path + ": path too long for a Unix socket");
  std::error_code fec;
  auto parent = std::filesystem::path(path).parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent, fec);
  if (fec) return std::unexpected(parent.string() + ": " + fec.message());
  if (std::filesystem::exists(path, fec)) {
    if (unix_socket_accepting(path)) return std::unexpected(path + ": another relayd is running");
    std::filesystem::remove(path, fec);  // stale socket of a previous run
  }
  boost::system::error_code ec;
  asio::local::stream_protocol::endpoint ep(path);
  auto& acceptor = impl_->acceptor;
  acceptor.open(ep.protocol(), ec);
  if (!ec) acceptor.bind(ep, ec);
  if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return std::unexpected(path + ": " + ec.message());
  // Every local user may connect (mailq); refusal() guards each verb.
  if (::chmod(path.c_str(), 0666) != 0)
    return std::unexpected(path + ": chmod: " + std::strerror(errno));
  spdlog::info("control socket {}", path);
  asio::co_spawn(impl_->ctx.io, impl_->accept_loop(), asio::detached);
  return {};
}

void control_server::stop() {
  impl_->ctx.waits.stop();  // pending waits answer now, so io.run() can run out of work
  boost::system::error_code ec;
  if (!impl_->acceptor.is_open()) return;
  impl_->acceptor.close(ec);
  std::filesystem::remove(impl_->ctx.cfg.control.socket, ec);
}

awaitable<void> control_server::impl::accept_loop() {
  auto self = shared_from_this();
  for (;;) {
    auto [ec, sock] = co_await acceptor.async_accept(use_tuple);
    if (ec == asio::error::operation_aborted || !acceptor.is_open()) co_return;
    if (ec) continue;
    asio::co_spawn(ctx.io, serve(std::move(sock)), log_exception);
  }
}

awaitable<void> control_server::impl::serve(unix_socket sock) {
  auto self = shared_from_this();  // ctx and table stay valid for this request
  std::string line;
  auto [ec, n] = co_await asio::async_read_until(
      sock, asio::dynamic_buffer(line, proto::max_request), '\n', use_tuple);
  if (ec) {
    if (ec == asio::error::not_found)
      co_await asio::async_write(sock, asio::buffer(proto::error_line("request too long")),
                                 use_tuple);
    co_return;
  }
  line.resize(n - 1);

  std::string out;
  auto req = proto::parse_request(line);
  std::string refused;
  if (req) {
    const auto peer = credentials_of(sock.native_handle());
    if (peer) req->peer_uid = peer->uid;  // for the audit lines of the actions
    refused = refusal(*req, peer);
  }
  if (!req) {
    out = proto::error_line(req.error());
  } else if (!refused.empty()) {
    spdlog::warn("control: {} refused: {}", req->verb, refused);
    out = proto::error_line(refused);
  } else {
    // `sock` lives in this frame, which outlives every write the handler awaits.
    const line_writer write_lines = [&sock](std::string_view lines) -> awaitable<bool> {
      auto [wec, wn] = co_await asio::async_write(sock, asio::buffer(lines), use_tuple);
      co_return !wec;
    };
    out = co_await table.at(req->verb)(ctx, *req, write_lines);
    if (out.empty()) co_return;  // the client went away mid-list
  }
  co_await asio::async_write(sock, asio::buffer(out), use_tuple);
}

}  // namespace relayd
