// file_ops.h - POSIX-style changes built as CRFS transactions.
//
// Each call reads what it needs (lookups, the affected directory entries),
// builds the authoritative ranges of docs/protocol.md §6.2 against the
// generation the connection last saw, and commits them as one transaction
// (several only where one would pass the server's 64 MiB limit: Put of a
// large file). `rm -r` of a tree is one transaction: one empty range per
// directory of the tree plus the entry in its parent.
//
// Paths are absolute in the tenant ("/a/b"). Errors: Status; a refusal by
// the server is Code::kRemote with its errno and detail.
//
// Not thread-safe: uses one Connection.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "client/connection.h"
#include "proto/messages.h"
#include "proto/status.h"

namespace crfs::client {

class FileOps {
 public:
  explicit FileOps(Connection* c) : c_(c), generation_(c->hello().generation) {}

  // ---- The VFS's view: objects by objectid, names as (directory, name) ----
  // What FUSE (and the kernel module's design) call; the path operations
  // below resolve a path, then use these.

  // One name of a directory, from its DIR_ITEM (a lookup: search permission
  // on `dir`) and, if it exists, the object's INODE_ITEM and INODE_REF (for
  // its index) in one more query.
  struct Entry {
    uint64_t dir = 0;
    std::string name;
    uint64_t obj = 0;  // 0: no such entry
    uint8_t type = 0;  // CRFS_FT_*
    uint64_t index = 0;
    std::vector<proto::DirEntry> same_hash;  // the other entries under the name's hash
    std::optional<proto::InodeItem> inode;   // the object's, read with its INODE_REF (obj != 0)
  };
  Result<Entry> FindIn(uint64_t dir, const std::string& name);
  Result<proto::InodeItem> Inode(uint64_t obj);
  // Makes `name` in `dir`: a regular file, directory or (`target`) symlink
  // of `mode` (type and permission bits), owned by the session's user;
  // returns its objectid. Other types: EPERM (the server makes no nodes).
  Result<uint64_t> CreateIn(uint64_t dir, const std::string& name, uint32_t mode, const std::string& target = "");
  // unlink(2) (kNotDir: EISDIR on a directory), rmdir(2) (kDir: ENOTDIR on
  // anything else; ENOTEMPTY from the server), or either (kAny).
  enum class Removing { kAny, kNotDir, kDir };
  Status RemoveIn(uint64_t dir, const std::string& name, Removing what);
  // rename(2)/renameat2(2): `flags` 0, RENAME_NOREPLACE or RENAME_EXCHANGE.
  Status RenameIn(uint64_t dir, const std::string& name, uint64_t to_dir, const std::string& to_name, unsigned flags);
  Status LinkIn(uint64_t obj, uint64_t dir, const std::string& name);
  // The target of symlink `obj`.
  Result<std::string> ReadLink(uint64_t obj);
  // Attribute changes of one object in one transaction (a setattr): each
  // field that is set changes; the rest stay.
  struct Attrs {
    std::optional<uint32_t> mode;      // permission bits
    std::optional<uint32_t> uid, gid;  // tenant ids
    std::optional<uint64_t> size;      // regular files: truncate or extend
    std::optional<proto::Timespec> atime, mtime;
  };
  Status SetAttrsOf(uint64_t obj, const Attrs& attrs);
  // setxattr(2) (`flags` 0, XATTR_CREATE: EEXIST, XATTR_REPLACE: ENODATA),
  // removexattr(2) (ENODATA), and the values (one name, or all).
  Status SetXattrOf(uint64_t obj, const std::string& name, const std::string& value, int flags = 0);
  Status RemoveXattrOf(uint64_t obj, const std::string& name);
  Result<std::string> GetXattr(uint64_t obj, const std::string& name);  // ENODATA
  Result<std::vector<std::string>> ListXattrs(uint64_t obj);

  // ---- By path ("/a/b"), for the crfs command ----

  Status Mkdir(const std::string& path, uint32_t mode = 0755);
  // Creates `path` (or replaces the contents of an existing regular file).
  Status Put(const std::string& path, const std::vector<uint8_t>& data, uint32_t mode = 0644);
  // Writes `data` at `offset` of regular file `obj` (by objectid: also one
  // held open whose last name is gone), growing it if it ends past its size.
  Status WriteAt(uint64_t obj, uint64_t offset, const std::vector<uint8_t>& data);
  // Several non-overlapping pieces (offset -> bytes) of regular file `obj`
  // in one transaction, growing the file to the end of the last; together
  // at most kTransactionBytes.
  Status WriteExtents(uint64_t obj, const std::map<uint64_t, std::vector<uint8_t>>& pieces);
  static constexpr size_t kTransactionBytes = 32ull << 20;  // data per transaction
  Status Remove(const std::string& path);                   // a file, symlink or empty directory
  Status RemoveTree(const std::string& path);
  Status Rename(const std::string& from, const std::string& to);  // replaces a file or empty directory
  // Each of `paths` (two or more, all existing) takes the object of the
  // next, the last the first's, in one transaction: two names swap (as
  // renameat2 RENAME_EXCHANGE), more rotate.
  Status Exchange(const std::vector<std::string>& paths);
  Status Link(const std::string& existing, const std::string& path);
  Status Symlink(const std::string& target, const std::string& path);
  Status Chmod(const std::string& path, uint32_t mode);
  Status SetAttrs(const std::string& path, const Attrs& attrs);
  Status SetXattr(const std::string& path, const std::string& name, const std::string& value);
  Status RemoveXattr(const std::string& path, const std::string& name);
  // Copies the local directory tree `local` to a new directory `path`
  // (files, directories, symlinks; modes and mtimes; owned by the tenant's
  // root), in batched transactions of about `batch` objects each. A
  // directory's entries always travel in one transaction. *objects counts
  // what was created, *transactions the transactions it took.
  Status Import(const std::string& local, const std::string& path, size_t batch, uint64_t* objects,
                uint64_t* transactions);

  // Commits `ranges` as one transaction (fragmented to fit the session's
  // payload limit); the reply's generation becomes the base of the next.
  Result<proto::TransReply> Commit(std::vector<proto::ItemRange> ranges, uint8_t flags = 0);

  // Frames and bytes this object sent for transactions (benchmarks).
  uint64_t frames_sent() const { return frames_sent_; }
  uint64_t bytes_sent() const { return bytes_sent_; }
  uint64_t generation() const { return generation_; }

 private:
  Result<Entry> Find(const std::string& path);
  // Commit, based on generation `base` (what the client knows of every
  // object the ranges cover is at least that current).
  Result<proto::TransReply> CommitAt(std::vector<proto::ItemRange> ranges, uint64_t base, uint8_t flags = 0);
  // One try of transaction `id`: every fragment, then the TRANS_REPLY.
  Result<proto::TransReply> SendTransaction(uint64_t id, const std::vector<std::vector<proto::ItemRange>>& frags,
                                            uint64_t base, uint8_t flags);
  static constexpr int kMaxResends = 5;
  uint64_t NextProvisional() { return CRFS_PROVISIONAL_FIRST + next_provisional_++; }
  // Ranges that make `e.name` in `e.dir` name `obj` (0: nothing), of type `type`.
  void EntryRanges(const Entry& e, uint64_t obj, uint8_t type, std::vector<proto::ItemRange>* out);

  Connection* c_;
  uint64_t generation_;
  uint64_t next_provisional_ = 0;
  uint64_t frames_sent_ = 0, bytes_sent_ = 0;
};

}  // namespace crfs::client
