// Forward declarations of the objects run_daemon() builds and lends to its
// parts, for headers that only take them by reference: they stay free of Asio,
// LMDB and the config parser. No definitions here; nothing can fail.
#pragma once

namespace boost::asio {
class io_context;
class thread_pool;
namespace ssl {
class context;
}
}  // namespace boost::asio
namespace queue {
class spool;
}

namespace relayd {
struct config;
class scheduler;
class metrics;
class auth_users;
}  // namespace relayd
