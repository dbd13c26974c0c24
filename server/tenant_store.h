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
// Objectids a client may name are those of the objects of the tenant's
// tree: the root (256) and anything with a name in it outside crfsd's undo
// area. The store keeps a table of the objects it knows: for each, every
// name it knows (parent, name, directory index), learned from directory
// listings and from the transactions it applies. An objectid the table does
// not hold (never listed since crfsd started, dropped by the table's bound,
// its known names gone while it has others) is looked up in btrfs's own
// back references (BTRFS_IOC_INO_PATHS: the object's INODE_REF and
// INODE_EXTREF items; crfsd needs CAP_SYS_ADMIN for it), and each path it
// gives is walked from the root with openat2 and learned only if it leads to
// that object on the tenant's device. So a live object is never ENOENT, and
// INODE_REF items list every name (verified on each query of an object with
// more than one link). Anything on another device (a nested subvolume or
// snapshot) or reachable only through the undo area is ENOENT. The table is
// bounded (limits.max_known_objects_per_tenant): past it, entries are
// dropped and relearned on demand.
//
// Sessions may hold objects open (OPEN/CLOSE, docs/protocol.md §7). Before
// a transaction removes a name of a held object, the store opens it and
// keeps that fd until the last holder closes it, so an object that lost its
// last name lives on (btrfs keeps an unlinked inode while an fd refers to
// it; a crash of crfsd drops it, with the sessions that held it). Such an
// object is reachable by objectid only for the sessions that hold it.
// Requests say which session they come from (the `session` arguments: the
// session's serial number).
//
// Items are synthesized from the live file system on each query (statx,
// getdents64, listxattr, SEEK_DATA/SEEK_HOLE, readlink) in btrfs key order;
// uids and gids go out as tenant ids through the tenant's IdMap.
//
// Not thread-safe: one thread at a time uses a store: the event loop, or,
// while a transaction commits, the tenant's StoreWorker (store_worker.h),
// during which the event loop leaves it alone.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "proto/messages.h"
#include "proto/status.h"
#include "server/access.h"
#include "server/audit_trail.h"
#include "server/commit_plan.h"
#include "server/config.h"
#include "server/idmap.h"
#include "server/journal.h"
#include "server/policy_gate.h"
#include "server/request_error.h"

namespace crfs::server {

// The result of a committed transaction (TRANS_REPLY).
struct CommitResult {
  uint64_t generation = 0;
  bool durable = false;
  std::vector<proto::TransMapEntry> map;
};

class TenantStore : public TreeView {
 public:
  // Opens the tenant's subvolume and its intent journal
  // (<storage_root>/journal/<name>), finishes a transaction a crash cut
  // short, and starts a new generation epoch (journal.h).
  // `after_reboot`: the machine restarted since crfsd last ran (its
  // journal's DONE records may not have reached the disk: replay then takes
  // a name a pending transaction creates as its own, see Apply).
  // `audit`: the audit log (shared, thread-safe; outlives the store): a
  // start makes sure it holds the decision record of every transaction the
  // journal holds (journal.h, AuditedRecord). Null only in unit tests.
  static Result<std::unique_ptr<TenantStore>> Open(const std::string& storage_root, const TenantConfig& config,
                                                   bool after_reboot = true, audit::AuditLog* audit = nullptr);
  // Opens (read-only) and checks the tenant's subvolume root: a btrfs
  // subvolume on a file system mounted nodev and nosuid. Returns the
  // directory fd (the caller closes it), its stat, and whether the mount
  // updates atimes (not noatime). Used by Open and by --check-config.
  static Result<int> OpenSubvolume(const std::string& storage_root, const TenantConfig& config, struct stat* st,
                                   bool* atime_updates);
  ~TenantStore();
  TenantStore(const TenantStore&) = delete;
  TenantStore& operator=(const TenantStore&) = delete;

  const std::string& name() const { return name_; }
  const IdMap& ids() const { return ids_; }

  // The tenant's generation: epoch << 32 | transactions committed in this
  // epoch (journal.h). Clients build transactions against it.
  uint64_t Generation() const { return epoch_ << 32 | sequence_; }
  // The generation up to which every commit is on stable storage.
  uint64_t DurableGeneration() const { return durable_; }

  // Plans `t` (validated by ValidateTransaction), checks that `who` may
  // make every change (PermitPlan), journals the plan and applies it with
  // who's mapped fsuid/fsgid (fs_credentials.h; the tenant's root keeps the
  // file capabilities inside its tree, anyone else has none, so the kernel
  // checks every call as that user). On refusal nothing changed. If an
  // operation fails midway (the tree was changed behind crfsd's back, the
  // disk is full, a permission rule the pre-check does not model), the ops
  // before it are taken back (tenant_undo.cc) and the answer is its errno;
  // only a rollback that cannot finish leaves EIO (the journal keeps it for
  // the next start, and the tenant takes no transactions meanwhile).
  // `who_txn` names the client instance, transaction id and body digest
  // (reply empty) when the client has a client id (answers.h): the answer
  // is then kept, in memory and in the journal, for a resent transaction.
  // `check`: the policy and who asks; the plan is decided op by op
  // (PolicyPermitsPlan) after PermitPlan and before the journal.
  bool Commit(const Transaction& t, uint64_t session, const ClientCredentials& who, const StoredAnswer* who_txn,
              const PolicyCheck& check, CommitResult* result, RequestError* err);
  // May `check`'s requester do read-side `op` (read, readdir, open) to
  // `ino`? Decided for every path of the object (tenant_policy.cc); EACCES
  // (or the deny rule's errno) with the rule named otherwise.
  bool PolicyPermitsRead(const PolicyCheck& check, policy::OpKind op, uint64_t ino, RequestError* err);
  // Counts changes of the tenant's paths (renames, removals, new names of
  // existing objects): read decisions cached before a change are stale.
  uint64_t paths_epoch() const { return paths_epoch_; }
  // The CRFS_FT_* of `ino` as listed (CRFS_FT_UNKNOWN if not known).
  uint8_t KnownType(uint64_t ino);
  // The kept answer to transaction `txn` of `who`, or nullptr.
  const StoredAnswer* AnswerTo(const ClientKey& who, uint64_t txn) const { return answers_.Find(who, txn); }
  // Makes everything committed durable (syncfs) and returns the generation.
  bool Sync(uint64_t* generation, RequestError* err);

  // TreeView, for the planner.
  bool Items(uint64_t ino, const proto::Key& from, const proto::Key& to, std::vector<proto::Item>* out,
             RequestError* err) override;
  bool Shape(uint64_t ino, uint32_t* mode, uint32_t* nlink, RequestError* err) override;
  uint64_t ParentOf(uint64_t ino) override;
  uint64_t ChangedAt(uint64_t ino) override;
  bool Hidden(uint64_t dir, const std::string& name) override;
  bool HasHidden(uint64_t dir) override;

  // Answers an ITEM_QUERY: the ranges to send, in order, each at most
  // q.bytes of encoded range and CRFS_MAX_RANGE_ITEMS items (but at least one
  // item), together at most
  // kMaxQueryReply bytes. Only q.key.objectid is answered (protocol.md §7).
  // Reads are checked as `who` (ReadRights): a reply stops early before the
  // first item the user may not see (protocol.md §7, ITEM_QUERY), and a
  // query that starts at one is EACCES. `policy_denied`: the policy refuses
  // this object's contents (read of a file, readdir of a directory) with
  // that error; the contents are then held back in the same way, and a
  // query that starts at them gets that error (docs/policy.md "Reads").
  bool Query(uint64_t session, const ClientCredentials& who, const proto::ItemQuery& q,
             const RequestError* policy_denied, std::vector<proto::ItemRange>* out, RequestError* err);

  // Answers a TREE_QUERY: the DIR_INDEX ranges of directory q.objectid and
  // of the directories below it, breadth first, each range at most q.bytes
  // and CRFS_MAX_RANGE_ITEMS items, together about kMaxQueryReply bytes
  // (whole directories; a directory over the budget alone is cut short).
  // Directories below q.objectid that `who` may not read, or that `check`'s
  // policy does not let it readdir (nullptr: no policy check), get no range.
  bool TreeQuery(const ClientCredentials& who, const PolicyCheck* check, const proto::TreeQuery& q,
                 std::vector<proto::ItemRange>* out, RequestError* err);

  // Answers a DATA_READ: zero DATA replies at or past end of file.
  // EACCES unless `who` may read the file.
  bool Read(uint64_t session, const ClientCredentials& who, const proto::DataRead& r, std::vector<proto::Data>* out,
            RequestError* err);

  // OPEN: `session`, acting as `who`, holds `ino` (a regular file or
  // directory the tenant was shown) with CRFS_OPEN_* `flags`, if `who` may
  // open it so (read/write permission; EISDIR for writing a directory).
  // EMFILE past max_open_per_session objects.
  bool HoldOpen(uint64_t session, const ClientCredentials& who, uint64_t ino, uint32_t flags, RequestError* err);
  // CLOSE: EBADF if `session` does not hold `ino`. The last holder's close
  // of an object without names destroys it.
  bool CloseHeld(uint64_t session, uint64_t ino, RequestError* err);
  // Limits (crfsd.json limits.max_open_per_session, max_unnamed_per_tenant).
  void SetOpenLimits(size_t held_per_session, size_t kept) {
    max_held_per_session_ = held_per_session;
    max_kept_ = kept;
  }
  void SetDurability(Durability d) { durability_ = d; }
  // Objects the table keeps at most (crfsd.json limits.max_known_objects_per_tenant).
  void SetTableLimit(size_t max_objects) { max_known_ = max_objects; }
  size_t known_objects() const { return table_.size(); }
  // The session ended: it holds nothing any more.
  void CloseAllHeld(uint64_t session);

  static constexpr size_t kMaxQueryReply = 8 << 20;
  // Directory fds a store caches at most.
  static constexpr size_t kDirCacheMax = 4096;
  // Bounds on the work and memory of one query, whatever the object: items
  // generated (extents of a huge sparse file), entries of one directory.
  static constexpr size_t kMaxItemsPerQuery = 65536;
  static constexpr size_t kMaxDirEntries = 1 << 20;
  // Largest regular-file run described by one EXTENT_DATA item.
  static constexpr uint64_t kMaxExtentItem = 1ull << 30;

 private:
  struct Name {
    uint64_t parent = 0;
    uint64_t index = 0;  // DIR_INDEX offset (0: not known yet)
    std::string name;
  };
  struct Entry {
    // The name the store reaches the object by.
    uint64_t parent = 0;
    uint64_t index = 0;
    std::string name;
    uint8_t type = 0;        // CRFS_FT_* as the directory listing reported it
    std::vector<Name> more;  // its other known names (hard links; never for a directory)
  };

  TenantStore(std::string name, const IdMapConfig& ids, int root_fd, dev_t dev)
      : name_(std::move(name)), ids_(ids), root_fd_(root_fd), dev_(dev) {}

  // Runs one planned op. `made` maps provisional ids to inodes; `replay`
  // (finishing a journaled transaction after a crash) treats an op whose
  // precondition no longer holds but whose result does as done. *inode is
  // what a kCreate made.
  bool Apply(const Op& op, const std::map<uint64_t, uint64_t>& made, bool replay, uint64_t* inode, RequestError* err,
             uint64_t gen, size_t index, const Undo& undo);
  // Replay: is `st` (at op.name in dfd) just what kCreate `op` made before
  // a crash, with nothing of anyone else's in it?
  bool FreshFromCreate(int dfd, const Op& op, const struct stat& st) const;
  // Would the kernel let `access`'s user make every change of `plan`, the
  // tenant's root with a user namespace's semantics (access.h)? Checked
  // before anything happens, so that a refusal changes nothing (the kernel
  // still checks each call of a user other than the tenant's root). Runs
  // with FsCredentials(uid, gid, false) in effect.
  bool PermitPlan(const Plan& plan, const Access& access, RequestError* err);
  // Would the policy let check's requester make every change of `plan`,
  // within the tenant's limits (tenant_policy.cc)? Paths are the tree's,
  // as the plan's earlier ops change them.
  class PlanPaths;
  // Every operation it decides, and what refused, go to `audit` (may be
  // null).
  bool PolicyPermitsPlan(const Plan& plan, const PolicyCheck& check, TransactionAudit* audit, RequestError* err);
  RecordBudget denials_;              // refusals recorded in the audit log (audit_trail.h)
  audit::AuditLog* audit_ = nullptr;  // not owned (Open)
  double rate_tokens_ = -1;           // limits.transactions_per_second: the bucket (-1: full, not started)
  std::chrono::steady_clock::time_point rate_last_;
  uint64_t paths_epoch_ = 0;
  // The TRANS_REPLY map of a transaction that created `created` and the
  // entries `new_indexes` (made: provisional -> inode).
  std::vector<proto::TransMapEntry> ReplyMap(const std::vector<uint64_t>& created,
                                             const std::map<uint64_t, std::pair<uint64_t, std::string>>& new_indexes,
                                             const std::map<uint64_t, uint64_t>& made);
  // Keeps the answer to `who_txn` (nullptr: nothing to keep) and returns it
  // as kept, for the journal's END record.
  const StoredAnswer* Remembered(const StoredAnswer* who_txn, int err, const std::string& text, uint64_t generation,
                                 std::vector<proto::TransMapEntry> map);
  // Rollback (tenant_undo.cc). The undo area: kUndoDir in the subvolume
  // root, hidden from the tenant. OpenUndoArea makes or checks it.
  static constexpr char kUndoDir[] = ".crfs-undo";
  class AsCrfsd;
  Status OpenUndoArea();
  static std::string UndoName(uint64_t gen, size_t index);
  static std::string CloneName(uint64_t gen, uint64_t obj);
  // Before the journal: how to take back each op of `plan`, and the times
  // of the directories it changes.
  bool PlanUndo(const Plan& plan, std::vector<Undo>* undo, std::vector<DirTimes>* dir_times, RequestError* err);
  // Right before op runs: the reflink copy of its object, if it is the
  // first data op of an existing file (Undo::kClone).
  bool KeepForUndo(uint64_t gen, const Op& op, const Undo& u, bool tenant_root, RequestError* err);
  // A kUnlink (Undo::kTrash): the entry moves to the undo area.
  bool TrashEntry(uint64_t gen, size_t index, int dir_fd, const Op& op, bool tenant_root, RequestError* err);
  // Takes back op `index` if it was done; idempotent.
  bool UndoOp(uint64_t gen, size_t index, const Op& op, const Undo& u, const std::map<uint64_t, uint64_t>& made,
              RequestError* err);
  // Undoes ops `failed` down to 0, then restores the directories' times;
  // false if any step failed (logged; the journal keeps the rollback).
  bool Rollback(uint64_t gen, const std::vector<Op>& ops, const std::vector<Undo>& undo,
                const std::vector<DirTimes>& dir_times, size_t failed, const std::map<uint64_t, uint64_t>& made);
  // Drops what the undo area keeps for `gen` (after its END record), or
  // everything in it (at start, when no transaction is pending).
  void PurgeUndo(uint64_t gen, const std::vector<Op>& ops, const std::vector<Undo>& undo);
  Status PurgeAllUndo();
  // Learns every directory and entry of the tenant (replay after a crash,
  // when nothing has been listed yet).
  bool Rediscover(RequestError* err);
  // Finishes a journaled transaction, then starts the journal's next epoch.
  Status Recover(JournalContents contents);
  // The entry of `dir` named `name`: its inode, 0 if none; -1 on error.
  int64_t Lookup(uint64_t dir, const std::string& name, RequestError* err);
  // The object table (see the top of this file). Saw: `dir` has an entry
  // `name` (at DIR_INDEX `index`, 0 if not known) for `ino` of `type`.
  // Moved and Forget change or drop one name; an object without names
  // leaves the table.
  void Saw(uint64_t dir, uint64_t ino, uint64_t index, const std::string& name, uint8_t type);
  void Moved(uint64_t ino, uint64_t from_dir, const std::string& from, uint64_t to_dir, const std::string& to);
  void Forget(uint64_t ino, uint64_t dir, const std::string& name);
  // The entry of `ino` (not the root), learning its names from btrfs if the
  // table lacks it (LearnNames); nullptr with *err set (ENOENT) if the tenant
  // has no such object. The pointer is valid until the table next changes.
  const Entry* Known(uint64_t ino, RequestError* err);
  // BTRFS_IOC_INO_PATHS for `ino`: every path is walked from the root and
  // learned (with the directories on its way) if it leads to `ino`.
  bool LearnNames(uint64_t ino, RequestError* err);
  // Every name of `ino` (`nlink` links; a directory has one) that is there
  // now: known names are checked and stale ones dropped; if fewer remain
  // than the link count says, the rest are learned from btrfs.
  std::vector<Name> NamesOf(uint64_t ino, uint32_t nlink, bool is_dir);
  // Between requests: keeps the table, the hidden-name lists and changed_
  // within max_known_ (dropped entries are relearned on demand; a dropped
  // change time counts as the generation it was dropped at: stale bases
  // stay stale).
  void TrimTables();

  // Opens objectid `ino` with `flags` (O_PATH, O_RDONLY, ...), verified to be
  // that inode on the tenant's device; an object that has no name the store
  // knows but is kept for the acting session: a dup of the kept fd (its
  // access mode, whatever `flags` ask). Returns -1 with *err set.
  int OpenObject(uint64_t ino, int flags, RequestError* err);
  // The CRFS_OPEN_* access with which the acting session holds `ino` if the
  // store keeps it without a known name; 0 otherwise.
  uint32_t KeptAccess(uint64_t ino) const;
  // Before `plan` runs (with crfsd's own rights): refuses changes to kept
  // objects the acting session holds without CRFS_OPEN_WRITE (EBADF), then
  // keeps an fd of every held object a kUnlink of the plan may leave without
  // a name (EMFILE past max_unnamed_per_tenant). Nothing changed on refusal.
  // *kept: the objects it took fds for, to be given to ReleaseKept.
  bool PrepareHeld(const Plan& plan, std::vector<uint64_t>* kept, RequestError* err);
  // Closes the fds PrepareHeld took in `kept` again: all of them (`applied`
  // false: the plan did not run), or those of objects that still have a
  // name after it ran.
  void ReleaseKept(const std::vector<uint64_t>& kept, bool applied);
  // What `who` may do with `ino` when reading it, as the kernel would
  // decide for that user (access.h): `read`: its contents (entries, xattr
  // values, data and its layout; always for objects without contents);
  // `search`: look names up in it (a directory; true for others: they hold
  // no names). ENOENT if the tenant cannot
  // name it, EACCES if no path to it is searchable. A nameless object this
  // session holds: the access it holds it with.
  struct ReadRights {
    bool read = false;
    bool search = false;
  };
  bool MayRead(const ClientCredentials& who, uint64_t ino, ReadRights* rights, RequestError* err);
  // Would the current fs credentials be allowed to walk from the root down
  // to directory `dir` (search permission on each)? *searchable caches
  // directories already checked.
  bool Searchable(const Access& access, uint64_t dir, std::set<uint64_t>* searchable, RequestError* err);
  // Is some name of `ino` on a path the user may search (the root always;
  // a nameless object held by the acting session too)? EACCES if none is.
  bool Reachable(const Access& access, uint64_t ino, std::set<uint64_t>* searchable, RequestError* err);
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
  int undo_fd_ = -1;  // the undo area (OpenUndoArea)
  Durability durability_ = Durability::kPower;
  bool apply_as_tenant_root_ = false;         // the running transaction acts as the tenant's root
  size_t replay_next_op_ = 0;                 // replay: the first op without a DONE record
  uint32_t replay_uid_ = 0, replay_gid_ = 0;  // replay: the host ids the transaction creates as
  bool replay_after_reboot_ = true;           // Open's after_reboot
  std::unordered_map<uint64_t, Entry> table_;
  size_t names_ = 0;  // names in table_, counting every one of each entry
  size_t max_known_ = 1 << 18;
  // Per directory, as its last listing found them: names taken by objects
  // the tenant is not shown (nested subvolumes and snapshots).
  std::unordered_map<uint64_t, std::set<std::string>> hidden_;
  std::unique_ptr<Journal> journal_;
  AnswerCache answers_;  // applied transactions' answers, by client instance (answers.h)
  uint64_t epoch_ = 0, sequence_ = 0, durable_ = 0;
  bool journal_broken_ = false;  // a journal write failed: no commits until restart
  // Generation at which each object last changed, this epoch.
  std::unordered_map<uint64_t, uint64_t> changed_;
  uint64_t changed_floor_ = 0;  // ChangedAt of an object changed_ no longer holds
  // Directories opened recently, by objectid: a lookup costs one openat2
  // from the parent instead of one per path component. An fd keeps naming
  // its directory wherever it is renamed to, and a rename cannot leave the
  // subvolume (EXDEV), so a cached fd never reaches outside the tenant.
  std::unordered_map<uint64_t, int> dir_cache_;

  // Objects held open, by objectid; the objects each session holds.
  struct Held {
    std::unordered_map<uint64_t, uint32_t> sessions;  // session -> CRFS_OPEN_* flags
    uint8_t type = 0;                                 // CRFS_FT_REG_FILE or CRFS_FT_DIR
    int fd = -1;                                      // kept (O_RDWR or O_RDONLY), or -1
    bool fd_writable = false;                         // fd is O_RDWR
  };
  std::unordered_map<uint64_t, Held> held_;
  std::unordered_map<uint64_t, std::unordered_set<uint64_t>> held_by_session_;
  size_t kept_ = 0;
  size_t max_held_per_session_ = 1024;
  // Held objects whose fds the store keeps (one per object): a transaction
  // that would need more is refused (EMFILE), nothing changed.
  size_t max_kept_ = 4096;
  // The session whose request runs now (0: none, as during recovery).
  uint64_t acting_session_ = 0;
  struct Acting {  // sets acting_session_ for the span of one request
    Acting(TenantStore* s, uint64_t session) : store(s) { store->acting_session_ = session; }
    ~Acting() { store->acting_session_ = 0; }
    Acting(const Acting&) = delete;
    Acting& operator=(const Acting&) = delete;
    TenantStore* store;
  };
};

}  // namespace crfs::server
