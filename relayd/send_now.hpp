// Sending without waiting: the fast path of a plaintext write. A reply or a
// pipelined command group almost always fits in the socket's buffer, and
// sending it in place skips an asynchronous operation, its deadline timer and
// the coroutine's resumption through the I/O queue.
//
// Promise: never blocks. Failure: reported by returning fewer bytes than
// asked; the caller's asynchronous write of the rest meets the same error
// (EPIPE, ECONNRESET...) and reports it with its usual path.
#pragma once

#include <cstddef>
#include <string_view>

namespace relayd {

// How many leading bytes of `data` the socket `fd` took now (MSG_DONTWAIT,
// MSG_NOSIGNAL; EINTR retried).
std::size_t send_now(int fd, std::string_view data);

}  // namespace relayd
