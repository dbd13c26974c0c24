// tenant_commit.cc - TenantStore's write side: commits planned transactions
// through the intent journal, finishes one a crash cut short, and serves
// the planner's view of the tree (tenant_store.h, commit_plan.h).
#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <deque>
#include <optional>
#include <set>

#include "proto/snoop.h"
#include "server/access.h"
#include "server/fd.h"
#include "server/fs_credentials.h"
#include "server/log.h"
#include "server/tenant_store.h"

namespace crfs::server {
namespace {

constexpr uint64_t kCompactJournalBytes = 64ull << 20;

const char* KindName(Op::Kind k) {
  static const char* const kNames[] = {"?",     "create",   "link",  "rename", "exchange", "unlink",      "write",
                                       "punch", "truncate", "chown", "chmod",  "setxattr", "removexattr", "settimes"};
  return static_cast<size_t>(k) < sizeof(kNames) / sizeof(kNames[0]) ? kNames[k] : "?";
}

std::string ProcPath(int fd) { return "/proc/self/fd/" + std::to_string(fd); }

}  // namespace

bool TenantStore::Items(uint64_t ino, const proto::Key& from, const proto::Key& to, std::vector<proto::Item>* out,
                        RequestError* err) {
  if (ino < CRFS_ROOT_OBJECTID || proto::IsProvisional(ino)) return Fail(err, ENOENT, "no such object");
  bool truncated = false;
  std::vector<proto::Item> all;
  if (!ItemsOf(ino, from, to, &all, &truncated, err)) return false;
  if (truncated) return Fail(err, E2BIG, "object " + std::to_string(ino) + " has too many items for one transaction");
  for (auto& it : all) {
    if (!(it.key < from) && !(to < it.key)) out->push_back(std::move(it));
  }
  return true;
}

bool TenantStore::Shape(uint64_t ino, uint32_t* mode, uint32_t* nlink, RequestError* err) {
  if (ino < CRFS_ROOT_OBJECTID || proto::IsProvisional(ino)) return Fail(err, ENOENT, "no such object");
  Fd fd(OpenObject(ino, O_PATH, err));
  if (fd.fd < 0) return false;
  struct stat st;
  if (fstat(fd.fd, &st) != 0) return Errno(err, "stat");
  *mode = st.st_mode & (S_IFMT | 07777);
  *nlink = static_cast<uint32_t>(st.st_nlink);
  return true;
}

bool TenantStore::Hidden(uint64_t dir, const std::string& name) {
  auto h = hidden_.find(dir);
  return h != hidden_.end() && h->second.count(name) > 0;
}

bool TenantStore::HasHidden(uint64_t dir) {
  auto h = hidden_.find(dir);
  return h != hidden_.end() && !h->second.empty();
}

uint64_t TenantStore::ParentOf(uint64_t ino) {
  if (ino == CRFS_ROOT_OBJECTID) return ino;
  RequestError ignored;
  const Entry* e = Known(ino, &ignored);
  return e ? e->parent : 0;
}

uint64_t TenantStore::ChangedAt(uint64_t ino) {
  auto it = changed_.find(ino);
  return it == changed_.end() ? changed_floor_ : std::max(it->second, changed_floor_);
}

int64_t TenantStore::Lookup(uint64_t dir, const std::string& name, RequestError* err) {
  int dfd = DirFd(dir, 0, err);
  if (dfd < 0) return -1;
  struct stat st;
  if (fstatat(dfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT) return 0;
    Errno(err, "stat " + name);
    return -1;
  }
  if (st.st_dev != dev_) return Fail(err, EXDEV, name + " is not the tenant's"), -1;
  return static_cast<int64_t>(st.st_ino);
}

bool TenantStore::Rediscover(RequestError* err) {
  std::deque<uint64_t> dirs{CRFS_ROOT_OBJECTID};
  while (!dirs.empty()) {
    const uint64_t d = dirs.front();
    dirs.pop_front();
    // A directory that cannot be listed (gone, too large) is skipped: the
    // ops that need it fail and are logged, the tenant still starts.
    int dfd = DirFd(d, 0, err);
    std::vector<proto::Item> items;
    if (dfd < 0 || !DirItems(dfd, d, &items, err)) {
      if (d == CRFS_ROOT_OBJECTID) return false;
      Log(LogLevel::kWarning, "tenant %s: rediscover: directory %llu: %s", name_.c_str(),
          static_cast<unsigned long long>(d), err->text.c_str());
      continue;
    }
    for (const auto& it : items) {
      if (it.key.type != CRFS_DIR_INDEX_KEY) continue;
      const auto& e = std::get<proto::DirEntries>(it.body).entries.at(0);
      if (e.type == CRFS_FT_DIR) dirs.push_back(e.location.objectid);
    }
  }
  return true;
}

Status TenantStore::Recover(JournalContents contents) {
  // Never below what the end marker or the records name (a journal lost
  // or cut off while crfsd was stopped must not bring generations back).
  epoch_ = std::max({contents.epoch, contents.ended.value_or(0) >> 32, contents.last_generation >> 32});
  for (StoredAnswer& a : contents.answers) answers_.Remember(std::move(a));
  if (!contents.pending.empty()) {
    RequestError err;
    if (!Rediscover(&err)) return Status(Code::kIo, "tenant " + name_ + ": rediscover: " + err.text);
  }
  // Oldest first. After a crash of crfsd there is one; after a power cut
  // the first may be partly on disk and the others not at all (SECURITY.md
  // §4). Each is replayed from its first op: an op whose result is already
  // there counts as done.
  if (!contents.pending.empty() && replay_after_reboot_) {
    Log(LogLevel::kInfo,
        "tenant %s: the machine restarted since crfsd last ran: names a pending transaction creates are taken as "
        "its own",
        name_.c_str());
  }
  // The audit log holds the decision of every transaction the journal
  // still holds: a power cut may have lost the log's unsynced tail, and the
  // journal's BEGIN has a copy (journal.h, AuditedRecord). A restored
  // decision of an ended transaction gets the result the journal tells.
  // So is its result (a cut may lose the result and keep the decision).
  std::set<uint64_t> results;  // the decisions the log has results of
  if (audit_) {
    uint64_t first = UINT64_MAX;
    for (const JournalEnded& e : contents.ended_records) first = std::min(first, e.record.index);
    for (const JournalPending& p : contents.pending) {
      if (p.record) first = std::min(first, p.record->index);
    }
    if (first != UINT64_MAX) {
      auto r = audit_->ResultsSince(first);
      if (!r.ok()) return Status(r.status().code(), "tenant " + name_ + ": audit log: " + r.status().message());
      results = std::move(*r);
    }
    for (const JournalEnded& e : contents.ended_records) {
      bool restored = false;
      auto at = EnsureDecisionRecorded(audit_, name_, e.record, &restored);
      if (!at.ok()) return at.status();
      if (restored) {
        Log(LogLevel::kWarning, "tenant %s: audit record %llu of transaction %llu was lost; restored from the journal",
            name_.c_str(), static_cast<unsigned long long>(e.record.index),
            static_cast<unsigned long long>(e.generation));
      }
      if (restored || !results.count(*at)) {
        CRFS_RETURN_IF_ERROR(
            RecordJournaledResult(audit_, name_, e.record, *at, e.generation, e.aborted ? e.failed_errno : 0));
      }
    }
  }
  for (JournalPending& p : contents.pending) {
    RequestError err;
    // Recorded before it is finished (or rolled back), as when it began.
    std::optional<uint64_t> decided;
    if (audit_ && p.record) {
      bool restored = false;
      auto at = EnsureDecisionRecorded(audit_, name_, *p.record, &restored);
      if (!at.ok()) return at.status();
      if (restored) {
        Log(LogLevel::kWarning, "tenant %s: audit record %llu of transaction %llu was lost; restored from the journal",
            name_.c_str(), static_cast<unsigned long long>(p.record->index),
            static_cast<unsigned long long>(p.generation));
      }
      decided = *at;
    }
    int result_err = 0;
    if (p.undo.size() != p.ops.size()) p.undo.assign(p.ops.size(), Undo{});
    apply_as_tenant_root_ = p.tenant_root;
    replay_next_op_ = p.next_op;
    replay_uid_ = p.uid;
    replay_gid_ = p.gid;
    bool rolled_back = false;
    {
      // As the user it was committed for: the kernel checks the rest as it did the start.
      FsCredentials creds(p.uid, p.gid, p.tenant_root);
      if (!creds.ok()) return Status(Code::kIo, "tenant " + name_ + ": cannot take the transaction's credentials");
      size_t failed = p.failed_op;
      if (!p.aborted) {
        Log(LogLevel::kInfo, "tenant %s: finishing transaction %llu from the journal (%zu ops, %zu recorded done)",
            name_.c_str(), static_cast<unsigned long long>(p.generation), p.ops.size(), p.next_op);
        for (size_t i = 0; i < p.ops.size(); i++) {
          uint64_t inode = 0;
          if (!Apply(p.ops[i], p.made, true, &inode, &err, p.generation, i, p.undo[i])) {
            Log(LogLevel::kWarning, "tenant %s: journal replay: op %zu (%s) failed: %s; rolling back", name_.c_str(), i,
                KindName(p.ops[i].kind), err.text.c_str());
            CRFS_RETURN_IF_ERROR(
                journal_->Abort(p.generation, static_cast<uint32_t>(i), err.err ? err.err : EIO, p.made));
            if (durability_ != Durability::kCrash) CRFS_RETURN_IF_ERROR(journal_->SyncData());
            p.aborted = true;
            p.failed_errno = err.err ? err.err : EIO;
            failed = i;
            break;
          }
          if (p.ops[i].kind == Op::kCreate) p.made[p.ops[i].obj] = inode;
        }
      } else {
        Log(LogLevel::kInfo, "tenant %s: rolling back transaction %llu from the journal (ops %u..0)", name_.c_str(),
            static_cast<unsigned long long>(p.generation), p.failed_op);
      }
      if (p.aborted) {
        if (!Rollback(p.generation, p.ops, p.undo, p.dir_times, failed, p.made)) {
          return Status(Code::kIo, "tenant " + name_ + ": transaction " + std::to_string(p.generation) +
                                       " could not be rolled back (see above); free space or fix the tree, then "
                                       "restart crfsd: the journal keeps the rollback");
        }
        rolled_back = true;
        result_err = p.failed_errno ? p.failed_errno : EIO;
      }
    }
    if (p.answer && !rolled_back) {
      // The answer its client may not have got: as Commit would have sent it.
      (void)Remembered(&*p.answer, 0, "", p.generation, ReplyMap(p.created, p.new_indexes, p.made));
    }
    if (decided && !results.count(*decided)) {
      CRFS_RETURN_IF_ERROR(RecordJournaledResult(audit_, name_, *p.record, *decided, p.generation, result_err));
    }
  }
  // Whatever the undo area still keeps belongs to transactions that are
  // finished or taken back by now.
  if (Status s = PurgeAllUndo(); !s.ok()) {
    // Left over is only space (say, a file an admin made immutable); the
    // tenant is served all the same.
    Log(LogLevel::kWarning, "%s; it stays in the undo area", s.message().c_str());
  }
  if (!contents.pending.empty() || contents.valid_bytes > 0) {
    if (syncfs(root_fd_) != 0) return Status(Code::kIo, "tenant " + name_ + ": syncfs: " + strerror(errno));
  }
  // The records the journal carries go with it: a checkpoint covers them
  // first (the log synced and signed).
  if (audit_) {
    if (auto c = audit_->SignCheckpoint(); !c.ok()) {
      return Status(c.status().code(), "tenant " + name_ + ": audit log: " + c.status().message());
    }
  }
  CRFS_RETURN_IF_ERROR(journal_->Restart(epoch_ + 1, answers_));
  epoch_++;
  sequence_ = 0;
  durable_ = Generation();
  changed_.clear();
  changed_floor_ = 0;
  table_.clear();  // relearned from listings, as after any start
  names_ = 0;
  for (auto& [ino, fd] : dir_cache_) close(fd);
  dir_cache_.clear();
  return Status::Ok();
}

// What a create leaves before its DONE record can be written: the type it
// makes, owned by the ids it creates as or (once chowned) by the op's, no
// permission bits beyond the creation mode, one link, and nothing inside
// (a file or directory of size 0, a symlink to the op's target). Later ops
// of the transaction have not run yet (they come after this op's record).
bool TenantStore::FreshFromCreate(int dfd, const Op& op, const struct stat& st) const {
  const bool creator = st.st_uid == replay_uid_ && st.st_gid == replay_gid_;
  if (!creator && !(st.st_uid == op.uid && st.st_gid == op.gid)) return false;
  if (S_ISLNK(op.mode)) {
    std::string target(op.data.size() + 1, '\0');
    ssize_t n = readlinkat(dfd, op.name.c_str(), target.data(), target.size());
    return n >= 0 && static_cast<size_t>(n) == op.data.size() && target.compare(0, n, op.data) == 0;
  }
  const mode_t created = S_ISDIR(op.mode) ? 0700 : 0600;
  return (st.st_mode & 07777 & ~created) == 0 && st.st_nlink == 1 && st.st_size == 0;
}

bool TenantStore::Apply(const Op& op, const std::map<uint64_t, uint64_t>& made, bool replay, uint64_t* inode,
                        RequestError* err, uint64_t gen, size_t index, const Undo& undo) {
  auto resolve = [&](uint64_t id) -> uint64_t {
    if (!proto::IsProvisional(id)) return id;
    auto m = made.find(id);
    return m == made.end() ? 0 : m->second;
  };
  const uint64_t dir = resolve(op.dir), obj = resolve(op.obj);
  auto open_obj = [&](int flags) {
    if (obj == 0) return Fail(err, ENOENT, "object was not created"), -1;
    return OpenObject(obj, flags, err);
  };
  switch (op.kind) {
    case Op::kCreate: {
      if (dir == 0) return Fail(err, ENOENT, "directory was not created");
      int dfd = DirFd(dir, 0, err);
      if (dfd < 0) return false;
      const char* name = op.name.c_str();
      int r = 0;
      if (S_ISDIR(op.mode)) {
        r = mkdirat(dfd, name, 0700);
      } else if (S_ISLNK(op.mode)) {
        r = symlinkat(op.data.c_str(), dfd, name);
      } else {
        r = openat(dfd, name, O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (r >= 0) close(r);
      }
      if (r < 0 && !(replay && errno == EEXIST)) return Errno(err, "create " + op.name);
      struct stat st;
      if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) return Errno(err, "stat " + op.name);
      if ((st.st_mode & S_IFMT) != (op.mode & S_IFMT) || st.st_dev != dev_) {
        return Fail(err, EEXIST, op.name + " exists and is not what the transaction created");
      }
      if (r < 0) {
        // Replay, and the name is taken: the transaction's own object only
        // if its DONE record says so, or (no record) if this is the op the
        // crash interrupted and the object is exactly what this create
        // makes (FreshFromCreate: a crash can fall between a create that
        // failed because an admin had made the name and its ABORT record);
        // anything else was made by someone else. (After a reboot, records
        // may not have reached the disk, SECURITY.md §4: then any object of
        // the right type is taken as the transaction's.)
        auto own = made.find(op.obj);
        bool ours = own != made.end()
                        ? own->second == st.st_ino
                        : replay_after_reboot_ || (index == replay_next_op_ && FreshFromCreate(dfd, op, st));
        if (!ours) return Fail(err, EEXIST, op.name + " exists and is not what the transaction created");
      }
      *inode = st.st_ino;
      Saw(dir, st.st_ino, 0, op.name, proto::FileTypeOfMode(op.mode));
      // Owner-only until the plan's last steps give it its mode (kChmod).
      if (fchownat(dfd, name, op.uid, op.gid, AT_SYMLINK_NOFOLLOW) != 0) return Errno(err, "chown " + op.name);
      return true;
    }
    case Op::kLink: {
      if (obj == 0) return Fail(err, ENOENT, "object was not created");
      int64_t now = Lookup(dir, op.name, err);
      if (now < 0) return false;
      if (now != 0) {
        if (replay && static_cast<uint64_t>(now) == obj) return true;
        return Fail(err, EEXIST, op.name + " exists");
      }
      const Entry* e = Known(obj, err);
      if (!e) return false;
      const Entry src = *e;
      int sfd = DirFd(src.parent, 0, err);
      if (sfd < 0) return false;
      if (Lookup(src.parent, src.name, err) != static_cast<int64_t>(obj)) return Fail(err, ENOENT, "link source moved");
      int dfd = DirFd(dir, 0, err);
      if (dfd < 0) return false;
      if (linkat(sfd, src.name.c_str(), dfd, op.name.c_str(), 0) != 0) return Errno(err, "link " + op.name);
      Saw(dir, obj, 0, op.name, src.type);
      return true;
    }
    case Op::kRename:
    case Op::kExchange: {
      const uint64_t dir2 = resolve(op.dir2), obj2 = resolve(op.obj2);
      int64_t a = Lookup(dir, op.name, err), b = a < 0 ? -1 : Lookup(dir2, op.name2, err);
      if (a < 0 || b < 0) return false;
      const bool exchange = op.kind == Op::kExchange;
      const uint64_t want_b = exchange ? obj2 : 0;
      if (static_cast<uint64_t>(a) != obj || static_cast<uint64_t>(b) != want_b) {
        // Done if obj is where it goes: an object moves once per
        // transaction, so later exchanges of a cycle never move it again.
        if (replay && static_cast<uint64_t>(b) == obj) return true;
        return Fail(err, ESTALE, op.name + " / " + op.name2 + " are not what the transaction expects");
      }
      int sfd = DirFd(dir, 0, err);
      if (sfd < 0) return false;
      int dfd = DirFd(dir2, 0, err);
      if (dfd < 0) return false;
      if (renameat2(sfd, op.name.c_str(), dfd, op.name2.c_str(), exchange ? RENAME_EXCHANGE : RENAME_NOREPLACE) != 0) {
        return Errno(err, "rename " + op.name);
      }
      Moved(obj, dir, op.name, dir2, op.name2);
      if (exchange) Moved(obj2, dir2, op.name2, dir, op.name);
      return true;
    }
    case Op::kUnlink: {
      if (undo.flags & Undo::kSkip) {
        // An entry of a directory this transaction removes: it goes to the
        // undo area with its directory, in one rename (tenant_undo.cc).
        Forget(obj, dir, op.name);
        return true;
      }
      // The precondition. Live, the plan was made from listings of this
      // same event-loop turn, so an object table that still names obj there
      // vouches for the entry without a stat (the bulk of an rm -r); after a
      // crash, or for a name the table does not hold (another hard link),
      // the file system decides.
      auto known = table_.find(obj);
      bool vouched = known != table_.end() && known->second.parent == dir && known->second.name == op.name;
      if (known != table_.end()) {
        for (const Name& n : known->second.more) vouched = vouched || (n.parent == dir && n.name == op.name);
      }
      if (replay || !vouched) {
        int64_t now = Lookup(dir, op.name, err);
        if (now < 0) return false;
        if (static_cast<uint64_t>(now) != obj) {
          if (replay) return true;
          return Fail(err, ESTALE, op.name + " is not what the transaction expects");
        }
      }
      int dfd = DirFd(dir, 0, err);
      if (dfd < 0) return false;
      if (undo.flags & Undo::kTrash) {
        if (!TrashEntry(gen, index, dfd, op, apply_as_tenant_root_, err)) return false;
      } else if (unlinkat(dfd, op.name.c_str(), S_ISDIR(op.mode) ? AT_REMOVEDIR : 0) != 0) {
        return Errno(err, "unlink " + op.name);
      }
      Forget(obj, dir, op.name);
      return true;
    }
    case Op::kWrite: {
      if (!KeepForUndo(gen, op, undo, apply_as_tenant_root_, err)) return false;
      Fd fd(open_obj(O_WRONLY | O_NONBLOCK | O_NOCTTY));
      if (fd.fd < 0) return false;
      size_t done = 0;
      while (done < op.data.size()) {
        ssize_t n = pwrite(fd.fd, op.data.data() + done, op.data.size() - done, static_cast<off_t>(op.offset + done));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return Errno(err, "write");
        done += static_cast<size_t>(n);
      }
      return true;
    }
    case Op::kPunch: {
      if (!KeepForUndo(gen, op, undo, apply_as_tenant_root_, err)) return false;
      Fd fd(open_obj(O_WRONLY | O_NONBLOCK | O_NOCTTY));
      if (fd.fd < 0) return false;
      struct stat st;
      if (fstat(fd.fd, &st) != 0) return Errno(err, "stat");
      const uint64_t size = static_cast<uint64_t>(st.st_size);
      if (op.offset >= size) return true;
      const uint64_t len = std::min(op.length, size - op.offset);
      if (fallocate(fd.fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(op.offset),
                    static_cast<off_t>(len)) != 0) {
        return Errno(err, "punch hole");
      }
      return true;
    }
    case Op::kTruncate: {
      if (!KeepForUndo(gen, op, undo, apply_as_tenant_root_, err)) return false;
      Fd fd(open_obj(O_WRONLY | O_NONBLOCK | O_NOCTTY));
      if (fd.fd < 0) return false;
      if (ftruncate(fd.fd, static_cast<off_t>(op.offset)) != 0) return Errno(err, "truncate");
      return true;
    }
    case Op::kChown: {
      Fd fd(open_obj(O_PATH));
      if (fd.fd < 0) return false;
      if (fchownat(fd.fd, "", op.uid, op.gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0) return Errno(err, "chown");
      return true;
    }
    case Op::kChmod:
    case Op::kSetXattr:
    case Op::kRemoveXattr:
    case Op::kSetTimes: {
      // An O_PATH fd checked to be the object, used through /proc so that
      // nothing is opened for reading and no name is resolved again.
      Fd fd(open_obj(O_PATH));
      if (fd.fd < 0) return false;
      struct stat st;
      if (fstat(fd.fd, &st) != 0) return Errno(err, "stat");
      if (S_ISLNK(st.st_mode)) {
        if (op.kind != Op::kSetTimes) return Fail(err, EPERM, "not on a symlink");
        const struct timespec ts[2] = {{static_cast<time_t>(op.atime.sec), op.atime.nsec},
                                       {static_cast<time_t>(op.mtime.sec), op.mtime.nsec}};
        const Entry* e = Known(obj, err);
        if (!e) return false;
        const std::string name = e->name;
        int dfd = DirFd(e->parent, 0, err);
        if (dfd < 0) return false;
        if (utimensat(dfd, name.c_str(), ts, AT_SYMLINK_NOFOLLOW) != 0) return Errno(err, "utimens");
        return true;
      }
      const std::string path = ProcPath(fd.fd);
      int r = 0;
      if (op.kind == Op::kChmod) {
        r = chmod(path.c_str(), op.mode & 07777);
      } else if (op.kind == Op::kSetXattr) {
        r = setxattr(path.c_str(), op.xname.c_str(), op.data.data(), op.data.size(), 0);
      } else if (op.kind == Op::kRemoveXattr) {
        r = removexattr(path.c_str(), op.xname.c_str());
        if (r != 0 && errno == ENODATA && replay) r = 0;
      } else {
        const struct timespec ts[2] = {{static_cast<time_t>(op.atime.sec), op.atime.nsec},
                                       {static_cast<time_t>(op.mtime.sec), op.mtime.nsec}};
        r = utimensat(AT_FDCWD, path.c_str(), ts, 0);
      }
      if (r != 0) return Errno(err, KindName(op.kind));
      return true;
    }
  }
  return Fail(err, EINVAL, "unknown op");
}

bool TenantStore::Searchable(const Access& access, uint64_t dir, std::set<uint64_t>* searchable, RequestError* err) {
  std::vector<uint64_t> chain;
  for (uint64_t d = dir; !searchable->count(d);) {
    chain.push_back(d);
    if (d == CRFS_ROOT_OBJECTID || chain.size() > 4096) break;
    const Entry* e = Known(d, err);
    if (!e) return false;
    d = e->parent;
  }
  // From the top down, as a path walk goes: a directory fd not cached yet
  // is opened (as this user) only below one found searchable.
  std::reverse(chain.begin(), chain.end());
  for (uint64_t d : chain) {
    int dfd = DirFd(d, 0, err);
    if (dfd < 0) return false;
    struct stat st;
    if (fstat(dfd, &st) != 0) return Errno(err, "stat");
    if (!access.Permitted(dfd, st, X_OK)) {
      return Fail(err, EACCES, "no search permission on directory " + std::to_string(d));
    }
    searchable->insert(d);
  }
  return true;
}

bool TenantStore::Reachable(const Access& access, uint64_t ino, std::set<uint64_t>* searchable, RequestError* err) {
  if (ino == CRFS_ROOT_OBJECTID || proto::IsProvisional(ino)) return true;
  if (!table_.count(ino) && KeptAccess(ino) != 0) return true;  // nameless, held by this session
  const Entry* e = Known(ino, err);
  if (!e) return false;
  std::vector<uint64_t> parents{e->parent};
  for (const Name& n : e->more) parents.push_back(n.parent);
  RequestError first;
  for (uint64_t p : parents) {
    RequestError e2;
    if (Searchable(access, p, searchable, &e2)) return true;
    if (first.err == 0) first = e2;
  }
  *err = first;
  return false;
}

bool TenantStore::PermitPlan(const Plan& plan, const Access& access, RequestError* err) {
  const uid_t uid = access.uid();
  const gid_t gid = access.gid();
  // Every directory from the root down to `dir` must be searchable, as if
  // the user had walked the path (crfsd reaches it through cached fds).
  std::set<uint64_t> searchable;
  auto reachable = [&](uint64_t dir) { return Searchable(access, dir, &searchable, err); };
  // The object as the kernel would check it: its fd (O_PATH) and stat.
  auto stat_of = [&](uint64_t obj, Fd* fd, struct stat* st) {
    fd->fd = OpenObject(obj, O_PATH, err);
    if (fd->fd < 0) return false;
    return fstat(fd->fd, st) == 0 || Errno(err, "stat");
  };
  auto dir_writable = [&](uint64_t dir) {
    if (proto::IsProvisional(dir)) return true;  // made by this transaction, as this user
    if (!reachable(dir)) return false;
    int dfd = DirFd(dir, 0, err);
    if (dfd < 0) return false;
    struct stat st;
    if (fstat(dfd, &st) != 0) return Errno(err, "stat");
    if (!access.Permitted(dfd, st, W_OK | X_OK)) {
      return Fail(err, EACCES, "no write permission on directory " + std::to_string(dir));
    }
    return true;
  };
  // In a sticky directory only the owner of the directory or of the entry
  // (or the root privileged over the entry) may remove or move the entry.
  auto sticky_ok = [&](uint64_t dir, uint64_t obj) {
    if (proto::IsProvisional(dir) || proto::IsProvisional(obj)) return true;
    int dfd = DirFd(dir, 0, err);
    if (dfd < 0) return false;
    struct stat d;
    if (fstat(dfd, &d) != 0) return Errno(err, "stat");
    if (!(d.st_mode & S_ISVTX) || d.st_uid == uid) return true;
    Fd fd;
    struct stat o;
    if (!stat_of(obj, &fd, &o)) return false;
    return access.OwnerOrCapable(o) || Fail(err, EPERM, "sticky directory: not the owner of " + std::to_string(obj));
  };
  enum Need { kWrite, kOwner, kXattr };
  auto object = [&](uint64_t obj, Need need) {
    if (proto::IsProvisional(obj)) return true;
    if (!Reachable(access, obj, &searchable, err)) return false;
    Fd fd;
    struct stat st;
    if (!stat_of(obj, &fd, &st)) return false;
    if (need == kOwner && !access.OwnerOrCapable(st))
      return Fail(err, EPERM, "not the owner of " + std::to_string(obj));
    // user.* xattrs of a sticky directory: its owner's (xattr_permission()).
    if (need == kXattr && S_ISDIR(st.st_mode) && (st.st_mode & S_ISVTX) && !access.OwnerOrCapable(st)) {
      return Fail(err, EPERM, "sticky directory: not the owner of " + std::to_string(obj));
    }
    if (need != kOwner && !access.Permitted(fd.fd, st, W_OK)) {
      return Fail(err, EACCES, "no write permission on " + std::to_string(obj));
    }
    return true;
  };
  for (const Op& op : plan.ops) {
    bool ok = true;
    switch (op.kind) {
      case Op::kCreate:
        ok = dir_writable(op.dir);
        // The tenant's root may make objects for any of its users (the
        // planner mapped their ids); anyone else makes its own.
        if (ok && !access.tenant_root() && (op.uid != uid || op.gid != gid)) {
          ok = Fail(err, EPERM, "new objects belong to their creator");
        }
        break;
      case Op::kLink:
        ok = dir_writable(op.dir);
        if (ok && !proto::IsProvisional(op.obj)) {
          Fd fd;
          struct stat st;
          if (!stat_of(op.obj, &fd, &st)) return false;
          if (!access.MayLink(fd.fd, st)) return Fail(err, EPERM, "may not link " + std::to_string(op.obj));
          ok = Reachable(access, op.obj, &searchable, err);
        }
        break;
      case Op::kUnlink: ok = dir_writable(op.dir) && sticky_ok(op.dir, op.obj); break;
      case Op::kRename:
      case Op::kExchange:
        ok = dir_writable(op.dir) && dir_writable(op.dir2) && sticky_ok(op.dir, op.obj) &&
             (op.kind != Op::kExchange || sticky_ok(op.dir2, op.obj2));
        // A directory moving to another parent has its ".." rewritten.
        if (ok && op.dir != op.dir2) {
          for (uint64_t moving : {op.obj, op.kind == Op::kExchange ? op.obj2 : uint64_t{0}}) {
            auto e = moving == 0 ? table_.end() : table_.find(moving);
            if (ok && e != table_.end() && e->second.type == CRFS_FT_DIR) ok = object(moving, kWrite);
          }
        }
        break;
      case Op::kWrite:
      case Op::kPunch:
      case Op::kTruncate: ok = object(op.obj, kWrite); break;
      case Op::kSetXattr:
      case Op::kRemoveXattr: ok = object(op.obj, kXattr); break;
      case Op::kChmod:
      case Op::kSetTimes: ok = object(op.obj, kOwner); break;
      case Op::kChown: {
        if (proto::IsProvisional(op.obj)) break;
        ok = object(op.obj, kOwner);
        if (!ok) break;
        Fd fd;
        struct stat st;
        if (!stat_of(op.obj, &fd, &st)) return false;
        if (!access.MayChown(st, op.uid, op.gid)) {
          ok = Fail(err, EPERM,
                    access.tenant_root() ? "the owner of " + std::to_string(op.obj) + " is outside the tenant's map"
                                         : std::string("only the tenant's root gives objects away"));
        }
        break;
      }
    }
    if (!ok) return false;
  }
  return true;
}

std::vector<proto::TransMapEntry> TenantStore::ReplyMap(
    const std::vector<uint64_t>& created, const std::map<uint64_t, std::pair<uint64_t, std::string>>& new_indexes,
    const std::map<uint64_t, uint64_t>& made) {
  std::vector<proto::TransMapEntry> map;
  auto real = [&](uint64_t p) {
    auto m = made.find(p);
    return m == made.end() ? uint64_t{0} : m->second;
  };
  for (uint64_t p : created) map.push_back({p, real(p)});
  // Directory indexes: btrfs assigned them; read them back per directory.
  std::map<uint64_t, std::map<std::string, uint64_t>> indexes;
  for (const auto& [p, where] : new_indexes) {
    const uint64_t dir = proto::IsProvisional(where.first) ? real(where.first) : where.first;
    auto it = indexes.find(dir);
    if (it == indexes.end()) {
      it = indexes.emplace(dir, std::map<std::string, uint64_t>{}).first;
      std::vector<proto::Item> items;
      RequestError e;
      int dfd = dir == 0 ? -1 : DirFd(dir, 0, &e);
      if (dfd >= 0 && DirItems(dfd, dir, &items, &e)) {
        for (const auto& item : items) {
          if (item.key.type != CRFS_DIR_INDEX_KEY) continue;
          it->second[std::get<proto::DirEntries>(item.body).entries.at(0).name] = item.key.offset;
        }
      }
    }
    auto idx = it->second.find(where.second);
    map.push_back({p, idx == it->second.end() ? 0 : idx->second});
  }
  return map;
}

const StoredAnswer* TenantStore::Remembered(const StoredAnswer* who_txn, int err, const std::string& text,
                                            uint64_t generation, std::vector<proto::TransMapEntry> map) {
  if (!who_txn) return nullptr;
  StoredAnswer a = *who_txn;
  a.err = err;
  a.text = text;
  a.reply.generation = err == 0 ? generation : 0;
  a.reply.flags = err == 0 ? CRFS_TRANS_R_APPLIED : 0;
  a.reply.map = std::move(map);
  answers_.Remember(std::move(a));
  return answers_.Find(who_txn->who, who_txn->txn);
}

bool TenantStore::Commit(const Transaction& t, uint64_t session, const ClientCredentials& who,
                         const StoredAnswer* who_txn, const PolicyCheck& check, CommitResult* result,
                         RequestError* err) {
  Acting acting(this, session);
  TrimTables();
  // Every way out of here is recorded (audit_trail.h): refused, with what
  // refused it, or decided and then ended.
  *err = RequestError{};
  TransactionAudit audit(check, who_txn ? who_txn->txn : 0, err, &denials_);
  audit.Stage("permissions");
  const auto host_uid = ids_.UidToHost(who.uid), host_gid = ids_.GidToHost(who.gid);
  if (!host_uid || !host_gid) return Fail(err, EACCES, "this client's ids are not in the tenant's map");
  // The tenant's root acts as root in its tree; root squash makes it nobody.
  const bool tenant_root = who.uid == 0 && !ids_.config().root_squash;
  const auto started = std::chrono::steady_clock::now();
  Plan plan;
  audit.Stage("validation");
  *err = PlanTransaction(t, ids_, epoch_ << 32, Generation(), this, &plan);
  if (err->err != 0) return false;
  const auto planned = std::chrono::steady_clock::now();
  audit.Stage("server");
  if (sequence_ + 1 >= (1ull << 32)) return Fail(err, EAGAIN, "generation sequence exhausted: restart crfsd");
  audit.Stage("permissions");
  {
    // Checked for everyone, the tenant's root included (over objects owned
    // outside its map it is an ordinary user: access.h), without file
    // capabilities: the kernel answers for the unprivileged user.
    FsCredentials creds(*host_uid, *host_gid, false);
    if (!creds.ok()) return Fail(err, EPERM, "crfsd cannot act as the tenant's users");
    if (!PermitPlan(plan, Access(ids_, *host_uid, *host_gid, tenant_root), err)) return false;
  }
  // The policy, with the paths the plan touches, before the journal sees it.
  audit.Stage("policy");
  if (!PolicyPermitsPlan(plan, check, &audit, err)) return false;
  audit.Stage("server");
  if (journal_broken_) return Fail(err, EIO, "the intent journal failed earlier; restart crfsd");
  // With crfsd's own rights, after every check that may refuse the plan:
  // the fds that keep held objects alive once their last name goes.
  std::vector<uint64_t> kept;
  if (!PrepareHeld(plan, &kept, err)) return false;
  const uint64_t gen = Generation() + 1;

  // How to take every op back if one fails midway (tenant_undo.cc).
  std::vector<Undo> undo;
  std::vector<DirTimes> dir_times;
  if (!PlanUndo(plan, &undo, &dir_times, err)) {
    ReleaseKept(kept, false);
    return false;
  }

  // Decided: recorded before the journal sees it, or not done at all. The
  // journal's BEGIN carries the record, so BEGIN's sync makes it durable
  // too (journal.h, AuditedRecord): no second fdatasync.
  if (!audit.Allowed(err)) {
    ReleaseKept(kept, false);
    return false;
  }

  std::map<uint64_t, uint64_t> made;
  apply_as_tenant_root_ = tenant_root;
  std::optional<RequestError> failed;  // the op that failed, rolled back
  uint64_t journal_mark = 0;           // where BEGIN starts (cut back to it if BEGIN cannot be synced)
  {
    FsCredentials creds(*host_uid, *host_gid, tenant_root);
    if (!creds.ok()) {
      ReleaseKept(kept, false);
      return Fail(err, EPERM,
                  "crfsd cannot act as the tenant's users (it needs CAP_SETUID, CAP_SETGID, CAP_CHOWN, "
                  "CAP_FOWNER, CAP_DAC_OVERRIDE, CAP_FSETID)");
    }
    journal_mark = journal_->bytes();
    if (Status s =
            journal_->Begin(gen, *host_uid, *host_gid, tenant_root, plan, who_txn, undo, dir_times, audit.record());
        s.code() == Code::kTooLarge) {
      ReleaseKept(kept, false);
      return Fail(err, E2BIG, "transaction too large to journal; split it");
    } else if (!s.ok()) {
      ReleaseKept(kept, false);
      if (journal_->torn()) {
        journal_broken_ = true;
        Log(LogLevel::kError, "tenant %s: journal: %s; refusing transactions until restart", name_.c_str(),
            s.message().c_str());
        return Fail(err, EIO, "journal: " + s.message());
      }
      // Nothing was applied and the journal is as it was: refused, with the
      // reason (a full disk is ENOSPC to the client).
      Log(LogLevel::kWarning, "tenant %s: journal: %s; transaction refused", name_.c_str(), s.message().c_str());
      return Fail(err, journal_->last_errno() ? journal_->last_errno() : EIO,
                  "the intent journal could not take the transaction: " + s.message() + "; nothing changed");
    }
    // Power-cut atomicity: the record is on stable storage before the first
    // op can be (btrfs may commit any op to disk the moment it is made).
    if (durability_ != Durability::kCrash) {
      if (Status s = journal_->SyncData(); !s.ok()) {
        ReleaseKept(kept, false);
        // Not applied, so not to be finished at the next start either: the
        // record goes; and a disk that fails fdatasync gets no more
        // transactions until an operator restarts crfsd.
        (void)journal_->TruncateTo(journal_mark);
        journal_broken_ = true;
        Log(LogLevel::kError, "tenant %s: journal: %s; refusing transactions until restart", name_.c_str(),
            s.message().c_str());
        return Fail(err, EIO, "journal: " + s.message() + "; nothing changed");
      }
    }
    sequence_++;  // from here on the generation is spent, whatever happens
    for (size_t i = 0; i < plan.ops.size(); i++) {
      uint64_t inode = 0;
      RequestError e;
      if (!Apply(plan.ops[i], made, false, &inode, &e, gen, i, undo[i])) {
        // Take it all back: the journal says so first (a crash during the
        // rollback goes on with it at the next start).
        Log(LogLevel::kWarning, "tenant %s: transaction %llu failed at op %zu of %zu (%s %s): %s; rolling back",
            name_.c_str(), static_cast<unsigned long long>(gen), i, plan.ops.size(), KindName(plan.ops[i].kind),
            plan.ops[i].name.c_str(), e.text.c_str());
        Status aborted = journal_->Abort(gen, static_cast<uint32_t>(i), e.err ? e.err : EIO, made);
        // Power-cut safe: a cut during the rollback goes on with it, never
        // finishes the transaction its client is told was refused.
        if (aborted.ok() && durability_ != Durability::kCrash) aborted = journal_->SyncData();
        if (Status s = aborted; !s.ok()) {
          // (A full disk may refuse even this record: the journal is cut
          // back to BEGIN and its DONEs, and a crash during the rollback
          // then replays forward up to the same failure and rolls back.)
          Log(LogLevel::kWarning, "tenant %s: journal: %s (the rollback goes on)", name_.c_str(), s.message().c_str());
          if (journal_->torn()) journal_broken_ = true;
        }
        if (!Rollback(gen, plan.ops, undo, dir_times, i, made) || journal_broken_) {
          journal_broken_ = true;  // the next start finishes the rollback from the journal
          Log(LogLevel::kError, "tenant %s: transaction %llu: rollback incomplete; refusing transactions until restart",
              name_.c_str(), static_cast<unsigned long long>(gen));
          ReleaseKept(kept, false);
          for (uint64_t id : plan.changed) changed_[id] = gen;
          return Fail(err, EIO,
                      "op " + std::to_string(i) + " (" + KindName(plan.ops[i].kind) + ") failed: " + e.text +
                          "; rolling back did not finish: crfsd finishes it at its next start");
        }
        failed = RequestError{e.err ? e.err : EIO, "op " + std::to_string(i) + " (" + KindName(plan.ops[i].kind) +
                                                       ") failed: " + e.text + "; nothing changed (rolled back)"};
        break;
      }
      if (plan.ops[i].kind == Op::kCreate) made[plan.ops[i].obj] = inode;
      if (Status s = journal_->Done(gen, static_cast<uint32_t>(i), inode, plan.ops[i].kind == Op::kCreate);
          !s.ok() && !journal_broken_) {
        journal_broken_ = true;  // its records can no longer be trusted to say what is done
        Log(LogLevel::kError, "tenant %s: journal: %s; refusing transactions until restart", name_.c_str(),
            s.message().c_str());
      }
    }
  }
  if (failed) {
    // Taken back entirely: the undo area's copies go, then the journal
    // forgets the transaction (a crash before that repeats the rollback,
    // which finds nothing left to undo).
    // The end marker, not a truncation, says it is over: a truncation of
    // the journal could reach the disk ahead of the undo steps (through the
    // next fdatasync's log tree); the marker cannot.
    if (Status s = journal_->End(gen, nullptr); !s.ok() && journal_->torn()) journal_broken_ = true;
    if (Status s = journal_->SetEnded(gen); !s.ok()) journal_broken_ = true;
    if (!journal_broken_) PurgeUndo(gen, plan.ops, undo);
    ReleaseKept(kept, false);
    // Rolled back, but directory indexes moved: older bases are stale.
    for (uint64_t id : plan.changed) {
      if (!proto::IsProvisional(id)) changed_[id] = gen;
    }
    *err = *failed;
    return false;
  }
  const auto applied = std::chrono::steady_clock::now();
  auto ms = [](auto d) { return std::chrono::duration<double, std::milli>(d).count(); };
  if (ms(applied - started) >= 500) {
    Log(LogLevel::kInfo, "tenant %s: transaction %llu: %zu ops, planned in %.0f ms, applied in %.0f ms", name_.c_str(),
        static_cast<unsigned long long>(gen), plan.ops.size(), ms(planned - started), ms(applied - planned));
  }
  for (uint64_t id : plan.changed) changed_[proto::IsProvisional(id) ? made[id] : id] = gen;
  for (const auto& [p, ino] : made) changed_[ino] = gen;

  result->generation = gen;
  audit.Applied(gen);
  result->map = ReplyMap(plan.created, plan.new_indexes, made);
  // File data is not ordered with the end marker the way metadata is: a
  // transaction that wrote data is synced before it counts as ended.
  if (durability_ != Durability::kCrash && std::any_of(plan.ops.begin(), plan.ops.end(), [](const Op& op) {
        return op.kind == Op::kWrite || op.kind == Op::kPunch || op.kind == Op::kTruncate;
      })) {
    if (syncfs(root_fd_) != 0) {
      journal_broken_ = true;  // applied; the next start replays it (its end is not marked)
      Log(LogLevel::kError, "tenant %s: syncfs: %s; refusing transactions until restart", name_.c_str(),
          strerror(errno));
    }
  }
  if (Status s = journal_->End(gen, Remembered(who_txn, 0, "", gen, result->map)); !s.ok() && !journal_broken_) {
    journal_broken_ = true;
    Log(LogLevel::kError, "tenant %s: journal: %s; refusing transactions until restart", name_.c_str(),
        s.message().c_str());
  }
  if (!journal_broken_) {
    if (Status s = journal_->SetEnded(gen); !s.ok()) {
      journal_broken_ = true;
      Log(LogLevel::kError, "tenant %s: journal: %s; refusing transactions until restart", name_.c_str(),
          s.message().c_str());
    }
  }
  // Done: what the undo area kept for it goes (a removed tree, copies) --
  // unless its end could not be marked: then the next start replays it and
  // may need them.
  if (!journal_broken_) PurgeUndo(gen, plan.ops, undo);
  ReleaseKept(kept, true);
  // Power-cut safe: its journal record was on stable storage before its
  // first op, so the next start redoes whatever a cut lost of it.
  result->durable = durability_ != Durability::kCrash && !journal_broken_;
  // Durable by its journal record: the once-a-second sweep need not syncfs for it.
  if (result->durable) durable_ = std::max(durable_, gen);
  if ((t.flags & CRFS_TRANS_F_SYNC) || durability_ == Durability::kSync) {
    uint64_t durable = 0;
    RequestError sync_err;
    result->durable = Sync(&durable, &sync_err);  // applied either way; durable only if the sync worked
    if (!result->durable) Log(LogLevel::kError, "tenant %s: sync: %s", name_.c_str(), sync_err.text.c_str());
  }
  if (journal_->bytes() > kCompactJournalBytes) {
    uint64_t durable = 0;
    RequestError e;
    // Its BEGINs carry audit records: they go only once a checkpoint
    // covers the log (synced first), so no later start needs them.
    Status s = Sync(&durable, &e) ? Status::Ok() : Status(Code::kIo, e.text);
    if (s.ok() && audit_) {
      auto c = audit_->SignCheckpoint();
      if (!c.ok()) s = c.status();
    }
    if (s.ok()) s = journal_->Restart(epoch_, answers_);
    if (!s.ok()) {
      journal_broken_ = true;  // which file the journal is now is not certain
      Log(LogLevel::kError, "tenant %s: journal compaction: %s; refusing transactions until restart", name_.c_str(),
          s.message().c_str());
    }
  }
  return true;
}

bool TenantStore::Sync(uint64_t* generation, RequestError* err) {
  const uint64_t gen = Generation();
  if (syncfs(root_fd_) != 0) return Errno(err, "syncfs");
  durable_ = gen;
  *generation = gen;
  return true;
}

}  // namespace crfs::server
