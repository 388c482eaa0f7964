// Replays fuzz corpus files through a fuzz target without libFuzzer, so every
// seed and every crash ever found runs as an ordinary test in `make test`.
// Usage: replay_TARGET FILE_OR_DIR... An input that crashes is named on stderr.
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include <unistd.h>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

namespace {
std::string current;  // the input being replayed

extern "C" void on_crash(int sig) {
  const char prefix[] = "replay: crashed on input ";
  (void)!write(2, prefix, sizeof prefix - 1);
  (void)!write(2, current.c_str(), std::strlen(current.c_str()));
  (void)!write(2, "\n", 1);
  std::signal(sig, SIG_DFL);
  std::raise(sig);
}
}  // namespace

int main(int argc, char** argv) {
  for (int sig : {SIGABRT, SIGSEGV, SIGBUS, SIGFPE, SIGILL}) std::signal(sig, on_crash);
  std::size_t runs = 0;
  auto run_file = [&](const std::filesystem::path& p) {
    current = p.string();
    std::ifstream f(p, std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    LLVMFuzzerTestOneInput(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size());
    ++runs;
  };
  for (int i = 1; i < argc; ++i) {
    std::filesystem::path p(argv[i]);
    if (std::filesystem::is_directory(p)) {
      for (const auto& e : std::filesystem::recursive_directory_iterator(p))
        if (e.is_regular_file()) run_file(e.path());
    } else {
      run_file(p);
    }
  }
  std::printf("replayed %zu inputs\n", runs);
  return runs > 0 ? 0 : 1;
}
