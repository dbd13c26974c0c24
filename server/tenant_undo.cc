// tenant_undo.cc - TenantStore's rollback: a transaction that fails midway
// (ENOSPC, EDQUOT, EIO, the tree changed behind crfsd's back) is taken back
// op by op, so that it is applied entirely or not at all (tenant_store.h).
//
// What an op destroys is kept until the transaction is complete, in the
// tenant's undo area: the directory kUndoDir in the subvolume root (renames
// cannot leave a subvolume), made by crfsd, owned by root, mode 0700,
// marked with the xattr trusted.crfs (which a tenant cannot set), and
// hidden from the tenant's listings and names (its name is taken, as a
// nested snapshot's is). There:
//   - an unlinked entry is moved as "<gen>.<op>" (a removed directory with
//     everything below it in one rename: the unlinks of its entries are
//     skipped);
//   - an existing file whose data a transaction changes is first copied as
//     "<gen>.c<objectid>" with FICLONE (a reflink: no data is copied).
// Undo steps are idempotent and check the tree first, so a rollback cut
// short by a crash is run again from the journal (its ABORT record) at the
// next start. After the transaction's END record the undo area's entries of
// that generation are removed (PurgeUndo); at start, all of them.
#include <dirent.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <optional>
#include <set>

#include "server/fd.h"
#include "server/fs_credentials.h"
#include "server/log.h"
#include "server/tenant_store.h"

namespace crfs::server {
namespace {

constexpr char kMarker[] = "trusted.crfs";
constexpr char kMarkerValue[] = "undo";

std::string ProcPath(int fd) { return "/proc/self/fd/" + std::to_string(fd); }

bool DataOp(Op::Kind k) { return k == Op::kWrite || k == Op::kPunch || k == Op::kTruncate; }

proto::Timespec Ts(const struct timespec& t) {
  return proto::Timespec{static_cast<uint64_t>(t.tv_sec), static_cast<uint32_t>(t.tv_nsec)};
}

struct timespec Unix(const proto::Timespec& t) {
  return {static_cast<time_t>(t.sec), static_cast<long>(t.nsec)};
}

// Removes `name` in `parent` and, for a directory, everything below it,
// depth first with one fd per level (no recursion, no path strings).
bool RemoveTree(int parent, const std::string& name, RequestError* err) {
  struct stat area;
  if (fstat(parent, &area) != 0) return Errno(err, "stat undo area");
  struct stat st;
  if (fstatat(parent, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return errno == ENOENT || Errno(err, "stat");
  if (!S_ISDIR(st.st_mode)) return unlinkat(parent, name.c_str(), 0) == 0 || errno == ENOENT || Errno(err, "unlink");
  struct Level {
    int fd;
    std::string name;  // in the level below it (or `parent`)
    std::vector<std::string> subdirs;
    bool read = false;
  };
  std::vector<Level> stack;
  auto push = [&](int at, const std::string& n) {
    int fd = openat(at, n.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return Errno(err, "open " + n);
    struct stat st;
    if (fstat(fd, &st) != 0 || st.st_dev != area.st_dev) {  // a nested subvolume or a mount: not ours to empty
      close(fd);
      return Fail(err, EXDEV, n + " is another subvolume or file system: left in the undo area");
    }
    stack.push_back({fd, n, {}, false});
    return true;
  };
  bool ok = push(parent, name);
  while (ok && !stack.empty()) {
    Level& top = stack.back();
    if (!top.read) {
      top.read = true;
      alignas(8) char buf[32768];
      for (;;) {
        const long n = syscall(SYS_getdents64, top.fd, buf, sizeof(buf));
        if (n < 0) {
          ok = Errno(err, "getdents64");
          break;
        }
        if (n == 0) break;
        for (long pos = 0; pos < n;) {
          auto* d = reinterpret_cast<struct dirent64*>(buf + pos);
          pos += d->d_reclen;
          const std::string e = d->d_name;
          if (e == "." || e == "..") continue;
          if (d->d_type == DT_DIR) {
            top.subdirs.push_back(e);
          } else if (unlinkat(top.fd, d->d_name, 0) != 0 && errno != ENOENT) {
            ok = Errno(err, "unlink " + e);
          }
        }
      }
      continue;
    }
    if (!top.subdirs.empty()) {
      if (stack.size() > 65536) {
        ok = Fail(err, ELOOP, "undo area: tree too deep to remove");
        break;
      }
      const std::string next = std::move(top.subdirs.back());
      top.subdirs.pop_back();
      ok = push(top.fd, next);
      continue;
    }
    const std::string done = top.name;
    close(top.fd);
    stack.pop_back();
    const int at = stack.empty() ? parent : stack.back().fd;
    if (unlinkat(at, done.c_str(), AT_REMOVEDIR) != 0 && errno != ENOENT) ok = Errno(err, "rmdir " + done);
  }
  for (Level& l : stack) close(l.fd);
  return ok;
}

}  // namespace

// Undo-area work is crfsd's own: a tenant user may remove an entry (checked
// as that user: PermitPlan) without being able to write the undo area, or
// a directory it cannot write (whose ".." a move rewrites). The tenant's
// root already acts with the file capabilities inside its tree.
class TenantStore::AsCrfsd {
 public:
  explicit AsCrfsd(bool tenant_root) {
    if (!tenant_root) creds_.emplace(0, 0, false);
  }
  bool ok() const { return !creds_ || creds_->ok(); }

 private:
  std::optional<FsCredentials> creds_;
};

std::string TenantStore::UndoName(uint64_t gen, size_t index) {
  return std::to_string(gen) + "." + std::to_string(index);
}

std::string TenantStore::CloneName(uint64_t gen, uint64_t obj) {
  return std::to_string(gen) + ".c" + std::to_string(obj);
}

Status TenantStore::OpenUndoArea() {
  if (mkdirat(root_fd_, kUndoDir, 0700) == 0) {
    // New: crfsd's (it runs as root here), marked so it is never mistaken
    // for a tenant's directory of the same name.
    Fd fd(openat(root_fd_, kUndoDir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (fd.fd < 0 || fchown(fd.fd, 0, 0) != 0 || fchmod(fd.fd, 0700) != 0 ||
        fsetxattr(fd.fd, kMarker, kMarkerValue, strlen(kMarkerValue), 0) != 0) {
      return Status(Code::kIo, "tenant " + name_ + ": making the undo area: " + strerror(errno));
    }
  } else if (errno != EEXIST) {
    return Status(Code::kIo, "tenant " + name_ + ": making the undo area: " + strerror(errno));
  }
  int fd = openat(root_fd_, kUndoDir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  struct stat st;
  char mark[16] = "";
  const bool ours = fd >= 0 && fstat(fd, &st) == 0 && st.st_dev == dev_ && st.st_uid == 0 &&
                    (st.st_mode & 07777) == 0700 &&
                    fgetxattr(fd, kMarker, mark, sizeof(mark) - 1) == static_cast<ssize_t>(strlen(kMarkerValue)) &&
                    strcmp(mark, kMarkerValue) == 0;
  if (!ours) {
    if (fd >= 0) close(fd);
    return Status(Code::kInvalidArgument,
                  "tenant " + name_ + ": " + kUndoDir + " in the tenant's root is not crfsd's undo area (rename it)");
  }
  undo_fd_ = fd;
  return Status::Ok();
}

bool TenantStore::PlanUndo(const Plan& plan, std::vector<Undo>* undo, std::vector<DirTimes>* dir_times,
                           RequestError* err) {
  undo->assign(plan.ops.size(), Undo{});
  dir_times->clear();
  std::set<uint64_t> removed_dirs, cloned, dirs_seen;
  for (const Op& op : plan.ops) {
    if (op.kind == Op::kUnlink && S_ISDIR(op.mode)) removed_dirs.insert(op.obj);
  }
  auto snapshot = [&](uint64_t obj, Undo* u) {
    Fd fd(OpenObject(obj, O_PATH, err));
    if (fd.fd < 0) return false;
    struct stat st;
    if (fstat(fd.fd, &st) != 0) return Errno(err, "stat");
    u->flags |= Undo::kAttrs;
    u->mode = st.st_mode & 07777;
    u->uid = st.st_uid;
    u->gid = st.st_gid;
    u->atime = Ts(st.st_atim);
    u->mtime = Ts(st.st_mtim);
    return true;
  };
  auto dir_time = [&](uint64_t dir) {
    if (dir == 0 || proto::IsProvisional(dir) || removed_dirs.count(dir) || !dirs_seen.insert(dir).second) {
      return true;
    }
    int dfd = DirFd(dir, 0, err);
    if (dfd < 0) return false;
    struct stat st;
    if (fstat(dfd, &st) != 0) return Errno(err, "stat");
    dir_times->push_back({dir, Ts(st.st_atim), Ts(st.st_mtim)});
    return true;
  };
  for (size_t i = 0; i < plan.ops.size(); i++) {
    const Op& op = plan.ops[i];
    Undo& u = (*undo)[i];
    switch (op.kind) {
      case Op::kCreate:
      case Op::kLink:
        if (!dir_time(op.dir)) return false;
        break;
      case Op::kRename:
      case Op::kExchange:
        if (!dir_time(op.dir) || !dir_time(op.dir2)) return false;
        break;
      case Op::kUnlink:
        if (removed_dirs.count(op.dir)) {
          u.flags = Undo::kSkip;
        } else {
          u.flags = Undo::kTrash;
          if (!dir_time(op.dir)) return false;
        }
        break;
      default:
        if (proto::IsProvisional(op.obj)) break;  // a new object: undoing its create takes it back
        if (!snapshot(op.obj, &u)) return false;
        if (DataOp(op.kind) && cloned.insert(op.obj).second) u.flags |= Undo::kClone;
        if (op.kind == Op::kSetXattr || op.kind == Op::kRemoveXattr) {
          Fd fd(OpenObject(op.obj, O_PATH, err));
          if (fd.fd < 0) return false;
          const std::string path = ProcPath(fd.fd);
          u.flags |= Undo::kXattr;
          std::vector<char> buf(XATTR_SIZE_MAX);
          const ssize_t n = getxattr(path.c_str(), op.xname.c_str(), buf.data(), buf.size());
          if (n >= 0) {
            u.had_xattr = true;
            u.xattr.assign(buf.data(), static_cast<size_t>(n));
          } else if (errno != ENODATA) {
            return Errno(err, "getxattr");
          }
        }
        break;
    }
  }
  return true;
}

bool TenantStore::KeepForUndo(uint64_t gen, const Op& op, const Undo& u, bool tenant_root, RequestError* err) {
  if (!(u.flags & Undo::kClone)) return true;
  AsCrfsd as(tenant_root);
  if (!as.ok()) return Fail(err, EPERM, "crfsd cannot act as itself for the undo area");
  const std::string name = CloneName(gen, op.obj);
  struct stat st;
  if (fstatat(undo_fd_, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) return true;  // made before a crash
  Fd src(OpenObject(op.obj, O_RDONLY | O_NONBLOCK | O_NOCTTY, err));
  if (src.fd < 0) return false;
  // Made under a temporary name and renamed into place whole: a crash
  // between the create and the clone must not leave an empty "copy" that a
  // rollback would restore (what the temporary name leaves is purged).
  const std::string tmp = name + ".tmp";
  unlinkat(undo_fd_, tmp.c_str(), 0);
  Fd dst(openat(undo_fd_, tmp.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (dst.fd < 0) return Errno(err, "undo copy");
  if (ioctl(dst.fd, FICLONE, src.fd) != 0 || renameat2(undo_fd_, tmp.c_str(), undo_fd_, name.c_str(), 0) != 0) {
    const int e = errno;
    unlinkat(undo_fd_, tmp.c_str(), 0);
    errno = e;
    return Errno(err, "undo copy (FICLONE)");
  }
  return true;
}

bool TenantStore::TrashEntry(uint64_t gen, size_t index, int dir_fd, const Op& op, bool tenant_root,
                             RequestError* err) {
  AsCrfsd as(tenant_root);
  if (!as.ok()) return Fail(err, EPERM, "crfsd cannot act as itself for the undo area");
  const std::string to = UndoName(gen, index);
  if (renameat2(dir_fd, op.name.c_str(), undo_fd_, to.c_str(), RENAME_NOREPLACE) != 0) {
    return Errno(err, "unlink " + op.name + " (move to the undo area)");
  }
  return true;
}

bool TenantStore::UndoOp(uint64_t gen, size_t index, const Op& op, const Undo& u,
                         const std::map<uint64_t, uint64_t>& made, RequestError* err) {
  auto resolve = [&](uint64_t id) -> uint64_t {
    if (!proto::IsProvisional(id)) return id;
    auto m = made.find(id);
    return m == made.end() ? 0 : m->second;
  };
  const uint64_t dir = resolve(op.dir), obj = resolve(op.obj);
  auto named = [&](uint64_t d, const std::string& n, uint64_t want) {  // does d/n name `want`? -1: error
    if (d == 0) return 0;
    RequestError e;
    int64_t now = Lookup(d, n, &e);
    if (now < 0) {
      *err = e;
      return -1;
    }
    return want != 0 && static_cast<uint64_t>(now) == want ? 1 : 0;
  };
  auto relearn = [&](uint64_t d, const std::string& n, uint64_t o) {
    int dfd = DirFd(d, 0, err);
    struct stat st;
    if (dfd >= 0 && fstatat(dfd, n.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && st.st_ino == o) {
      Saw(d, o, 0, n, proto::FileTypeOfMode(st.st_mode));
    }
  };
  switch (op.kind) {
    case Op::kCreate:
    case Op::kLink: {
      const int r = named(dir, op.name, obj);
      if (r <= 0) return r == 0;  // never made (or gone): nothing to take back
      int dfd = DirFd(dir, 0, err);
      if (dfd < 0) return false;
      const bool is_dir = op.kind == Op::kCreate && S_ISDIR(op.mode);
      if (unlinkat(dfd, op.name.c_str(), is_dir ? AT_REMOVEDIR : 0) != 0) return Errno(err, "undo " + op.name);
      Forget(obj, dir, op.name);
      return true;
    }
    case Op::kRename: {
      const uint64_t dir2 = resolve(op.dir2);
      const int moved = named(dir2, op.name2, obj);
      if (moved <= 0) return moved == 0;
      int sfd = DirFd(dir2, 0, err), dfd = sfd < 0 ? -1 : DirFd(dir, 0, err);
      if (dfd < 0) return false;
      if (renameat2(sfd, op.name2.c_str(), dfd, op.name.c_str(), RENAME_NOREPLACE) != 0) {
        return Errno(err, "undo rename " + op.name2);
      }
      Moved(obj, dir2, op.name2, dir, op.name);
      return true;
    }
    case Op::kExchange: {
      const uint64_t dir2 = resolve(op.dir2), obj2 = resolve(op.obj2);
      const int a = named(dir, op.name, obj2), b = a < 0 ? -1 : named(dir2, op.name2, obj);
      if (a < 0 || b < 0) return false;
      if (!a || !b) return true;  // not exchanged (or already back)
      int sfd = DirFd(dir, 0, err), dfd = sfd < 0 ? -1 : DirFd(dir2, 0, err);
      if (dfd < 0) return false;
      if (renameat2(sfd, op.name.c_str(), dfd, op.name2.c_str(), RENAME_EXCHANGE) != 0) {
        return Errno(err, "undo exchange " + op.name);
      }
      Moved(obj2, dir, op.name, dir2, op.name2);
      Moved(obj, dir2, op.name2, dir, op.name);
      return true;
    }
    case Op::kUnlink: {
      if (u.flags & Undo::kSkip) {
        relearn(dir, op.name, obj);  // it never left its directory, which is back by now
        return true;
      }
      const std::string from = UndoName(gen, index);
      struct stat st;
      if (fstatat(undo_fd_, from.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
        return errno == ENOENT || Errno(err, "undo area");  // never moved there
      }
      int dfd = DirFd(dir, 0, err);
      if (dfd < 0) return false;
      AsCrfsd as(apply_as_tenant_root_);
      if (!as.ok()) return Fail(err, EPERM, "crfsd cannot act as itself for the undo area");
      if (renameat2(undo_fd_, from.c_str(), dfd, op.name.c_str(), RENAME_NOREPLACE) != 0) {
        return Errno(err, "undo unlink " + op.name);
      }
      relearn(dir, op.name, obj);
      return true;
    }
    default: break;
  }
  if (proto::IsProvisional(op.obj)) return true;  // a new object: its create is undone
  Fd fd(OpenObject(obj, O_PATH, err));
  if (fd.fd < 0) return false;
  const std::string path = ProcPath(fd.fd);
  if (u.flags & Undo::kClone) {
    AsCrfsd as(apply_as_tenant_root_);
    Fd copy(openat(undo_fd_, CloneName(gen, op.obj).c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
    if (copy.fd >= 0) {
      struct stat st;
      Fd w(OpenObject(obj, O_WRONLY | O_NONBLOCK | O_NOCTTY, err));
      if (w.fd < 0) return false;
      if (fstat(copy.fd, &st) != 0 || ftruncate(w.fd, st.st_size) != 0 || ioctl(w.fd, FICLONE, copy.fd) != 0) {
        return Errno(err, "undo data");
      }
    } else if (errno != ENOENT) {
      return Errno(err, "undo copy");
    }
  }
  if (u.flags & Undo::kXattr) {
    int r = u.had_xattr ? setxattr(path.c_str(), op.xname.c_str(), u.xattr.data(), u.xattr.size(), 0)
                        : removexattr(path.c_str(), op.xname.c_str());
    if (r != 0 && !(errno == ENODATA && !u.had_xattr)) return Errno(err, "undo xattr");
  }
  if (u.flags & Undo::kAttrs) {
    struct stat st;
    if (fstat(fd.fd, &st) != 0) return Errno(err, "stat");
    if ((st.st_uid != u.uid || st.st_gid != u.gid) && fchownat(fd.fd, "", u.uid, u.gid, AT_EMPTY_PATH) != 0) {
      return Errno(err, "undo chown");
    }
    if (!S_ISLNK(st.st_mode) && chmod(path.c_str(), u.mode) != 0) return Errno(err, "undo chmod");
    const struct timespec ts[2] = {Unix(u.atime), Unix(u.mtime)};
    if (S_ISLNK(st.st_mode)) {
      const Entry* e = Known(obj, err);
      const std::string name = e ? e->name : std::string();
      int dfd = e ? DirFd(e->parent, 0, err) : -1;
      if (dfd >= 0) utimensat(dfd, name.c_str(), ts, AT_SYMLINK_NOFOLLOW);
    } else if (utimensat(AT_FDCWD, path.c_str(), ts, 0) != 0) {
      return Errno(err, "undo times");
    }
  }
  return true;
}

bool TenantStore::Rollback(uint64_t gen, const std::vector<Op>& ops, const std::vector<Undo>& undo,
                           const std::vector<DirTimes>& dir_times, size_t failed,
                           const std::map<uint64_t, uint64_t>& made) {
  // Undoing is crfsd's own work (the steps come from its journal): as the
  // tenant's user it could not give back what it was allowed to change but
  // not to own (a directory's times, the mode of a file it may write).
  AsCrfsd as(apply_as_tenant_root_);
  if (!as.ok()) return false;
  bool all = true;
  for (size_t i = std::min(failed + 1, ops.size()); i-- > 0;) {
    RequestError e;
    if (!UndoOp(gen, i, ops[i], undo[i], made, &e)) {
      Log(LogLevel::kError, "tenant %s: rolling back transaction %llu: op %zu: %s", name_.c_str(),
          static_cast<unsigned long long>(gen), i, e.text.c_str());
      all = false;
    }
  }
  for (const DirTimes& d : dir_times) {
    RequestError e;
    int dfd = DirFd(d.dir, 0, &e);
    const struct timespec ts[2] = {Unix(d.atime), Unix(d.mtime)};
    if (dfd < 0 || utimensat(AT_FDCWD, ProcPath(dfd).c_str(), ts, 0) != 0) all = false;
  }
  return all;
}

void TenantStore::PurgeUndo(uint64_t gen, const std::vector<Op>& ops, const std::vector<Undo>& undo) {
  for (size_t i = 0; i < ops.size() && i < undo.size(); i++) {
    RequestError e;
    bool ok = true;
    if (undo[i].flags & Undo::kTrash) ok = RemoveTree(undo_fd_, UndoName(gen, i), &e);
    if (undo[i].flags & Undo::kClone) ok = RemoveTree(undo_fd_, CloneName(gen, ops[i].obj), &e) && ok;
    if (!ok) Log(LogLevel::kWarning, "tenant %s: undo area: %s", name_.c_str(), e.text.c_str());
  }
}

Status TenantStore::PurgeAllUndo() {
  Fd dir(openat(undo_fd_, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dir.fd < 0) return Status(Code::kIo, "tenant " + name_ + ": undo area: " + strerror(errno));
  std::vector<std::string> names;
  alignas(8) char buf[32768];
  for (;;) {
    const long n = syscall(SYS_getdents64, dir.fd, buf, sizeof(buf));
    if (n < 0) return Status(Code::kIo, "tenant " + name_ + ": undo area: " + strerror(errno));
    if (n == 0) break;
    for (long pos = 0; pos < n;) {
      auto* d = reinterpret_cast<struct dirent64*>(buf + pos);
      pos += d->d_reclen;
      if (strcmp(d->d_name, ".") != 0 && strcmp(d->d_name, "..") != 0) names.push_back(d->d_name);
    }
  }
  for (const std::string& name : names) {
    RequestError e;
    if (!RemoveTree(undo_fd_, name, &e)) {
      return Status(Code::kIo, "tenant " + name_ + ": undo area: " + name + ": " + e.text);
    }
  }
  return Status::Ok();
}

}  // namespace crfs::server
