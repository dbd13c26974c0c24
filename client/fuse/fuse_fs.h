// fuse_fs.h - crfs-fuse's file system: libfuse3 low-level requests answered
// over one crfs session.
//
// Each FUSE request is one call on FileOps / Connection, on objectids and
// (parent objectid, name) pairs as the VFS gives them: FUSE node ids are
// crfs objectids (FUSE_ROOT_ID stands for the tenant's root). Nothing is
// cached here beyond what the kernel caches for the entry and attribute
// timeouts (Options) and the page cache kept across opens of a file whose
// size and mtime did not change (keep_cache).
//
// Changes are transactions of their own, answered when applied, except
// writes: the writes to one file are gathered (up to kGatherBytes, pieces
// merged where they touch or overlap, the later bytes winning) and sent as
// one transaction when a write to another file comes, when any other
// request comes (so every other request, of this mount, sees
// them on the server), on flush (close) and fsync, and at the latest after
// Options::write_delay (the flusher thread). A gathered write that the
// server refuses is reported by the file's next write, flush (close(2)) or
// fsync, as NFS reports write-back errors. fsync waits until everything
// sent is durable (SYNC). A change refused as ESTALE
// (someone else changed what it was built from) is read and built again, a
// few times. A lost connection is reconnected (Options::reconnect_ms) by
// the next request; transactions cut off are resent by FileOps with their
// id (exactly once, protocol.md §6.4); reads are retried once; the files
// this mount holds open are opened again (OPEN), and one the server no
// longer has answers ESTALE from then on.
//
// Threads: libfuse's worker threads call the handlers; one mutex (mu_)
// serializes every use of the session (Connection is synchronous). All
// state below is guarded by it.
//
// Identity: every request acts as the session's tenant user (HELLO_REPLY),
// whichever local user makes it; ids are shown as the tenant's ids. A mount
// therefore stays private to the user who made it (no allow_other unless
// asked for). Per-request credentials are the FUSE issue's next step.
#pragma once

#define FUSE_USE_VERSION 314
#include <fuse_lowlevel.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "client/connection.h"
#include "client/file_ops.h"

namespace crfs::client {

class FuseFs {
 public:
  struct Options {
    double entry_timeout = 1.0;  // seconds the kernel keeps a name
    double attr_timeout = 1.0;   // seconds it keeps attributes
    double write_delay = 0.5;    // seconds a gathered write may wait (0: none is gathered)
  };
  FuseFs(std::unique_ptr<Connection> conn, const Options& options);
  ~FuseFs();  // stops the flusher and sends what is gathered
  FuseFs(const FuseFs&) = delete;
  FuseFs& operator=(const FuseFs&) = delete;
  static constexpr size_t kGatherBytes = 8 << 20;

  // The handler table for fuse_session_new; `userdata` is this FuseFs.
  static const struct fuse_lowlevel_ops* Ops();

 private:
  struct DirHandle;
  struct Held {  // this mount's opens of one object (OPEN is not counted by the server)
    int count = 0;
    uint32_t flags = 0;  // CRFS_OPEN_* asked for so far
    bool stale = false;  // lost with a restart of crfsd: ESTALE
  };

  uint64_t Obj(fuse_ino_t ino) const { return ino == FUSE_ROOT_ID ? root_ : ino; }
  fuse_ino_t Node(uint64_t obj) const { return obj == root_ ? FUSE_ROOT_ID : obj; }
  struct stat Stat(uint64_t obj, const proto::InodeItem& in) const;
  fuse_entry_param EntryOf(uint64_t obj, const proto::InodeItem& in) const;

  // Runs `f` (returning Status or Result<T>) under mu_, after sending every
  // gathered write (`flush_all`): again after ESTALE, and, if `reads`
  // (nothing changes), once more after a reconnect.
  template <typename F>
  auto Run(bool reads, F&& f, bool flush_all = true) -> decltype(f());
  Status Reconnect();  // mu_ held
  // Gathered writes (mu_ held): send one file's, or every file's; a failure
  // is kept in write_error_ for the file's next write, flush or fsync.
  Status FlushOne(uint64_t obj);
  void FlushAll();
  int TakeError(uint64_t obj);
  void Flusher();  // the flusher thread's loop (started by init, after fuse_daemonize forked)
  Status OpenOn(uint64_t obj, uint32_t flags);  // mu_ held: OPEN, counted in held_
  void CloseOn(uint64_t obj);                   // mu_ held

  // The handlers (see fuse_lowlevel.h for each contract).
  void Lookup(fuse_req_t req, fuse_ino_t parent, const char* name);
  void Getattr(fuse_req_t req, fuse_ino_t ino);
  void Setattr(fuse_req_t req, fuse_ino_t ino, const struct stat* attr, int to_set);
  void Readlink(fuse_req_t req, fuse_ino_t ino);
  void Mknod(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, const std::string& target);
  void Unlink(fuse_req_t req, fuse_ino_t parent, const char* name, FileOps::Removing what);
  void Rename(fuse_req_t req, fuse_ino_t parent, const char* name, fuse_ino_t newparent, const char* newname,
              unsigned flags);
  void Link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char* newname);
  void Open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info* fi);
  void Create(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, struct fuse_file_info* fi);
  void Read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off);
  void Write(fuse_req_t req, fuse_ino_t ino, const char* buf, size_t size, off_t off);
  void Flush(fuse_req_t req, fuse_ino_t ino);
  void Release(fuse_req_t req, fuse_ino_t ino);
  void Fsync(fuse_req_t req, fuse_ino_t ino);
  void Opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info* fi);
  void Readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info* fi);
  void Releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info* fi);
  void Statfs(fuse_req_t req);
  void Setxattr(fuse_req_t req, fuse_ino_t ino, const char* name, const char* value, size_t size, int flags);
  void Getxattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size);
  void Listxattr(fuse_req_t req, fuse_ino_t ino, size_t size);
  void Removexattr(fuse_req_t req, fuse_ino_t ino, const char* name);

  std::mutex mu_;
  std::unique_ptr<Connection> conn_;
  FileOps ops_;
  const Options options_;
  const uint64_t root_;
  std::map<uint64_t, Held> held_;
  // Per file: size and mtime when last opened, to keep its page cache.
  std::map<uint64_t, std::pair<uint64_t, proto::Timespec>> opened_as_;
  struct Gathered {
    std::map<uint64_t, std::vector<uint8_t>> pieces;  // offset -> bytes; disjoint, merged when they touch
    size_t bytes = 0;
    std::chrono::steady_clock::time_point since;
  };
  std::map<uint64_t, Gathered> gathered_;
  std::map<uint64_t, int> write_error_;  // errno of a gathered write the server refused
  std::condition_variable wake_;         // the flusher's
  bool stopping_ = false;
  std::thread flusher_;
};

// The errno a failed Status stands for: the server's, or EIO.
int ErrnoOf(const Status& s);

}  // namespace crfs::client
