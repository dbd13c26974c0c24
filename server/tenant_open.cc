// tenant_open.cc - objects sessions hold open (OPEN/CLOSE), and the fds
// that keep an open object alive after its last name is removed
// (docs/protocol.md §7, OPEN / CLOSE). See tenant_store.h.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <set>
#include <string>
#include <vector>

#include "server/fd.h"
#include "server/fs_credentials.h"
#include "server/log.h"
#include "server/tenant_store.h"

namespace crfs::server {

bool TenantStore::HoldOpen(uint64_t session, const ClientCredentials& who, uint64_t ino, uint32_t flags,
                           RequestError* err) {
  Acting acting(this, session);
  if (ino < CRFS_ROOT_OBJECTID || proto::IsProvisional(ino)) return Fail(err, ENOENT, "no such object");
  if (flags == 0 || (flags & ~uint32_t{CRFS_OPEN_ALL})) return Fail(err, EINVAL, "bad open flags");
  auto mine = held_by_session_.find(session);
  const bool holds = mine != held_by_session_.end() && mine->second.count(ino);
  if (!holds && mine != held_by_session_.end() && mine->second.size() >= max_held_per_session_) {
    return Fail(err, EMFILE, "this session holds " + std::to_string(max_held_per_session_) + " objects open already");
  }
  const auto host_uid = ids_.UidToHost(who.uid), host_gid = ids_.GidToHost(who.gid);
  if (!host_uid || !host_gid) return Fail(err, EACCES, "this client's ids are not in the tenant's map");
  // An object without a name is held by who held it when the name went;
  // nobody gains access to it afterwards (its path can no longer be checked).
  if (KeptAccess(ino) != 0) {
    const uint32_t had = held_.at(ino).sessions.at(session);
    if ((flags & ~had) != 0) return Fail(err, EBADF, "object " + std::to_string(ino) + " has no name: no new access");
    return true;
  }
  // The object, as the tenant was shown it.
  Fd fd(OpenObject(ino, O_PATH, err));
  if (fd.fd < 0) return false;
  struct stat st;
  if (fstat(fd.fd, &st) != 0) return Errno(err, "stat");
  if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode)) {
    return Fail(err, EINVAL, "only regular files and directories are held open");
  }
  if (S_ISDIR(st.st_mode) && (flags & CRFS_OPEN_WRITE)) return Fail(err, EISDIR, "a directory is not opened to write");
  // As open(2) would check it for this user (the tenant's root: as root in
  // its tree, over objects owned inside its map: access.h).
  {
    const bool tenant_root = who.uid == 0 && !ids_.config().root_squash;
    FsCredentials creds(*host_uid, *host_gid, false);
    if (!creds.ok()) return Fail(err, EPERM, "crfsd cannot act as the tenant's users");
    const Access access(ids_, *host_uid, *host_gid, tenant_root);
    // The path to it must be searchable, as for open(2).
    std::set<uint64_t> searchable;
    if (!Reachable(access, ino, &searchable, err)) return false;
    const int mask = ((flags & CRFS_OPEN_READ) ? R_OK : 0) | ((flags & CRFS_OPEN_WRITE) ? W_OK : 0);
    if (!access.Permitted(fd.fd, st, mask)) {
      return Fail(err, EACCES,
                  std::string("no ") + ((flags & CRFS_OPEN_WRITE) ? "write" : "read") + " permission on " +
                      std::to_string(ino));
    }
  }
  Held& h = held_[ino];
  h.type = S_ISDIR(st.st_mode) ? CRFS_FT_DIR : CRFS_FT_REG_FILE;
  h.sessions[session] |= flags;
  held_by_session_[session].insert(ino);
  return true;
}

bool TenantStore::CloseHeld(uint64_t session, uint64_t ino, RequestError* err) {
  auto h = held_.find(ino);
  if (h == held_.end() || !h->second.sessions.erase(session)) {
    return Fail(err, EBADF, "this session does not hold " + std::to_string(ino) + " open");
  }
  if (auto mine = held_by_session_.find(session); mine != held_by_session_.end()) {
    mine->second.erase(ino);
    if (mine->second.empty()) held_by_session_.erase(mine);
  }
  if (h->second.sessions.empty()) {
    // The last holder: an object without names goes with this close.
    if (h->second.fd >= 0) {
      close(h->second.fd);
      kept_--;
    }
    held_.erase(h);
  }
  return true;
}

void TenantStore::CloseAllHeld(uint64_t session) {
  auto mine = held_by_session_.find(session);
  if (mine == held_by_session_.end()) return;
  const std::unordered_set<uint64_t> inos = std::move(mine->second);
  held_by_session_.erase(mine);
  for (uint64_t ino : inos) {
    RequestError ignored;
    (void)CloseHeld(session, ino, &ignored);
  }
}

uint32_t TenantStore::KeptAccess(uint64_t ino) const {
  if (acting_session_ == 0 || table_.count(ino)) return 0;
  auto h = held_.find(ino);
  if (h == held_.end() || h->second.fd < 0) return 0;
  auto s = h->second.sessions.find(acting_session_);
  if (s == h->second.sessions.end()) return 0;
  // Only once it has no name at all: an object that still has one (a hard
  // link the table does not hold) is reached through that name.
  struct stat st;
  if (fstat(h->second.fd, &st) != 0 || st.st_nlink != 0) return 0;
  return s->second;
}

void TenantStore::ReleaseKept(const std::vector<uint64_t>& kept, bool applied) {
  for (uint64_t ino : kept) {
    auto h = held_.find(ino);
    if (h == held_.end() || h->second.fd < 0) continue;
    struct stat st;
    if (applied && fstat(h->second.fd, &st) == 0 && st.st_nlink == 0) continue;  // needed: it has no name now
    close(h->second.fd);
    h->second.fd = -1;
    h->second.fd_writable = false;
    kept_--;
  }
}

bool TenantStore::PrepareHeld(const Plan& plan, std::vector<uint64_t>* kept, RequestError* err) {
  if (held_.empty()) return true;
  for (const Op& op : plan.ops) {
    switch (op.kind) {
      case Op::kWrite:
      case Op::kPunch:
      case Op::kTruncate:
      case Op::kChown:
      case Op::kChmod:
      case Op::kSetXattr:
      case Op::kRemoveXattr:
      case Op::kSetTimes:
        if (const uint32_t access = KeptAccess(op.obj);
            access != 0 && (!(access & CRFS_OPEN_WRITE) || !held_.at(op.obj).fd_writable)) {
          return Fail(err, EBADF, "object " + std::to_string(op.obj) + " has no name and is open only for reading");
        }
        break;
      default: break;
    }
  }
  for (const Op& op : plan.ops) {
    if (op.kind != Op::kUnlink) continue;
    auto h = held_.find(op.obj);
    if (h == held_.end() || h->second.fd >= 0) continue;
    if (kept_ >= max_kept_) {
      ReleaseKept(*kept, false);
      return Fail(err, EMFILE,
                  "the tenant keeps " + std::to_string(max_kept_) + " open objects without names already; close some");
    }
    // With crfsd's own rights: whoever removes the name, the holders keep
    // the access they opened it with.
    int fd = -1;
    bool writable = false;
    if (h->second.type == CRFS_FT_DIR) {
      fd = OpenObject(op.obj, O_RDONLY | O_DIRECTORY, err);
    } else {
      fd = OpenObject(op.obj, O_RDWR | O_NONBLOCK | O_NOCTTY, err);
      writable = fd >= 0;
      if (fd < 0 && (err->err == EACCES || err->err == EPERM || err->err == ETXTBSY)) {
        fd = OpenObject(op.obj, O_RDONLY | O_NONBLOCK | O_NOCTTY, err);  // immutable/append-only: read
      }
    }
    if (fd < 0) {
      ReleaseKept(*kept, false);
      return Fail(err, err->err, "keeping open object " + std::to_string(op.obj) + ": " + err->text);
    }
    h->second.fd = fd;
    h->second.fd_writable = writable;
    kept_++;
    kept->push_back(op.obj);
  }
  return true;
}

}  // namespace crfs::server
