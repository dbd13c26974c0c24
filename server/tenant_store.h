// tenant_store.h - one tenant's files: its btrfs subvolume, seen as items.
//
// A TenantStore holds a directory fd on the tenant's subvolume root
// (<storage_root>/tenants/<name>) and reaches every file beneath it only by
// single-component openat2() calls relative to a directory fd it opened,
// with RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS |
// RESOLVE_NO_XDEV, checking device and inode number after each step. It
// never builds paths from client input and never uses file handles
// (open_by_handle_at would reach every subvolume: DESIGN.md §7).
//
// Objectids a client may name are the ones this store has shown the tenant:
// the root (256) and every entry of every directory it has listed. That
// table maps an objectid to its parent, name and directory index. Anything
// else is ENOENT, as is anything on another device (a nested subvolume or
// snapshot) or an object whose number changed under us (renamed/replaced).
//
// Items are synthesized from the live file system on each query (statx,
// getdents64, listxattr, SEEK_DATA/SEEK_HOLE, readlink) in btrfs key order;
// uids and gids go out as tenant ids through the tenant's IdMap.
//
// Not thread-safe: one store is used by one thread (the event loop now, the
// tenant's store worker after the privilege split).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "proto/messages.h"
#include "proto/status.h"
#include "server/config.h"
#include "server/idmap.h"

namespace crfs::server {

// A request error: a Linux errno for the FINAL_REPLY plus a detail text.
struct RequestError {
  int err = 0;
  std::string text;
};

class TenantStore {
 public:
  static Result<std::unique_ptr<TenantStore>> Open(const std::string& storage_root, const TenantConfig& config);
  ~TenantStore();
  TenantStore(const TenantStore&) = delete;
  TenantStore& operator=(const TenantStore&) = delete;

  const std::string& name() const { return name_; }
  const IdMap& ids() const { return ids_; }

  // The subvolume's current generation (btrfs transid), 0 if unknown.
  uint64_t Generation() const;

  // Answers an ITEM_QUERY: the ranges to send, in order, each at most
  // q.bytes of encoded range and CRFS_MAX_RANGE_ITEMS items (but at least one
  // item), together at most
  // kMaxQueryReply bytes. Only q.key.objectid is answered (protocol.md §7).
  bool Query(const proto::ItemQuery& q, std::vector<proto::ItemRange>* out, RequestError* err);

  // Answers a DATA_READ: zero DATA replies at or past end of file.
  bool Read(const proto::DataRead& r, std::vector<proto::Data>* out, RequestError* err);

  static constexpr size_t kMaxQueryReply = 8 << 20;
  // Bounds on the work and memory of one query, whatever the object: items
  // generated (extents of a huge sparse file), entries of one directory.
  static constexpr size_t kMaxItemsPerQuery = 65536;
  static constexpr size_t kMaxDirEntries = 1 << 20;
  // Largest regular-file run described by one EXTENT_DATA item.
  static constexpr uint64_t kMaxExtentItem = 1ull << 30;

 private:
  struct Entry {
    uint64_t parent = 0;
    uint64_t index = 0;
    std::string name;
    uint8_t type = 0;  // CRFS_FT_* as the directory listing reported it
  };

  TenantStore(std::string name, const IdMapConfig& ids, int root_fd, dev_t dev)
      : name_(std::move(name)), ids_(ids), root_fd_(root_fd), dev_(dev) {}

  // Opens objectid `ino` with `flags` (O_PATH, O_RDONLY, ...), verified to be
  // that inode on the tenant's device. Returns -1 with *err set.
  int OpenObject(uint64_t ino, int flags, RequestError* err);
  // An O_PATH fd of directory `ino`, owned by the directory cache (do not
  // close it); -1 with *err set.
  int DirFd(uint64_t ino, int depth, RequestError* err);
  int OpenChild(int dir_fd, const std::string& name, uint64_t want_ino, int flags, RequestError* err);
  // The items of `ino` whose keys may lie in [from, to], in key order (some
  // outside it may come too). Sets *truncated if it stopped early (at
  // kMaxItemsPerQuery); items->back() is then the last key it vouches for.
  bool ItemsOf(uint64_t ino, const proto::Key& from, const proto::Key& to, std::vector<proto::Item>* items,
               bool* truncated, RequestError* err);
  bool DirItems(int dir_fd, uint64_t ino, std::vector<proto::Item>* items, RequestError* err);

  std::string name_;
  IdMap ids_;
  int root_fd_;
  dev_t dev_;
  std::unordered_map<uint64_t, Entry> table_;
  // Directories opened recently, by objectid: a lookup costs one openat2
  // from the parent instead of one per path component. An fd keeps naming
  // its directory wherever it is renamed to, and a rename cannot leave the
  // subvolume (EXDEV), so a cached fd never reaches outside the tenant.
  std::unordered_map<uint64_t, int> dir_cache_;
  static constexpr size_t kDirCacheMax = 4096;
};

}  // namespace crfs::server
