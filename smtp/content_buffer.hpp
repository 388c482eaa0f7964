// The growth policy of a buffer that holds message content while it arrives
// (DATA through dot_reader, BDAT through chunk_reader). The daemon budgets the
// buffer's capacity (smtp.max_data_memory), so growth is explicit: a presize
// capped so that an idle client cannot pin memory with a large SIZE=, at least
// 4 KiB at the first allocation, doubling up to 64 KiB, then a quarter at a
// time, so capacity stays within 25 % of the content above that. Nothing here
// fails but the allocator (std::bad_alloc).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace smtp::content_buffer {

// Empties `buf` and reserves min(expected, max_size, 4 MiB) octets.
void presize(std::string& buf, std::size_t expected, std::size_t max_size);
// Appends `bytes`, growing the capacity by the policy above.
void append(std::string& buf, std::string_view bytes);
// Gives the buffer back to the allocator. `buf = std::string()` would not:
// libstdc++ copies a short string into the existing buffer and keeps it.
void release(std::string& buf);
// True when `buf` holds heap memory (more than the string object itself).
bool holds_memory(const std::string& buf);

}  // namespace smtp::content_buffer
