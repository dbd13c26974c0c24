#include "server/tenant_store.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <linux/magic.h>
#include <linux/openat2.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>

#include "proto/checksum.h"
#include "proto/codec.h"
#include "server/access.h"
#include "server/fd.h"
#include "server/fs_credentials.h"
#include "server/log.h"

namespace crfs::server {
namespace {

using proto::Item;
using proto::Key;

constexpr uint64_t kResolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV;
constexpr int kMaxDepth = 4096;

uint8_t FileTypeFromDirent(unsigned char d_type) {
  switch (d_type) {
    case DT_REG: return CRFS_FT_REG_FILE;
    case DT_DIR: return CRFS_FT_DIR;
    case DT_CHR: return CRFS_FT_CHRDEV;
    case DT_BLK: return CRFS_FT_BLKDEV;
    case DT_FIFO: return CRFS_FT_FIFO;
    case DT_SOCK: return CRFS_FT_SOCK;
    case DT_LNK: return CRFS_FT_SYMLINK;
  }
  return CRFS_FT_UNKNOWN;
}

proto::Timespec Ts(const struct statx_timestamp& t) {
  return proto::Timespec{static_cast<uint64_t>(t.tv_sec), t.tv_nsec};
}

// Successor of a key in key order (callers never pass the maximum key).
Key Next(const Key& k) {
  if (k.offset != ~0ull) return {k.objectid, k.type, k.offset + 1};
  if (k.type != 0xff) return {k.objectid, static_cast<uint8_t>(k.type + 1), 0};
  return {k.objectid + 1, 0, 0};
}

size_t EncodedSize(const Item& it) {
  auto b = proto::EncodeItemBody(it.key.type, it.body);
  return sizeof(struct crfs_item) + (b.ok() ? b->size() : 0);
}

}  // namespace

Result<int> TenantStore::OpenSubvolume(const std::string& storage_root, const TenantConfig& c, struct stat* st,
                                       bool* atime_updates) {
  const std::string path = storage_root + "/tenants/" + c.name;
  int fd = open(path.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    std::string hint = errno == ENOENT ? " (create it: crfsctl tenant add --config FILE " + c.name + ")" : "";
    return Status(Code::kIo, "tenant " + c.name + ": " + path + ": " + strerror(errno) + hint);
  }
  struct statfs fs;
  if (fstat(fd, st) != 0 || fstatfs(fd, &fs) != 0 || fs.f_type != BTRFS_SUPER_MAGIC ||
      st->st_ino != CRFS_ROOT_OBJECTID) {
    close(fd);
    return Status(Code::kInvalidArgument, "tenant " + c.name + ": " + path + " is not a btrfs subvolume root");
  }
  if (!(fs.f_flags & ST_NODEV)) {
    close(fd);
    return Status(Code::kInvalidArgument, "tenant " + c.name + ": " + path +
                                              " must be on a file system mounted nodev (crfsd opens tenant files)");
  }
  if (!(fs.f_flags & ST_NOSUID)) {
    close(fd);
    return Status(Code::kInvalidArgument, "tenant " + c.name + ": " + path +
                                              " must be on a file system mounted nosuid (tenants set mode bits)");
  }
  *atime_updates = !(fs.f_flags & ST_NOATIME);
  return fd;
}

Result<std::unique_ptr<TenantStore>> TenantStore::Open(const std::string& storage_root, const TenantConfig& c,
                                                       bool after_reboot, audit::AuditLog* audit) {
  struct stat st;
  bool atime = false;
  auto opened = OpenSubvolume(storage_root, c, &st, &atime);
  if (!opened.ok()) return opened.status();
  const int fd = *opened;
  if (atime) {
    Log(LogLevel::kWarning, "tenant %s: %s/tenants/%s is not mounted noatime: reads will write metadata",
        c.name.c_str(), storage_root.c_str(), c.name.c_str());
  }
  std::unique_ptr<TenantStore> store(new TenantStore(c.name, c.ids, fd, st.st_dev));
  JournalContents contents;
  auto journal = Journal::Open(storage_root + "/journal", c.name, &contents);
  if (!journal.ok()) return Status(journal.status().code(), "tenant " + c.name + ": " + journal.status().message());
  store->journal_ = std::move(*journal);
  CRFS_RETURN_IF_ERROR(store->OpenUndoArea());
  store->replay_after_reboot_ = after_reboot;
  store->audit_ = audit;
  CRFS_RETURN_IF_ERROR(store->Recover(std::move(contents)));
  return store;
}

TenantStore::~TenantStore() {
  for (auto& [ino, fd] : dir_cache_) close(fd);
  for (auto& [ino, h] : held_) {
    if (h.fd >= 0) close(h.fd);
  }
  if (undo_fd_ >= 0) close(undo_fd_);
  close(root_fd_);
}

int TenantStore::OpenChild(int dir_fd, const std::string& name, uint64_t want_ino, int flags, RequestError* err) {
  struct open_how how {};
  how.flags = static_cast<uint64_t>(flags | O_NOFOLLOW | O_CLOEXEC);
  how.resolve = kResolve;
  int fd = static_cast<int>(syscall(SYS_openat2, dir_fd, name.c_str(), &how, sizeof(how)));
  if (fd < 0) {
    Fail(err, errno == ELOOP ? ENOENT : errno, "open: " + std::string(strerror(errno)));
    return -1;
  }
  struct stat st;
  if (fstat(fd, &st) != 0 || st.st_dev != dev_ || st.st_ino != want_ino) {
    close(fd);
    Fail(err, ENOENT, "object changed or is outside the tenant");
    return -1;
  }
  return fd;
}

int TenantStore::DirFd(uint64_t ino, int depth, RequestError* err) {
  if (ino == CRFS_ROOT_OBJECTID) return root_fd_;
  if (auto it = dir_cache_.find(ino); it != dir_cache_.end()) return it->second;
  if (depth > kMaxDepth) {  // a loop of stale parents: forget it
    if (auto it = table_.find(ino); it != table_.end()) Forget(ino, it->second.parent, it->second.name);
    Fail(err, ENOENT, "no directory " + std::to_string(ino) + " in tenant " + name_);
    return -1;
  }
  const Entry* known = Known(ino, err);
  if (!known) return -1;
  const Entry e = *known;
  int parent = DirFd(e.parent, depth + 1, err);
  int fd = parent < 0 ? -1 : OpenChild(parent, e.name, ino, O_PATH | O_DIRECTORY, err);
  if (fd < 0 && depth == 0) {
    // Stale (moved behind crfsd's back): forget the name, ask btrfs where
    // the directory is now, and try once more.
    Forget(ino, e.parent, e.name);
    RequestError again;
    const Entry* now = Known(ino, &again);
    if (now && (now->parent != e.parent || now->name != e.name)) {
      const Entry moved = *now;
      parent = DirFd(moved.parent, depth + 1, &again);
      fd = parent < 0 ? -1 : OpenChild(parent, moved.name, ino, O_PATH | O_DIRECTORY, &again);
    }
  }
  if (fd < 0) return -1;
  if (dir_cache_.size() >= kDirCacheMax) {
    for (auto& [cached_ino, cached_fd] : dir_cache_) close(cached_fd);
    dir_cache_.clear();
  }
  dir_cache_.emplace(ino, fd);
  return fd;
}

int TenantStore::OpenObject(uint64_t ino, int flags, RequestError* err) {
  if (ino == CRFS_ROOT_OBJECTID) {
    struct open_how how {};
    how.flags = static_cast<uint64_t>(flags | O_CLOEXEC);
    how.resolve = kResolve;
    int fd = static_cast<int>(syscall(SYS_openat2, root_fd_, ".", &how, sizeof(how)));
    if (fd < 0) Fail(err, errno, "open root: " + std::string(strerror(errno)));
    return fd;
  }
  if (!table_.count(ino) && KeptAccess(ino) != 0) {
    int fd = fcntl(held_.at(ino).fd, F_DUPFD_CLOEXEC, 0);
    if (fd < 0) Errno(err, "dup");
    return fd;
  }
  // Through any of its names: one that is gone is forgotten, one this
  // user cannot reach is skipped; when every known name is gone, btrfs is
  // asked for the names it has now (once).
  for (int round = 0; round < 2; round++) {
    if (round == 1 || !table_.count(ino)) {
      if (!LearnNames(ino, err)) return -1;
      if (!table_.count(ino)) break;
      round = 1;
    }
    const Entry& e = table_.at(ino);
    std::vector<Name> names{Name{e.parent, e.index, e.name}};
    names.insert(names.end(), e.more.begin(), e.more.end());
    RequestError denied;
    for (const Name& n : names) {
      RequestError tried;
      int dir = DirFd(n.parent, 0, &tried);
      int fd = dir < 0 ? -1 : OpenChild(dir, n.name, ino, flags, &tried);
      if (fd >= 0) return fd;
      if (tried.err == ENOENT) {
        Forget(ino, n.parent, n.name);
      } else if (denied.err == 0) {
        denied = tried;
      }
    }
    if (denied.err != 0) {
      *err = denied;
      return -1;
    }
  }
  Fail(err, ENOENT, "no object " + std::to_string(ino) + " in tenant " + name_);
  return -1;
}

bool TenantStore::DirItems(int dir_fd, uint64_t ino, std::vector<Item>* items, RequestError* err) {
  Fd dir(openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dir.fd < 0) return Fail(err, errno, "opendir: " + std::string(strerror(errno)));
  std::map<uint64_t, proto::DirEntries> by_hash;
  std::vector<Item> by_index;
  // btrfs reports each entry's d_off as the directory index of the *next*
  // entry, so an entry's index is the previous entry's d_off ("." and ".."
  // come first, at positions 0 and 1).
  uint64_t index = 0;
  std::set<std::string> hidden;
  alignas(8) char buf[65536];
  for (;;) {
    long n = syscall(SYS_getdents64, dir.fd, buf, sizeof(buf));
    if (n < 0) return Fail(err, errno, "getdents64: " + std::string(strerror(errno)));
    if (n == 0) break;
    for (long pos = 0; pos < n;) {
      struct linux_dirent64 {
        uint64_t d_ino;
        int64_t d_off;
        unsigned short d_reclen;
        unsigned char d_type;
        char d_name[];
      };
      auto* d = reinterpret_cast<linux_dirent64*>(buf + pos);
      pos += d->d_reclen;
      const uint64_t this_index = index;
      index = static_cast<uint64_t>(d->d_off);
      std::string name = d->d_name;
      if (name == "." || name == "..") continue;
      if (ino == CRFS_ROOT_OBJECTID && name == kUndoDir) {  // crfsd's, not the tenant's (tenant_undo.cc)
        hidden.insert(std::move(name));
        continue;
      }
      if (d->d_type == DT_DIR) {
        // A nested subvolume or snapshot is another device: not the tenant's.
        struct stat st;
        if (fstatat(dir.fd, d->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) continue;  // gone meanwhile
        if (st.st_dev != dev_) {
          hidden.insert(std::move(name));
          continue;
        }
      }
      const uint8_t type = FileTypeFromDirent(d->d_type);
      if (d->d_ino >= CRFS_PROVISIONAL_FIRST || type == CRFS_FT_UNKNOWN) {  // cannot be shown on the wire
        hidden.insert(std::move(name));
        continue;
      }
      proto::DirEntry e{{d->d_ino, CRFS_INODE_ITEM_KEY, 0}, 0, type, name};
      if (by_index.size() >= kMaxDirEntries) {
        return Fail(err, EOVERFLOW, "directory has more than " + std::to_string(kMaxDirEntries) + " entries");
      }
      Saw(ino, d->d_ino, this_index, name, e.type);
      by_hash[proto::BtrfsNameHash(name)].entries.push_back(e);
      by_index.push_back(Item{{ino, CRFS_DIR_INDEX_KEY, this_index}, proto::DirEntries{{e}}});
    }
  }
  if (hidden.empty()) {
    hidden_.erase(ino);
  } else {
    hidden_[ino] = std::move(hidden);
  }
  items->reserve(items->size() + by_hash.size() + by_index.size());
  for (auto& [hash, entries] : by_hash) items->push_back(Item{{ino, CRFS_DIR_ITEM_KEY, hash}, std::move(entries)});
  std::sort(by_index.begin(), by_index.end(), [](const Item& a, const Item& b) { return a.key < b.key; });
  for (Item& it : by_index) items->push_back(std::move(it));
  return true;
}

bool TenantStore::ItemsOf(uint64_t ino, const Key& from, const Key& to, std::vector<Item>* items, bool* truncated,
                          RequestError* err) {
  *truncated = false;
  auto wanted = [&](uint8_t type) { return !(Key{ino, type, ~0ull} < from) && !(to < Key{ino, type, 0}); };
  // Open the object once, the way its type allows: regular files and
  // directories for reading (generation, xattrs, entries, data layout),
  // anything else as O_PATH only, because opening a fifo, socket or device
  // has side effects. The type is the one the parent's listing reported;
  // the inode check in OpenChild and the statx below catch a swap.
  uint8_t type = CRFS_FT_DIR;
  bool contents = true;  // xattrs, data layout, entries: not for a write-only holder of a nameless object
  if (ino != CRFS_ROOT_OBJECTID) {
    if (const uint32_t access = table_.count(ino) ? 0 : KeptAccess(ino); access != 0) {
      type = held_.at(ino).type;  // no name any more, held open by this session
      contents = (access & CRFS_OPEN_READ) != 0;
    } else if (const Entry* e = Known(ino, err)) {
      type = e->type;
    } else {
      return false;
    }
  }
  const int flags = type == CRFS_FT_DIR        ? O_RDONLY | O_DIRECTORY
                    : type == CRFS_FT_REG_FILE ? O_RDONLY | O_NONBLOCK | O_NOCTTY
                                               : O_PATH;
  Fd io(OpenObject(ino, flags, err));
  if (io.fd < 0) return false;
  struct statx sx;
  if (statx(io.fd, "", AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW, STATX_BASIC_STATS | STATX_BTIME, &sx) != 0) {
    return Fail(err, errno, "statx: " + std::string(strerror(errno)));
  }
  const bool is_dir = S_ISDIR(sx.stx_mode), is_reg = S_ISREG(sx.stx_mode);
  if (is_dir != (type == CRFS_FT_DIR) || is_reg != (type == CRFS_FT_REG_FILE)) {
    if (auto it = table_.find(ino); it != table_.end()) {
      Entry& e = it->second;
      names_ -= e.more.size();
      e.more.clear();
      Forget(ino, e.parent, e.name);
    }
    return Fail(err, ENOENT, "object " + std::to_string(ino) + " changed type");
  }
  const bool readable = is_dir || is_reg;

  proto::InodeItem inode;
  uint32_t generation = 0;
  if (readable && ioctl(io.fd, FS_IOC_GETVERSION, &generation) != 0) generation = 0;
  inode.generation = generation;
  inode.size = sx.stx_size;
  inode.nbytes = sx.stx_blocks * 512;
  inode.nlink = sx.stx_nlink;
  inode.uid = ids_.UidToTenant(sx.stx_uid);
  inode.gid = ids_.GidToTenant(sx.stx_gid);
  inode.mode = sx.stx_mode & (S_IFMT | 07777);
  inode.rdev = makedev(sx.stx_rdev_major, sx.stx_rdev_minor);
  inode.atime = Ts(sx.stx_atime);
  inode.ctime = Ts(sx.stx_ctime);
  inode.mtime = Ts(sx.stx_mtime);
  inode.otime = (sx.stx_mask & STATX_BTIME) ? Ts(sx.stx_btime) : inode.ctime;
  items->push_back(Item{{ino, CRFS_INODE_ITEM_KEY, 0}, inode});

  if (ino != CRFS_ROOT_OBJECTID) {
    // Every name, one INODE_REF per directory (as btrfs keeps them), each
    // directory's names by index. A nameless held object has none.
    if (sx.stx_nlink > 0 && wanted(CRFS_INODE_REF_KEY)) {
      std::map<uint64_t, std::vector<proto::InodeRefEntry>> by_dir;
      for (Name& n : NamesOf(ino, sx.stx_nlink, is_dir)) by_dir[n.parent].push_back({n.index, std::move(n.name)});
      for (auto& [dir, refs] : by_dir) {
        std::sort(refs.begin(), refs.end(), [](const proto::InodeRefEntry& a, const proto::InodeRefEntry& b) {
          return a.index != b.index ? a.index < b.index : a.name < b.name;
        });
        items->push_back(Item{{ino, CRFS_INODE_REF_KEY, dir}, proto::InodeRefs{std::move(refs)}});
      }
    }
  } else {
    items->push_back(Item{{ino, CRFS_INODE_REF_KEY, ino}, proto::InodeRefs{{{0, ".."}}}});
  }

  if (readable && contents && wanted(CRFS_XATTR_ITEM_KEY)) {
    std::map<uint64_t, proto::Xattrs> xattrs;
    char names[65536];
    ssize_t len = flistxattr(io.fd, names, sizeof(names));
    for (ssize_t off = 0; len > 0 && off < len; off += static_cast<ssize_t>(strlen(names + off)) + 1) {
      std::string name = names + off;
      if (name.rfind("user.", 0) != 0 || name.size() > CRFS_MAX_NAME) continue;  // tenants see user.* only
      std::string value(CRFS_MAX_XATTR_VALUE, '\0');
      ssize_t vlen = fgetxattr(io.fd, name.c_str(), value.data(), value.size());
      if (vlen < 0) continue;
      value.resize(static_cast<size_t>(vlen));
      xattrs[proto::BtrfsNameHash(name)].entries.push_back({name, value});
    }
    for (auto& [hash, x] : xattrs) items->push_back(Item{{ino, CRFS_XATTR_ITEM_KEY, hash}, std::move(x)});
  }

  // A removed directory (held open: no links) has no entries to list.
  if (is_dir && sx.stx_nlink > 0 && (wanted(CRFS_DIR_ITEM_KEY) || wanted(CRFS_DIR_INDEX_KEY)) &&
      !DirItems(io.fd, ino, items, err)) {
    return false;
  }

  if (S_ISLNK(sx.stx_mode)) {
    char target[4096];
    ssize_t n = readlinkat(io.fd, "", target, sizeof(target));
    if (n > 0) {
      proto::ExtentData e;
      e.generation = generation;
      e.len = static_cast<uint32_t>(n);
      e.data.assign(target, target + n);
      e.csums = proto::DataBlockCrcs(e.data);
      items->push_back(Item{{ino, CRFS_EXTENT_DATA_KEY, 0}, std::move(e)});
    }
  } else if (is_reg && contents && sx.stx_size > 0 && wanted(CRFS_EXTENT_DATA_KEY)) {
    // Data runs and holes, as the file system reports them, from the first
    // offset asked for; at most kMaxItemsPerQuery items (a sparse file of
    // exabytes would otherwise be billions of them).
    uint64_t pos = from.objectid == ino && from.type == CRFS_EXTENT_DATA_KEY ? from.offset : 0;
    const uint64_t stop =
        to.objectid == ino && to.type == CRFS_EXTENT_DATA_KEY && to.offset < sx.stx_size ? to.offset + 1 : sx.stx_size;
    size_t made = 0;
    auto add = [&](uint64_t off, uint8_t type, uint64_t len) {
      items->push_back(Item{{ino, CRFS_EXTENT_DATA_KEY, off},
                            proto::ExtentData{generation, type, static_cast<uint32_t>(len), {}, {}}});
      if (++made >= kMaxItemsPerQuery) *truncated = true;
    };
    while (pos < stop && !*truncated) {
      off_t data = lseek(io.fd, static_cast<off_t>(pos), SEEK_DATA);
      uint64_t data_at = data < 0 ? sx.stx_size : static_cast<uint64_t>(data);
      if (data_at > pos) {
        for (uint64_t h = pos; h < data_at && !*truncated; h += kMaxExtentItem) {
          add(h, CRFS_EXTENT_HOLE, std::min(kMaxExtentItem, data_at - h));
        }
      }
      if (data_at >= sx.stx_size || *truncated) break;
      off_t hole = lseek(io.fd, static_cast<off_t>(data_at), SEEK_HOLE);
      uint64_t hole_at = hole < 0 ? sx.stx_size : std::min<uint64_t>(static_cast<uint64_t>(hole), sx.stx_size);
      for (uint64_t d = data_at; d < hole_at && !*truncated; d += kMaxExtentItem) {
        add(d, CRFS_EXTENT_REG, std::min(kMaxExtentItem, hole_at - d));
      }
      pos = hole_at;
    }
  }
  return true;
}

bool TenantStore::MayRead(const ClientCredentials& who, uint64_t ino, ReadRights* rights, RequestError* err) {
  const auto host_uid = ids_.UidToHost(who.uid), host_gid = ids_.GidToHost(who.gid);
  if (!host_uid || !host_gid) return Fail(err, EACCES, "this client's ids are not in the tenant's map");
  if (const uint32_t kept = KeptAccess(ino); kept != 0) {  // nameless: as the session holds it
    rights->read = (kept & CRFS_OPEN_READ) != 0;
    rights->search = false;
    return true;
  }
  if (ino != CRFS_ROOT_OBJECTID && !Known(ino, err)) return false;
  FsCredentials creds(*host_uid, *host_gid, false);
  if (!creds.ok()) return Fail(err, EPERM, "crfsd cannot act as the tenant's users");
  const Access access(ids_, *host_uid, *host_gid, who.uid == 0 && !ids_.config().root_squash);
  std::set<uint64_t> searchable;
  if (!Reachable(access, ino, &searchable, err)) return false;
  Fd fd(OpenObject(ino, O_PATH, err));
  if (fd.fd < 0) return false;
  struct stat st;
  if (fstat(fd.fd, &st) != 0) return Fail(err, errno, "stat: " + std::string(strerror(errno)));
  const bool has_contents = S_ISREG(st.st_mode) || S_ISDIR(st.st_mode);
  rights->read = !has_contents || access.Permitted(fd.fd, st, R_OK);
  rights->search = !S_ISDIR(st.st_mode) || access.Permitted(fd.fd, st, X_OK);  // (nothing to find in a non-directory)
  return true;
}

bool TenantStore::Query(uint64_t session, const ClientCredentials& who, const proto::ItemQuery& q,
                        const RequestError* policy_denied, std::vector<proto::ItemRange>* out, RequestError* err) {
  Acting acting(this, session);
  TrimTables();
  const uint64_t ino = q.key.objectid;
  if (ino < CRFS_ROOT_OBJECTID || ino >= CRFS_PROVISIONAL_FIRST) return Fail(err, ENOENT, "no such object");
  Key end = std::min(q.max, Key{ino, 0xff, ~0ull});
  ReadRights rights;
  if (!MayRead(who, ino, &rights, err)) return false;
  // A lookup (the DIR_ITEM of one name hash) needs search permission on the
  // directory; anything else of its contents read permission: the reply
  // stops before the first such item.
  const bool lookup = q.key.type == CRFS_DIR_ITEM_KEY && end.objectid == ino && end.type == CRFS_DIR_ITEM_KEY &&
                      end.offset == q.key.offset;
  if (lookup && !rights.search) {
    return Fail(err, EACCES, "no search permission on directory " + std::to_string(ino));
  }
  if (!lookup && (!rights.read || policy_denied)) {
    for (uint8_t type : {CRFS_XATTR_ITEM_KEY, CRFS_DIR_ITEM_KEY, CRFS_DIR_INDEX_KEY, CRFS_EXTENT_DATA_KEY}) {
      const Key first{ino, type, 0};
      if (end < first) break;
      if (Key{ino, type, ~0ull} < q.key) continue;
      if (!(q.key < first)) {
        if (rights.read) return Fail(err, policy_denied->err, policy_denied->text);
        return Fail(err, EACCES, "no read permission on " + std::to_string(ino) + ": its contents are not shown");
      }
      end = Key{ino, static_cast<uint8_t>(type - 1), ~0ull};
      break;
    }
  }
  std::vector<Item> all;
  bool truncated = false;
  if (!ItemsOf(ino, q.key, end, &all, &truncated, err)) return false;
  Key start = q.key;
  proto::ItemRange cur{start, end, {}};
  size_t cur_bytes = sizeof(struct crfs_item_range), total = 0;
  for (Item& it : all) {
    if (it.key < q.key || end < it.key) continue;
    const size_t sz = EncodedSize(it);
    if (!cur.items.empty() && (cur_bytes + sz > q.bytes || cur.items.size() >= CRFS_MAX_RANGE_ITEMS)) {
      // Close this range at its last item; the next starts right after it.
      cur.max = cur.items.back().key;
      total += cur_bytes;
      Key next = Next(cur.max);
      out->push_back(std::move(cur));
      if (total >= kMaxQueryReply) return true;  // the client continues from out->back().max
      cur = proto::ItemRange{next, end, {}};
      cur_bytes = sizeof(struct crfs_item_range);
    }
    cur_bytes += sz;
    cur.items.push_back(std::move(it));
  }
  // Past the last generated item this store cannot vouch for anything.
  if (truncated && !cur.items.empty()) cur.max = cur.items.back().key;
  out->push_back(std::move(cur));
  return true;
}

bool TenantStore::TreeQuery(const ClientCredentials& who, const PolicyCheck* check, const proto::TreeQuery& q,
                            std::vector<proto::ItemRange>* out, RequestError* err) {
  if (q.objectid < CRFS_ROOT_OBJECTID || q.objectid >= CRFS_PROVISIONAL_FIRST) {
    return Fail(err, ENOENT, "no such object");
  }
  TrimTables();
  ReadRights top;
  if (!MayRead(who, q.objectid, &top, err)) return false;
  if (!top.read) return Fail(err, EACCES, "no read permission on directory " + std::to_string(q.objectid));
  if (q.objectid != CRFS_ROOT_OBJECTID) {
    const Entry* e = Known(q.objectid, err);
    if (!e) return false;
    if (e->type != CRFS_FT_DIR) return Fail(err, ENOTDIR, "not a directory");
  }
  std::vector<uint64_t> todo{q.objectid};
  size_t total = 0;
  for (size_t next = 0; next < todo.size() && total < kMaxQueryReply; next++) {
    const uint64_t d = todo[next];
    RequestError e;
    ReadRights rights;
    if (d != q.objectid && (!MayRead(who, d, &rights, &e) || !rights.read)) continue;  // as if not reached
    if (d != q.objectid && check && !PolicyPermitsRead(*check, policy::OpKind::kReaddir, d, &e)) continue;
    int dfd = DirFd(d, 0, &e);
    std::vector<Item> items;
    if (dfd < 0 || !DirItems(dfd, d, &items, &e)) {
      if (d == q.objectid) {
        *err = e;
        return false;
      }
      continue;  // gone meanwhile: the client sees no range for it
    }
    const Key end{d, CRFS_DIR_INDEX_KEY, ~0ull};
    proto::ItemRange cur{{d, CRFS_DIR_INDEX_KEY, 0}, end, {}};
    size_t cur_bytes = sizeof(struct crfs_item_range);
    bool cut = false;
    for (Item& it : items) {
      if (it.key.type != CRFS_DIR_INDEX_KEY) continue;
      const auto& entry = std::get<proto::DirEntries>(it.body).entries.at(0);
      if (entry.type == CRFS_FT_DIR) todo.push_back(entry.location.objectid);
      const size_t sz = EncodedSize(it);
      if (!cur.items.empty() && (cur_bytes + sz > q.bytes || cur.items.size() >= CRFS_MAX_RANGE_ITEMS)) {
        cur.max = cur.items.back().key;
        total += cur_bytes;
        const Key resume = Next(cur.max);
        out->push_back(std::move(cur));
        if (total >= kMaxQueryReply) {
          cut = true;  // this directory continues with ITEM_QUERY from `resume`
          break;
        }
        cur = proto::ItemRange{resume, end, {}};
        cur_bytes = sizeof(struct crfs_item_range);
      }
      cur_bytes += sz;
      cur.items.push_back(std::move(it));
    }
    if (!cut) {
      total += cur_bytes;
      out->push_back(std::move(cur));
    }
  }
  return true;
}

bool TenantStore::Read(uint64_t session, const ClientCredentials& who, const proto::DataRead& r,
                       std::vector<proto::Data>* out, RequestError* err) {
  Acting acting(this, session);
  TrimTables();
  if (r.objectid == CRFS_ROOT_OBJECTID) return Fail(err, EISDIR, "is a directory");
  if (r.objectid >= CRFS_PROVISIONAL_FIRST) return Fail(err, ENOENT, "no such object");
  uint8_t type = 0;
  if (const uint32_t access = table_.count(r.objectid) ? 0 : KeptAccess(r.objectid); access != 0) {
    // No name any more: only the access this session opened it with.
    if (!(access & CRFS_OPEN_READ)) return Fail(err, EBADF, "open only for writing");
    type = held_.at(r.objectid).type;
  } else if (const Entry* e = Known(r.objectid, err)) {
    type = e->type;
  } else {
    return false;
  }
  // Only regular files are opened for reading (see ItemsOf).
  if (type == CRFS_FT_DIR) return Fail(err, EISDIR, "is a directory");
  if (type != CRFS_FT_REG_FILE) return Fail(err, EINVAL, "not a regular file");
  ReadRights rights;
  if (!MayRead(who, r.objectid, &rights, err)) return false;
  if (!rights.read) return Fail(err, EACCES, "no read permission on " + std::to_string(r.objectid));
  Fd fd(OpenObject(r.objectid, O_RDONLY | O_NONBLOCK | O_NOCTTY, err));
  if (fd.fd < 0) return false;
  struct stat st;
  if (fstat(fd.fd, &st) != 0 || !S_ISREG(st.st_mode)) return Fail(err, EINVAL, "not a regular file");
  proto::Data d;
  d.objectid = r.objectid;
  d.offset = r.offset;
  d.data.resize(r.len);
  // All of it unless the file ends: a short DATA means end of file.
  size_t got = 0;
  while (got < r.len) {
    ssize_t n = pread(fd.fd, d.data.data() + got, r.len - got, static_cast<off_t>(r.offset + got));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Fail(err, errno, "read: " + std::string(strerror(errno)));
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  if (got == 0) return true;
  d.data.resize(got);
  d.csums = proto::DataBlockCrcs(d.data);
  out->push_back(std::move(d));
  return true;
}

}  // namespace crfs::server
