// LD_PRELOAD shim for tests/durability: makes a power cut reproducible after kill -9.
// Promises: each write to a spool file not yet covered by a completed flush leaves its
// old bytes in an undo log first, so replaying the logs backwards gives the disk's state.
// Fails loudly (message, abort) on what it cannot model or an undo log it cannot write.
#undef _FORTIFY_SOURCE  // its inline open() would clash with ours
#include <dlfcn.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

// How: before any write to a file under $RELAYD_SHIM_DIR the old bytes of the range go
// to $RELAYD_SHIM_UNDO_DIR/<name>.undo; a completed fsync/fdatasync (or a full-mapping
// MS_SYNC msync, sync, syncfs) of the file empties that log. Writes through an
// O_SYNC/O_DSYNC descriptor are durable at once: logged as 'D' records with the new
// bytes. $RELAYD_SHIM_NOFLUSH=1 makes every flush a no-op returning 0 (a "missing
// flush") for the test's negative control. A writable shared mapping of a watched file
// (MDB_WRITEMAP: its writes bypass write()) aborts. Not modelled (LMDB uses none):
// dup'ed descriptors, pwritev2, copy_file_range. sync_file_range is passed through and
// counts as no flush (it persists neither the metadata nor the drive's cache).
namespace {

template <class F>
F real(const char* name) {
  void* p = dlsym(RTLD_NEXT, name);
  if (p == nullptr) {
    std::fprintf(stderr, "power_loss_shim: no %s\n", name);
    std::abort();
  }
  return reinterpret_cast<F>(p);
}

#define REAL(name) static const auto real_##name = real<decltype(&::name)>(#name)

// One watched file (by device and inode): where its undo log goes.
struct watched_file {
  dev_t dev;
  ino_t ino;
  int read_fd;  // our own O_RDONLY descriptor: the writer's may be O_WRONLY
  int undo_fd;
};

// Descriptor -> 1 + index into files (0: not watched), negated when it was opened
// O_SYNC / O_DSYNC. Read without the lock, so writes to other files never wait.
constexpr int max_fd = 1 << 16;
std::atomic<int> fd_file[max_fd];

struct mapping {
  const char* addr;
  std::size_t len;
  int file;
};

// Everything below is guarded by mu (recursive: the shim's own calls come back in):
// each watched write is logged and done under it, and each flush runs under it, so
// a write is wholly before or after a flush.
pthread_mutex_t mu = PTHREAD_RECURSIVE_MUTEX_INITIALIZER_NP;
std::vector<watched_file> files;
std::vector<mapping> maps;
std::string dir;       // realpath of $RELAYD_SHIM_DIR + "/" ("" = shim off)
std::string undo_dir;  // $RELAYD_SHIM_UNDO_DIR
bool no_flush = false;
pthread_once_t once = PTHREAD_ONCE_INIT;

void die(const char* what) {
  std::fprintf(stderr, "power_loss_shim: %s: %s\n", what, std::strerror(errno));
  std::abort();
}

void init() {
  const char* d = std::getenv("RELAYD_SHIM_DIR");
  const char* u = std::getenv("RELAYD_SHIM_UNDO_DIR");
  if (d == nullptr || u == nullptr) return;
  char buf[PATH_MAX];
  if (::realpath(d, buf) == nullptr) die("RELAYD_SHIM_DIR");
  dir = std::string(buf) + "/";
  undo_dir = u;
  const char* n = std::getenv("RELAYD_SHIM_NOFLUSH");
  no_flush = n != nullptr && std::strcmp(n, "1") == 0;
}

struct lock {
  lock() {
    pthread_once(&once, init);
    pthread_mutex_lock(&mu);
  }
  ~lock() { pthread_mutex_unlock(&mu); }
};

// The watched file behind `fd` (-1: none); `sync`: opened O_SYNC / O_DSYNC.
int lookup(int fd, bool* sync = nullptr) {
  const int v = fd >= 0 && fd < max_fd ? fd_file[fd].load() : 0;
  if (sync != nullptr) *sync = v < 0;
  return v == 0 ? -1 : std::abs(v) - 1;
}

void write_all(int fd, const void* p, std::size_t n) {
  REAL(write);
  const char* c = static_cast<const char*>(p);
  while (n > 0) {
    ssize_t w = real_write(fd, c, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) die("cannot write the undo log");
    c += w;
    n -= static_cast<std::size_t>(w);
  }
}

// Record: kind 'U' (undo: the old bytes) or 'D' (durable: the new bytes), then
// u64 offset, u64 length of the write, u64 file size before it, then the bytes:
// 'U': the old bytes of [offset, min(offset + length, size)); 'D': `length` bytes.
void log_record(char kind, int file, std::uint64_t off, std::uint64_t len, const iovec* iov,
                int iovcnt) {
  watched_file& f = files[file];
  struct stat st {};
  if (::fstat(f.read_fd, &st) != 0) die("fstat");
  const std::uint64_t size = static_cast<std::uint64_t>(st.st_size);
  std::vector<char> rec(1 + 24);
  rec[0] = kind;
  std::uint64_t head[3] = {off, len, size};
  std::memcpy(rec.data() + 1, head, sizeof head);
  if (kind == 'U') {
    const std::uint64_t keep = off < size ? std::min(len, size - off) : 0;
    rec.resize(rec.size() + keep);
    REAL(pread);
    std::size_t got = 0;
    while (got < keep) {
      ssize_t r = real_pread(f.read_fd, rec.data() + 25 + got, keep - got,
                             static_cast<off_t>(off + got));
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) die("cannot read the old contents");
      got += static_cast<std::size_t>(r);
    }
  } else {
    for (int i = 0; i < iovcnt; ++i) {
      const char* b = static_cast<const char*>(iov[i].iov_base);
      rec.insert(rec.end(), b, b + iov[i].iov_len);
    }
  }
  write_all(f.undo_fd, rec.data(), rec.size());
}

// Before writing `iov` at `off` (-1: the descriptor's offset) through `fd`.
void before_write(int fd, off_t off, const iovec* iov, int iovcnt) {
  bool sync = false;
  const int file = lookup(fd, &sync);
  if (file < 0) return;
  if (off < 0) {
    if (::fcntl(fd, F_GETFL) & O_APPEND) {
      struct stat st {};
      ::fstat(fd, &st);
      off = st.st_size;
    } else {
      off = ::lseek(fd, 0, SEEK_CUR);
    }
  }
  std::uint64_t len = 0;
  for (int i = 0; i < iovcnt; ++i) len += iov[i].iov_len;
  log_record(sync ? 'D' : 'U', file, static_cast<std::uint64_t>(off), len, iov, iovcnt);
}

void flushed(int file) {
  REAL(ftruncate);
  if (real_ftruncate(files[file].undo_fd, 0) != 0) die("cannot empty the undo log");
}

// After open/openat returned `fd` for `flags`: watch it if it is a file under dir
// (but LMDB's lock.mdb: shared memory for readers, not data; it is rebuilt at open).
void opened(int fd, int flags) {
  if (fd < 0 || fd >= max_fd || dir.empty()) return;
  char link[64], path[PATH_MAX];
  std::snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  ssize_t n = ::readlink(link, path, sizeof path - 1);
  if (n <= 0) return;
  path[n] = 0;
  if (std::strncmp(path, dir.c_str(), dir.size()) != 0) return;
  const char* base = std::strrchr(path, '/') + 1;
  if (std::strcmp(base, "lock.mdb") == 0) return;
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) return;
  int file = -1;
  for (std::size_t i = 0; i < files.size(); ++i)
    if (files[i].dev == st.st_dev && files[i].ino == st.st_ino) file = static_cast<int>(i);
  if (file < 0) {
    REAL(open);
    std::string undo = undo_dir + "/" + base + ".undo";
    int u = real_open(undo.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    int r = real_open(path, O_RDONLY | O_CLOEXEC, 0);
    if (u < 0 || r < 0) die("cannot open the undo log or the watched file");
    files.push_back({st.st_dev, st.st_ino, r, u});
    file = static_cast<int>(files.size() - 1);
  }
  fd_file[fd] = (flags & (O_SYNC | O_DSYNC)) != 0 ? -(file + 1) : file + 1;
}

// A flush of `fd`'s file completed (or, with RELAYD_SHIM_NOFLUSH, was skipped).
template <class F>
int flush(int fd, F&& call) {
  if (lookup(fd) < 0) return call();
  lock l;
  const int file = lookup(fd);
  if (file < 0) return call();  // closed meanwhile
  if (no_flush) return 0;
  int rc = call();
  if (rc == 0) flushed(file);
  return rc;
}

mode_t mode_arg(int flags, va_list ap) {
  return (flags & (O_CREAT | O_TMPFILE)) ? static_cast<mode_t>(va_arg(ap, int)) : 0;
}

}  // namespace

extern "C" {

// The mode argument is there only with O_CREAT / O_TMPFILE.
#define SHIM_OPEN(name, ...)                                   \
  int name(__VA_ARGS__ __VA_OPT__(, ) const char* path, int flags, ...) { \
    REAL(name);                                                \
    va_list ap;                                                \
    va_start(ap, flags);                                       \
    const mode_t m = mode_arg(flags, ap);                      \
    va_end(ap);                                                \
    lock l;                                                    \
    const int fd = real_##name(OPEN_AT_ARG(__VA_ARGS__) path, flags, m); \
    opened(fd, flags);                                         \
    return fd;                                                 \
  }
#define OPEN_AT_ARG(...) __VA_OPT__(at, )
SHIM_OPEN(open)
SHIM_OPEN(open64)
SHIM_OPEN(openat, int at)
SHIM_OPEN(openat64, int at)

int close(int fd) {
  REAL(close);
  if (lookup(fd) < 0) return real_close(fd);
  lock l;
  fd_file[fd] = 0;
  return real_close(fd);
}

ssize_t write(int fd, const void* buf, size_t n) {
  REAL(write);
  if (lookup(fd) < 0) return real_write(fd, buf, n);
  lock l;
  iovec v{const_cast<void*>(buf), n};
  before_write(fd, -1, &v, 1);
  return real_write(fd, buf, n);
}

#define SHIM_PWRITE(name, off_type)                                   \
  ssize_t name(int fd, const void* buf, size_t n, off_type off) {     \
    REAL(name);                                                       \
    if (lookup(fd) < 0) return real_##name(fd, buf, n, off);          \
    lock l;                                                           \
    iovec v{const_cast<void*>(buf), n};                               \
    before_write(fd, off, &v, 1);                                     \
    return real_##name(fd, buf, n, off);                              \
  }
SHIM_PWRITE(pwrite, off_t)
SHIM_PWRITE(pwrite64, off64_t)

ssize_t writev(int fd, const iovec* iov, int cnt) {
  REAL(writev);
  if (lookup(fd) < 0) return real_writev(fd, iov, cnt);
  lock l;
  before_write(fd, -1, iov, cnt);
  return real_writev(fd, iov, cnt);
}

#define SHIM_PWRITEV(name, off_type)                                    \
  ssize_t name(int fd, const iovec* iov, int cnt, off_type off) {       \
    REAL(name);                                                         \
    if (lookup(fd) < 0) return real_##name(fd, iov, cnt, off);          \
    lock l;                                                             \
    before_write(fd, off, iov, cnt);                                    \
    return real_##name(fd, iov, cnt, off);                              \
  }
SHIM_PWRITEV(pwritev, off_t)
SHIM_PWRITEV(pwritev64, off64_t)

// Shrinking loses the cut bytes until a flush: logged like a write of them.
int ftruncate(int fd, off_t len) {
  REAL(ftruncate);
  if (lookup(fd) < 0) return real_ftruncate(fd, len);
  lock l;
  {
    struct stat st {};
    ::fstat(fd, &st);
    const off_t from = std::min(len, st.st_size);
    log_record('U', lookup(fd), static_cast<std::uint64_t>(from),
               static_cast<std::uint64_t>(st.st_size - from), nullptr, 0);
  }
  return real_ftruncate(fd, len);
}

int fsync(int fd) {
  REAL(fsync);
  return flush(fd, [&] { return real_fsync(fd); });
}

int fdatasync(int fd) {
  REAL(fdatasync);
  return flush(fd, [&] { return real_fdatasync(fd); });
}

int syncfs(int fd) {
  REAL(syncfs);
  lock l;
  if (no_flush && !files.empty()) return 0;
  int rc = real_syncfs(fd);
  if (rc == 0)
    for (std::size_t i = 0; i < files.size(); ++i) flushed(static_cast<int>(i));
  return rc;
}

void sync() {
  REAL(sync);
  lock l;
  if (no_flush && !files.empty()) return;
  real_sync();
  for (std::size_t i = 0; i < files.size(); ++i) flushed(static_cast<int>(i));
}

// A writable shared mapping would let writes bypass write(): refuse to run.
void* mmap(void* addr, size_t len, int prot, int flags, int fd, off_t off) {
  REAL(mmap);
  const int file = lookup(fd);
  if (file < 0) return real_mmap(addr, len, prot, flags, fd, off);
  lock l;
  if ((prot & PROT_WRITE) && (flags & MAP_SHARED)) {
    std::fprintf(stderr, "power_loss_shim: writable shared mapping of a watched file "
                         "(MDB_WRITEMAP?): its writes cannot be tracked\n");
    std::abort();
  }
  void* p = real_mmap(addr, len, prot, flags, fd, off);
  if (p != MAP_FAILED && off == 0) maps.push_back({static_cast<const char*>(p), len, file});
  return p;
}

int munmap(void* addr, size_t len) {
  REAL(munmap);
  lock l;
  std::erase_if(maps, [&](const mapping& m) { return m.addr == addr; });
  return real_munmap(addr, len);
}

// MS_SYNC over a whole mapping of a file (from offset 0) flushes it; a part does not count.
int msync(void* addr, size_t len, int flags) {
  REAL(msync);
  lock l;
  int file = -1;
  for (const auto& m : maps)
    if (m.addr == addr && len >= m.len) file = m.file;
  if (file < 0 || !(flags & MS_SYNC)) return real_msync(addr, len, flags);
  if (no_flush) return 0;
  int rc = real_msync(addr, len, flags);
  if (rc == 0) flushed(file);
  return rc;
}

}  // extern "C"
