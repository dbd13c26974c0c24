// commit_plan.h - what a validated transaction means for the file system.
//
// PlanTransaction compares each authoritative range of a transaction with
// the items the tenant's tree holds in that range now (through TreeView),
// derives the file-system operations that turn one into the other, checks
// every invariant that needs the current tree, and orders the operations so
// that each can run as one system call against the state the ones before it
// leave (docs/protocol.md §6.2). Nothing is changed here: a refused plan
// changes nothing.
//
// Every Op is written to the tenant's intent journal before the first one
// runs, so Ops are plain data: objects are named by objectid (a real inode
// number, or a provisional id the plan creates), names are single path
// components that ValidateTransaction already checked, uids and gids are
// host ids.
//
// Operations and their preconditions (checked again when they run; after
// a crash, a precondition that no longer holds means "already done"):
//   kCreate    dir/name is free      -> a new regular file, dir or symlink
//   kLink      dir/name is free      -> another name for obj
//   kRename    dir/name is obj, dir2/name2 is free -> obj moves
//   kExchange  dir/name is obj, dir2/name2 is obj2 -> they swap
//   kUnlink    dir/name is obj       -> that name goes (rmdir for a dir)
//   kWrite, kPunch, kTruncate, kChown, kChmod, kSetXattr, kRemoveXattr,
//   kSetTimes  absolute changes to obj; running one twice is harmless.
//
// Value types; thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "proto/messages.h"
#include "server/idmap.h"
#include "server/transaction.h"

namespace crfs::server {

// The current tree, as the planner sees it. TenantStore implements it; unit
// tests implement it over a map.
class TreeView {
 public:
  virtual ~TreeView() = default;
  // Items of existing object `ino` with keys in [from, to] (all of them:
  // a view that cannot produce them all fails with E2BIG). ENOENT if the
  // tenant has no such object (or was never shown it).
  virtual bool Items(uint64_t ino, const proto::Key& from, const proto::Key& to, std::vector<proto::Item>* out,
                     RequestError* err) = 0;
  // Just the file type and link count of existing object `ino` (cheaper
  // than Items for the many objects a transaction only unlinks).
  virtual bool Shape(uint64_t ino, uint32_t* mode, uint32_t* nlink, RequestError* err) = 0;
  // The directory holding `ino` (the one its INODE_REF names), 0 if
  // unknown; the root's parent is itself.
  virtual uint64_t ParentOf(uint64_t ino) = 0;
  // The generation at which `ino` last changed (0: not since the floor).
  virtual uint64_t ChangedAt(uint64_t ino) = 0;
  // Is `name` in directory `dir` taken by something the listings do not
  // show (a nested subvolume or snapshot)? Asked for names a
  // transaction adds, after the directory was listed.
  virtual bool Hidden(uint64_t dir, const std::string& name) = 0;
  // Does directory `dir` hold any such name? (It cannot be removed then.)
  virtual bool HasHidden(uint64_t dir) = 0;
};

struct Op {
  enum Kind : uint8_t {
    kCreate = 1,
    kLink,
    kRename,
    kExchange,
    kUnlink,
    kWrite,
    kPunch,
    kTruncate,
    kChown,
    kChmod,
    kSetXattr,
    kRemoveXattr,
    kSetTimes,
  };
  Kind kind = kCreate;
  uint64_t dir = 0;           // kCreate/kLink/kRename/kExchange/kUnlink: the directory
  std::string name;           //   and the name in it
  uint64_t obj = 0;           // the object (provisional id for kCreate)
  uint64_t dir2 = 0;          // kRename/kExchange: the other directory,
  std::string name2;          //   name,
  uint64_t obj2 = 0;          //   and (kExchange) the object there
  uint32_t mode = 0;          // kCreate: S_IFREG/S_IFDIR/S_IFLNK | perms (made owner-only; a later
                              // kChmod sets the perms); kChmod: perms
  uint32_t uid = 0, gid = 0;  // kCreate/kChown: host ids
  uint64_t offset = 0;        // kWrite/kPunch: where; kTruncate: the size
  uint64_t length = 0;        // kPunch: how much
  std::string data;           // kWrite: bytes; kCreate of a symlink: target; xattrs: value
  std::string xname;          // kSetXattr/kRemoveXattr
  proto::Timespec atime, mtime;
  bool operator==(const Op&) const = default;
};

struct Plan {
  std::vector<Op> ops;
  // Objects whose items change (directories whose entries change included):
  // their change generation becomes the transaction's.
  std::set<uint64_t> changed;
  // Provisional objectids the plan creates, in creation order.
  std::vector<uint64_t> created;
  // Provisional DIR_INDEX values -> (directory, name), resolved after commit.
  std::map<uint64_t, std::pair<uint64_t, std::string>> new_indexes;
};

// Plans `t` (already passed by ValidateTransaction) against `view`.
// `floor` is the lowest base_generation the tenant still honours (changes
// before it are not tracked: older bases are stale); `current` the
// tenant's generation now. Returns err.err == 0 and fills *plan, or the
// errno and a text naming the offending key.
RequestError PlanTransaction(const Transaction& t, const IdMap& ids, uint64_t floor, uint64_t current, TreeView* view,
                             Plan* plan);

}  // namespace crfs::server
