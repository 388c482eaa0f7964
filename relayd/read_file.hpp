// Reads a whole (small) file for the config and AUTH user loaders, with errors
// that name the path.
#pragma once

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <expected>
#include <memory>
#include <string>

namespace relayd {

inline std::expected<std::string, std::string> read_file(const std::string& path) {
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> f(std::fopen(path.c_str(), "rb"), &std::fclose);
  if (!f) return std::unexpected(path + ": cannot open: " + std::strerror(errno));
  std::string text;
  char buf[65536];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f.get())) > 0) text.append(buf, n);
  if (std::ferror(f.get())) return std::unexpected(path + ": cannot read: " + std::strerror(errno));
  return text;
}

}  // namespace relayd
