// Internal: small RAII wrappers over the LMDB C API used by the spool
// (environment, transaction, database handle, cursor). Every call returns its
// error as a value (std::error_code in the "lmdb" category, whose values are
// LMDB's own codes and plain errno values such as ENOSPC); nothing throws.
// Destructors release what is still held: a live transaction is aborted, a
// cursor is closed. A cursor must not outlive its transaction (declare it after).
#pragma once

#include <lmdb.h>

#include <cstddef>
#include <expected>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

namespace queue::lmdb {

class error_category_impl final : public std::error_category {
 public:
  const char* name() const noexcept override { return "lmdb"; }
  std::string message(int rc) const override { return mdb_strerror(rc); }
};

inline const std::error_category& category() noexcept {
  static const error_category_impl instance;
  return instance;
}

inline std::error_code make_error(int rc) noexcept {
  return {rc, category()};
}

// True when `ec` is the LMDB (or errno) code `rc`.
inline bool is(const std::error_code& ec, int rc) noexcept {
  return ec.value() == rc && ec.category() == category();
}

inline MDB_val to_val(std::string_view s) noexcept {
  return MDB_val{s.size(), const_cast<char*>(s.data())};
}
inline std::string_view to_view(const MDB_val& v) noexcept {
  return {static_cast<const char*>(v.mv_data), v.mv_size};
}

class env {
 public:
  env() = default;
  env(const env&) = delete;
  env& operator=(const env&) = delete;
  env(env&& o) noexcept : env_(std::exchange(o.env_, nullptr)) {}
  env& operator=(env&& o) noexcept {
    if (this != &o) {
      close();
      env_ = std::exchange(o.env_, nullptr);
    }
    return *this;
  }
  ~env() { close(); }

  static std::expected<env, std::error_code> create() {
    env e;
    if (int rc = mdb_env_create(&e.env_); rc != 0) {
      e.env_ = nullptr;
      return std::unexpected(make_error(rc));
    }
    return e;
  }

  std::error_code set_mapsize(std::size_t bytes) {
    return make_error(mdb_env_set_mapsize(env_, bytes));
  }
  std::error_code set_maxdbs(unsigned n) { return make_error(mdb_env_set_maxdbs(env_, n)); }
  std::error_code set_maxreaders(unsigned n) { return make_error(mdb_env_set_maxreaders(env_, n)); }
  std::error_code open(const char* path, unsigned flags, mdb_mode_t mode) {
    return make_error(mdb_env_open(env_, path, flags, mode));
  }
  // Clears reader slots left by dead processes; returns how many.
  int reader_check() {
    int dead = 0;
    mdb_reader_check(env_, &dead);
    return dead;
  }
  // Flushes the data file (with MDB_NOMETASYNC: the meta pages written since).
  std::error_code sync(bool force) { return make_error(mdb_env_sync(env_, force ? 1 : 0)); }
  MDB_envinfo info() const {
    MDB_envinfo i{};
    mdb_env_info(env_, &i);
    return i;
  }
  MDB_stat stat() const {
    MDB_stat s{};
    mdb_env_stat(env_, &s);
    return s;
  }
  void close() noexcept {
    if (env_ != nullptr) mdb_env_close(std::exchange(env_, nullptr));
  }

  MDB_env* get() const noexcept { return env_; }
  explicit operator bool() const noexcept { return env_ != nullptr; }

 private:
  MDB_env* env_ = nullptr;
};

// A database handle. Handles live as long as the environment and are never
// closed explicitly (LMDB's advice); this only gives them a type.
struct dbi {
  MDB_dbi handle = 0;
};

class txn {
 public:
  txn() = default;
  txn(const txn&) = delete;
  txn& operator=(const txn&) = delete;
  txn(txn&& o) noexcept : txn_(std::exchange(o.txn_, nullptr)) {}
  txn& operator=(txn&& o) noexcept {
    if (this != &o) {
      abort();
      txn_ = std::exchange(o.txn_, nullptr);
    }
    return *this;
  }
  ~txn() { abort(); }

  static std::expected<txn, std::error_code> begin(const env& e, unsigned flags,
                                                   MDB_txn* parent = nullptr) {
    txn t;
    if (!e) return std::unexpected(make_error(EINVAL));
    if (int rc = mdb_txn_begin(e.get(), parent, flags, &t.txn_); rc != 0) {
      t.txn_ = nullptr;
      return std::unexpected(make_error(rc));
    }
    return t;
  }

  // Ends the transaction whatever the outcome (LMDB frees it on failure too).
  std::error_code commit() {
    if (txn_ == nullptr) return make_error(EINVAL);
    return make_error(mdb_txn_commit(std::exchange(txn_, nullptr)));
  }
  void abort() noexcept {
    if (txn_ != nullptr) mdb_txn_abort(std::exchange(txn_, nullptr));
  }

  std::expected<dbi, std::error_code> open_dbi(const char* name, unsigned flags) {
    dbi d;
    if (int rc = mdb_dbi_open(txn_, name, flags, &d.handle); rc != 0) {
      return std::unexpected(make_error(rc));
    }
    return d;
  }

  // The view points into the map: valid until the transaction ends (or, in a
  // write transaction, until the next write).
  std::expected<std::string_view, std::error_code> get(dbi d, std::string_view key) const {
    MDB_val k = to_val(key);
    MDB_val v{};
    if (int rc = mdb_get(txn_, d.handle, &k, &v); rc != 0) {
      return std::unexpected(make_error(rc));
    }
    return to_view(v);
  }
  std::error_code put(dbi d, std::string_view key, std::string_view value, unsigned flags = 0) {
    MDB_val k = to_val(key);
    MDB_val v = to_val(value);
    return make_error(mdb_put(txn_, d.handle, &k, &v, flags));
  }
  std::error_code del(dbi d, std::string_view key) {
    MDB_val k = to_val(key);
    return make_error(mdb_del(txn_, d.handle, &k, nullptr));
  }
  // Empties the database (keeps it).
  std::error_code clear(dbi d) { return make_error(mdb_drop(txn_, d.handle, 0)); }
  std::expected<MDB_stat, std::error_code> stat(dbi d) const {
    MDB_stat s{};
    if (int rc = mdb_stat(txn_, d.handle, &s); rc != 0) return std::unexpected(make_error(rc));
    return s;
  }
  int compare(dbi d, std::string_view a, std::string_view b) const {
    MDB_val va = to_val(a);
    MDB_val vb = to_val(b);
    return mdb_cmp(txn_, d.handle, &va, &vb);
  }

  MDB_txn* get() const noexcept { return txn_; }
  explicit operator bool() const noexcept { return txn_ != nullptr; }

 private:
  MDB_txn* txn_ = nullptr;
};

class cursor {
 public:
  cursor() = default;
  cursor(const cursor&) = delete;
  cursor& operator=(const cursor&) = delete;
  cursor(cursor&& o) noexcept : cur_(std::exchange(o.cur_, nullptr)) {}
  cursor& operator=(cursor&& o) noexcept {
    if (this != &o) {
      close();
      cur_ = std::exchange(o.cur_, nullptr);
    }
    return *this;
  }
  ~cursor() { close(); }

  static std::expected<cursor, std::error_code> open(const txn& t, dbi d) {
    cursor c;
    if (int rc = mdb_cursor_open(t.get(), d.handle, &c.cur_); rc != 0) {
      c.cur_ = nullptr;
      return std::unexpected(make_error(rc));
    }
    return c;
  }

  // `data` may be null to position without fetching the value.
  std::error_code get(MDB_val* key, MDB_val* data, MDB_cursor_op op) {
    return make_error(mdb_cursor_get(cur_, key, data, op));
  }
  void close() noexcept {
    if (cur_ != nullptr) mdb_cursor_close(std::exchange(cur_, nullptr));
  }

 private:
  MDB_cursor* cur_ = nullptr;
};

}  // namespace queue::lmdb
