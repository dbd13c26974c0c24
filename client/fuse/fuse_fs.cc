#include "client/fuse/fuse_fs.h"

#include <sys/stat.h>
#include <sys/statvfs.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <type_traits>
#include <vector>

#include "proto/codec.h"

namespace crfs::client {

int ErrnoOf(const Status& s) {
  if (s.ok()) return 0;
  if (s.code() == Code::kRemote && s.remote_errno() > 0) return s.remote_errno();
  switch (s.code()) {
    case Code::kInvalidArgument: return EINVAL;
    case Code::kTooLarge: return EFBIG;
    default: return EIO;  // the session failed (and could not be restored) or the server broke the protocol
  }
}

namespace {

const Status& StatusOf(const Status& s) { return s; }
template <typename T>
Status StatusOf(const Result<T>& r) {
  return r.status();
}

proto::Timespec Now() {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return {static_cast<uint64_t>(ts.tv_sec), static_cast<uint32_t>(ts.tv_nsec)};
}

struct timespec Ts(const proto::Timespec& t) {
  struct timespec ts {};
  ts.tv_sec = static_cast<time_t>(t.sec);
  ts.tv_nsec = t.nsec;
  return ts;
}

FuseFs* Fs(fuse_req_t req) { return static_cast<FuseFs*>(fuse_req_userdata(req)); }

void Reply(fuse_req_t req, const Status& s) { fuse_reply_err(req, ErrnoOf(s)); }

constexpr int kStaleRetries = 4;  // ESTALE: read again and build again

}  // namespace

// One open directory: its entries as listed at opendir (readdir serves
// them by position, so a listing is one consistent snapshot).
struct FuseFs::DirHandle {
  uint64_t obj = 0;
  std::vector<std::pair<std::string, std::pair<uint64_t, uint8_t>>> entries;  // name -> (objectid, CRFS_FT_*)
};

FuseFs::FuseFs(std::unique_ptr<Connection> conn, const Options& options)
    : conn_(std::move(conn)), ops_(conn_.get()), options_(options), root_(conn_->hello().root_objectid) {}

FuseFs::~FuseFs() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (flusher_.joinable()) flusher_.join();
  std::lock_guard<std::mutex> lock(mu_);
  FlushAll();
}

void FuseFs::Flusher() {
  std::unique_lock<std::mutex> lock(mu_);
  const auto delay = std::chrono::duration<double>(options_.write_delay);
  while (!stopping_) {
    wake_.wait_for(lock, std::chrono::milliseconds(50));
    const auto now = std::chrono::steady_clock::now();
    std::vector<uint64_t> due;
    for (const auto& [obj, g] : gathered_) {
      if (now - g.since >= delay) due.push_back(obj);
    }
    for (uint64_t obj : due) (void)FlushOne(obj);  // a failure waits in write_error_
  }
}

Status FuseFs::FlushOne(uint64_t obj) {
  auto it = gathered_.find(obj);
  if (it == gathered_.end()) return Status::Ok();
  Gathered g = std::move(it->second);
  gathered_.erase(it);
  Status s;
  bool reconnected = false;
  for (int attempt = 0; attempt <= kStaleRetries; attempt++) {
    s = ops_.WriteExtents(obj, g.pieces);
    if (s.code() == Code::kIo && !reconnected && conn_->can_reconnect()) {
      // Lost before the transaction went out (FileOps resends one that did,
      // with its id): the same writes again on a new session.
      reconnected = true;
      std::fprintf(stderr, "crfs-fuse: %s; reconnecting\n", s.message().c_str());
      if (Reconnect().ok()) continue;
    }
    if (!(s.code() == Code::kRemote && s.remote_errno() == ESTALE)) break;
  }
  if (!s.ok()) {
    std::fprintf(stderr, "crfs-fuse: writes of %zu bytes to objectid %llu failed: %s\n", g.bytes,
                 static_cast<unsigned long long>(obj), s.message().c_str());
    write_error_[obj] = ErrnoOf(s);
  }
  return s;
}

void FuseFs::FlushAll() {
  while (!gathered_.empty()) (void)FlushOne(gathered_.begin()->first);
}

int FuseFs::TakeError(uint64_t obj) {
  auto it = write_error_.find(obj);
  if (it == write_error_.end()) return 0;
  const int e = it->second;
  write_error_.erase(it);
  return e;
}

template <typename F>
auto FuseFs::Run(bool reads, F&& f, bool flush_all) -> decltype(f()) {
  std::lock_guard<std::mutex> lock(mu_);
  // A change goes to the server after what this mount wrote before it. A
  // read flushes what it can observe itself (FlushOne of its object).
  if (flush_all) FlushAll();
  bool reconnected = false;
  for (int attempt = 0;; attempt++) {
    const uint64_t sent = ops_.frames_sent();
    auto r = f();
    const Status s = StatusOf(r);
    if (s.ok()) return r;
    if (s.code() == Code::kRemote && s.remote_errno() == ESTALE && attempt < kStaleRetries) continue;
    if (s.code() == Code::kIo && conn_->can_reconnect() && !reconnected) {
      // The session is gone. Restore it; a read is asked again, and so is a
      // change cut off before its transaction went out. One cut off after
      // it (which FileOps resent with its id until it gave up) is reported:
      // it may or may not have been applied (EIO, as a disk that fails a
      // write).
      reconnected = true;
      std::fprintf(stderr, "crfs-fuse: %s; reconnecting\n", s.message().c_str());
      if (Reconnect().ok() && (reads || ops_.frames_sent() == sent)) continue;
    }
    return r;
  }
}

Status FuseFs::Reconnect() {
  CRFS_RETURN_IF_ERROR(conn_->Reconnect());
  for (auto& [obj, h] : held_) {
    if (h.stale) continue;
    auto replies = conn_->Call(proto::Open{obj, h.flags});
    if (!replies.ok()) return replies.status();
    if (!Connection::Check(replies->back()).ok()) h.stale = true;  // gone with a restart: ESTALE from now on
  }
  return Status::Ok();
}

Status FuseFs::OpenOn(uint64_t obj, uint32_t flags) {
  Held& h = held_[obj];
  if (h.stale) return Status::Remote(ESTALE, "the server lost this open file");
  if (h.count == 0 || (h.flags | flags) != h.flags) {
    auto replies = conn_->Call(proto::Open{obj, flags | h.flags});
    Status s = replies.ok() ? Connection::Check(replies->back()) : replies.status();
    if (!s.ok()) {
      if (h.count == 0) held_.erase(obj);
      return s;
    }
    h.flags |= flags;
  }
  h.count++;
  return Status::Ok();
}

void FuseFs::CloseOn(uint64_t obj) {
  auto h = held_.find(obj);
  if (h == held_.end() || --h->second.count > 0) return;
  const bool stale = h->second.stale;
  held_.erase(h);
  if (stale) return;
  auto replies = conn_->Call(proto::Close{obj});
  if (replies.ok()) (void)Connection::Check(replies->back());  // EBADF: the session was new; nothing held
}

struct stat FuseFs::Stat(uint64_t obj, const proto::InodeItem& in) const {
  struct stat st {};
  st.st_ino = obj;
  st.st_mode = in.mode;
  st.st_nlink = in.nlink;
  st.st_uid = in.uid;
  st.st_gid = in.gid;
  st.st_rdev = in.rdev;
  st.st_size = static_cast<off_t>(in.size);
  st.st_blksize = 4096;
  st.st_blocks = static_cast<blkcnt_t>(in.nbytes / 512);
  st.st_atim = Ts(in.atime);
  st.st_mtim = Ts(in.mtime);
  st.st_ctim = Ts(in.ctime);
  return st;
}

fuse_entry_param FuseFs::EntryOf(uint64_t obj, const proto::InodeItem& in) const {
  fuse_entry_param e{};
  e.ino = Node(obj);
  e.generation = in.generation;
  e.attr = Stat(obj, in);
  e.attr_timeout = options_.attr_timeout;
  e.entry_timeout = options_.entry_timeout;
  return e;
}

void FuseFs::Lookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  auto r = Run(
      true,
      [&]() -> Result<fuse_entry_param> {
        auto e = ops_.FindIn(Obj(parent), name);
        if (!e.ok()) return e.status();
        if (e->obj == 0) return Status::Remote(ENOENT, name);
        if (gathered_.count(e->obj) == 0) return EntryOf(e->obj, *e->inode);
        (void)FlushOne(e->obj);  // gathered writes: its size as this mount wrote it
        auto in = ops_.Inode(e->obj);
        if (!in.ok()) return in.status();
        return EntryOf(e->obj, *in);
      },
      false);
  if (!r.ok()) return Reply(req, r.status());
  fuse_reply_entry(req, &*r);
}

void FuseFs::Getattr(fuse_req_t req, fuse_ino_t ino) {
  auto r = Run(
      true,
      [&] {
        (void)FlushOne(Obj(ino));
        return ops_.Inode(Obj(ino));
      },
      false);
  if (!r.ok()) return Reply(req, r.status());
  const struct stat st = Stat(Obj(ino), *r);
  fuse_reply_attr(req, &st, options_.attr_timeout);
}

void FuseFs::Setattr(fuse_req_t req, fuse_ino_t ino, const struct stat* attr, int to_set) {
  FileOps::Attrs a;
  if (to_set & FUSE_SET_ATTR_MODE) a.mode = attr->st_mode & 07777;
  if (to_set & FUSE_SET_ATTR_UID) a.uid = attr->st_uid;
  if (to_set & FUSE_SET_ATTR_GID) a.gid = attr->st_gid;
  if (to_set & FUSE_SET_ATTR_SIZE) a.size = static_cast<uint64_t>(attr->st_size);
  const proto::Timespec now = Now();
  if (to_set & FUSE_SET_ATTR_ATIME_NOW) {
    a.atime = now;
  } else if (to_set & FUSE_SET_ATTR_ATIME) {
    a.atime =
        proto::Timespec{static_cast<uint64_t>(attr->st_atim.tv_sec), static_cast<uint32_t>(attr->st_atim.tv_nsec)};
  }
  if (to_set & FUSE_SET_ATTR_MTIME_NOW) {
    a.mtime = now;
  } else if (to_set & FUSE_SET_ATTR_MTIME) {
    a.mtime =
        proto::Timespec{static_cast<uint64_t>(attr->st_mtim.tv_sec), static_cast<uint32_t>(attr->st_mtim.tv_nsec)};
  }
  auto r = Run(false, [&]() -> Result<proto::InodeItem> {
    // Only a ctime change asked for (e.g. by utimensat with UTIME_OMIT
    // twice): nothing to send.
    if (a.mode || a.uid || a.gid || a.size || a.atime || a.mtime) CRFS_RETURN_IF_ERROR(ops_.SetAttrsOf(Obj(ino), a));
    return ops_.Inode(Obj(ino));
  });
  if (!r.ok()) return Reply(req, r.status());
  const struct stat st = Stat(Obj(ino), *r);
  fuse_reply_attr(req, &st, options_.attr_timeout);
}

void FuseFs::Readlink(fuse_req_t req, fuse_ino_t ino) {
  auto r = Run(
      true, [&] { return ops_.ReadLink(Obj(ino)); }, false);
  if (!r.ok()) return Reply(req, r.status());
  fuse_reply_readlink(req, r->c_str());
}

void FuseFs::Mknod(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, const std::string& target) {
  auto r = Run(false, [&]() -> Result<fuse_entry_param> {
    auto obj = ops_.CreateIn(Obj(parent), name, mode, target);
    if (!obj.ok()) return obj.status();
    auto in = ops_.Inode(*obj);
    if (!in.ok()) return in.status();
    return EntryOf(*obj, *in);
  });
  if (!r.ok()) return Reply(req, r.status());
  fuse_reply_entry(req, &*r);
}

void FuseFs::Unlink(fuse_req_t req, fuse_ino_t parent, const char* name, FileOps::Removing what) {
  Reply(req, Run(false, [&] { return ops_.RemoveIn(Obj(parent), name, what); }));
}

void FuseFs::Rename(fuse_req_t req, fuse_ino_t parent, const char* name, fuse_ino_t newparent, const char* newname,
                    unsigned flags) {
  Reply(req, Run(false, [&] { return ops_.RenameIn(Obj(parent), name, Obj(newparent), newname, flags); }));
}

void FuseFs::Link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char* newname) {
  auto r = Run(false, [&]() -> Result<fuse_entry_param> {
    CRFS_RETURN_IF_ERROR(ops_.LinkIn(Obj(ino), Obj(newparent), newname));
    auto in = ops_.Inode(Obj(ino));
    if (!in.ok()) return in.status();
    return EntryOf(Obj(ino), *in);
  });
  if (!r.ok()) return Reply(req, r.status());
  fuse_reply_entry(req, &*r);
}

namespace {
uint32_t OpenFlags(int flags) {
  switch (flags & O_ACCMODE) {
    case O_WRONLY: return CRFS_OPEN_WRITE;
    case O_RDWR: return CRFS_OPEN_READ | CRFS_OPEN_WRITE;
    default: return CRFS_OPEN_READ;
  }
}
}  // namespace

void FuseFs::Open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info* fi) {
  const uint64_t obj = Obj(ino);
  auto r = Run(true, [&]() -> Result<proto::InodeItem> {
    CRFS_RETURN_IF_ERROR(OpenOn(obj, OpenFlags(fi->flags)));
    auto in = ops_.Inode(obj);
    if (!in.ok()) CloseOn(obj);
    return in;
  });
  if (!r.ok()) return Reply(req, r.status());
  {
    // The page cache stays if the file is as it was at the last open.
    std::lock_guard<std::mutex> lock(mu_);
    auto was = opened_as_.find(obj);
    fi->keep_cache = was != opened_as_.end() && was->second == std::pair{r->size, r->mtime};
    opened_as_[obj] = {r->size, r->mtime};
  }
  if (fuse_reply_open(req, fi) != 0) {
    std::lock_guard<std::mutex> lock(mu_);
    CloseOn(obj);  // the opener went away (interrupted)
  }
}

void FuseFs::Create(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, struct fuse_file_info* fi) {
  auto r = Run(false, [&]() -> Result<fuse_entry_param> {
    auto obj = ops_.CreateIn(Obj(parent), name, S_IFREG | (mode & 07777));
    if (!obj.ok()) return obj.status();
    // Made by this call: the creator may write it whatever its mode says,
    // as open(O_CREAT) allows.
    Status s = OpenOn(*obj, OpenFlags(fi->flags) | CRFS_OPEN_WRITE);
    if (!s.ok()) return s;
    auto in = ops_.Inode(*obj);
    if (!in.ok()) {
      CloseOn(*obj);
      return in.status();
    }
    opened_as_[*obj] = {in->size, in->mtime};
    return EntryOf(*obj, *in);
  });
  if (!r.ok()) return Reply(req, r.status());
  fi->keep_cache = 0;
  if (fuse_reply_create(req, &*r, fi) != 0) {
    std::lock_guard<std::mutex> lock(mu_);
    CloseOn(Obj(r->ino));
  }
}

void FuseFs::Read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off) {
  auto r = Run(
      true,
      [&]() -> Result<std::vector<uint8_t>> {
        if (auto h = held_.find(Obj(ino)); h != held_.end() && h->second.stale) {
          return Status::Remote(ESTALE, "the server lost this open file");
        }
        (void)FlushOne(Obj(ino));  // a failure is the next write's, close's or fsync's to report
        return conn_->Read(Obj(ino), static_cast<uint64_t>(off), static_cast<uint32_t>(size));
      },
      false);
  if (!r.ok()) return Reply(req, r.status());
  fuse_reply_buf(req, reinterpret_cast<const char*>(r->data()), r->size());
}

void FuseFs::Write(fuse_req_t req, fuse_ino_t ino, const char* buf, size_t size, off_t off) {
  const uint64_t obj = Obj(ino), at = static_cast<uint64_t>(off);
  std::lock_guard<std::mutex> lock(mu_);
  if (auto h = held_.find(obj); h != held_.end() && h->second.stale) return (void)fuse_reply_err(req, ESTALE);
  if (int e = TakeError(obj)) return (void)fuse_reply_err(req, e);  // an earlier gathered write failed
  opened_as_.erase(obj);  // changed here: the next open must not trust its cache blindly
  if (options_.write_delay <= 0) {
    FlushAll();
    Status s = ops_.WriteAt(obj, at, std::vector<uint8_t>(buf, buf + size));
    if (!s.ok()) return Reply(req, s);
    return (void)fuse_reply_write(req, size);
  }
  auto g = gathered_.find(obj);
  if (g == gathered_.end() || g->second.bytes + size > kGatherBytes) {
    // Other files' writes first: the server sees this mount's in order.
    FlushAll();
    if (int e = TakeError(obj)) return (void)fuse_reply_err(req, e);
    g = gathered_.emplace(obj, Gathered{{}, 0, std::chrono::steady_clock::now()}).first;
  }
  // Merge [at, at + size) with every piece it touches; its bytes win.
  auto& pieces = g->second.pieces;
  uint64_t lo = at, hi = at + size;
  auto first = pieces.lower_bound(at);
  if (first != pieces.begin()) {
    auto prev = std::prev(first);
    if (prev->first + prev->second.size() >= at) first = prev;
  }
  auto last = first;
  while (last != pieces.end() && last->first <= hi) {
    lo = std::min(lo, last->first);
    hi = std::max(hi, last->first + last->second.size());
    ++last;
  }
  std::vector<uint8_t> merged(hi - lo);
  for (auto p = first; p != last; ++p) {
    std::copy(p->second.begin(), p->second.end(), merged.begin() + static_cast<ptrdiff_t>(p->first - lo));
    g->second.bytes -= p->second.size();
  }
  std::copy(buf, buf + size, merged.begin() + static_cast<ptrdiff_t>(at - lo));
  pieces.erase(first, last);
  g->second.bytes += merged.size();
  pieces.emplace(lo, std::move(merged));
  if (g->second.bytes >= kGatherBytes) {
    Status s = FlushOne(obj);
    if (!s.ok()) {
      (void)TakeError(obj);
      return Reply(req, s);
    }
  }
  fuse_reply_write(req, size);
}

void FuseFs::Flush(fuse_req_t req, fuse_ino_t ino) {
  std::lock_guard<std::mutex> lock(mu_);
  (void)FlushOne(Obj(ino));
  fuse_reply_err(req, TakeError(Obj(ino)));  // close(2) reports a failed write, as on NFS
}

void FuseFs::Release(fuse_req_t req, fuse_ino_t ino) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    (void)FlushOne(Obj(ino));
    CloseOn(Obj(ino));
  }
  fuse_reply_err(req, 0);
}

void FuseFs::Fsync(fuse_req_t req, fuse_ino_t ino) {
  // Everything this mount wrote is sent (Run), then SYNC answers once all
  // of it is durable.
  int failed = 0;
  Status s = Run(true, [&]() -> Status {
    failed = TakeError(Obj(ino));
    auto replies = conn_->Call(proto::Sync{});
    if (!replies.ok()) return replies.status();
    return Connection::Check(replies->back());
  });
  if (failed) return (void)fuse_reply_err(req, failed);
  Reply(req, s);
}

void FuseFs::Opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info* fi) {
  auto d = std::make_unique<DirHandle>();
  d->obj = Obj(ino);
  Status s = Run(true, [&]() -> Status {
    d->entries.clear();
    // Held open on the server too: removed while open, it still answers
    // fstat (nlink 0, no entries), as a local directory does.
    CRFS_RETURN_IF_ERROR(OpenOn(d->obj, CRFS_OPEN_READ));
    auto items = conn_->ItemsOf(d->obj, CRFS_DIR_INDEX_KEY, CRFS_DIR_INDEX_KEY);
    if (!items.ok()) {
      CloseOn(d->obj);
      return items.status();
    }
    for (const proto::Item& it : *items) {
      const auto* de = std::get_if<proto::DirEntries>(&it.body);
      if (!de || de->entries.empty()) continue;
      const proto::DirEntry& e = de->entries[0];
      d->entries.push_back({e.name, {e.location.objectid, e.type}});
    }
    return Status::Ok();
  });
  if (!s.ok()) return Reply(req, s);
  fi->fh = reinterpret_cast<uint64_t>(d.get());
  fi->cache_readdir = 0;
  if (fuse_reply_open(req, fi) == 0) {
    d.release();
  } else {
    std::lock_guard<std::mutex> lock(mu_);
    CloseOn(d->obj);
  }
}

void FuseFs::Readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info* fi) {
  auto* d = reinterpret_cast<DirHandle*>(fi->fh);
  std::vector<char> buf(size);
  size_t used = 0;
  // Positions: 0 ".", 1 "..", 2 + i the i-th entry; d_off is the next's.
  for (size_t pos = static_cast<size_t>(off); pos < d->entries.size() + 2; pos++) {
    struct stat st {};
    std::string name;
    if (pos < 2) {
      name = pos == 0 ? "." : "..";
      st.st_ino = pos == 0 ? d->obj : 0;
      st.st_mode = S_IFDIR;
    } else {
      const auto& [n, what] = d->entries[pos - 2];
      name = n;
      st.st_ino = what.first;
      st.st_mode = static_cast<mode_t>(proto::ModeOfFileType(what.second));
    }
    const size_t n =
        fuse_add_direntry(req, buf.data() + used, size - used, name.c_str(), &st, static_cast<off_t>(pos + 1));
    if (n > size - used) break;
    used += n;
  }
  (void)ino;
  fuse_reply_buf(req, buf.data(), used);
}

void FuseFs::Releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info* fi) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    CloseOn(Obj(ino));
  }
  delete reinterpret_cast<DirHandle*>(fi->fh);
  fuse_reply_err(req, 0);
}

void FuseFs::Statfs(fuse_req_t req) {
  // Version 1 of the protocol does not report the tenant's space: names
  // and block size only (df shows 0; the statfs message is future work).
  struct statvfs sv {};
  sv.f_bsize = 4096;
  sv.f_frsize = 4096;
  sv.f_namemax = 255;
  fuse_reply_statfs(req, &sv);
}

void FuseFs::Setxattr(fuse_req_t req, fuse_ino_t ino, const char* name, const char* value, size_t size, int flags) {
  // crfsd keeps user.* xattrs only (protocol.md §6.2). POSIX ACLs are "not
  // supported here", which cp -a, sed -i and tar take in their stride
  // (they fall back to the mode bits), rather than the server's EPERM.
  if (std::strncmp(name, "system.posix_acl_", 17) == 0) return (void)fuse_reply_err(req, EOPNOTSUPP);
  const std::string v(value, size);
  Reply(req, Run(false, [&] { return ops_.SetXattrOf(Obj(ino), name, v, flags); }));
}

void FuseFs::Getxattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size) {
  auto r = Run(
      true, [&] { return ops_.GetXattr(Obj(ino), name); }, false);  // not data: nothing to flush
  if (!r.ok()) return Reply(req, r.status());
  if (size == 0) return (void)fuse_reply_xattr(req, r->size());
  if (r->size() > size) return (void)fuse_reply_err(req, ERANGE);
  fuse_reply_buf(req, r->data(), r->size());
}

void FuseFs::Listxattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
  auto r = Run(
      true, [&] { return ops_.ListXattrs(Obj(ino)); }, false);
  if (!r.ok()) return Reply(req, r.status());
  std::string list;
  for (const std::string& n : *r) list += n + '\0';
  if (size == 0) return (void)fuse_reply_xattr(req, list.size());
  if (list.size() > size) return (void)fuse_reply_err(req, ERANGE);
  fuse_reply_buf(req, list.data(), list.size());
}

void FuseFs::Removexattr(fuse_req_t req, fuse_ino_t ino, const char* name) {
  Reply(req, Run(false, [&] { return ops_.RemoveXattrOf(Obj(ino), name); }));
}

const struct fuse_lowlevel_ops* FuseFs::Ops() {
  static const struct fuse_lowlevel_ops ops = [] {
    struct fuse_lowlevel_ops o {};
    o.init = [](void* fs, struct fuse_conn_info* conn) {
      auto* self = static_cast<FuseFs*>(fs);
      if (self->options_.write_delay > 0) self->flusher_ = std::thread([self] { self->Flusher(); });
      // No writeback cache (a network file system would lose appends and
      // reorder writes with it), no splice games: plain, ordered writes.
      conn->want &= ~static_cast<unsigned>(FUSE_CAP_WRITEBACK_CACHE);
    };
    o.lookup = [](fuse_req_t r, fuse_ino_t p, const char* n) { Fs(r)->Lookup(r, p, n); };
    o.forget = [](fuse_req_t r, fuse_ino_t, uint64_t) { fuse_reply_none(r); };  // nothing kept per node
    o.getattr = [](fuse_req_t r, fuse_ino_t i, struct fuse_file_info*) { Fs(r)->Getattr(r, i); };
    o.setattr = [](fuse_req_t r, fuse_ino_t i, struct stat* a, int s, struct fuse_file_info*) {
      Fs(r)->Setattr(r, i, a, s);
    };
    o.readlink = [](fuse_req_t r, fuse_ino_t i) { Fs(r)->Readlink(r, i); };
    o.mknod = [](fuse_req_t r, fuse_ino_t p, const char* n, mode_t m, dev_t) { Fs(r)->Mknod(r, p, n, m, ""); };
    o.mkdir = [](fuse_req_t r, fuse_ino_t p, const char* n, mode_t m) {
      Fs(r)->Mknod(r, p, n, S_IFDIR | (m & 07777), "");
    };
    o.symlink = [](fuse_req_t r, const char* target, fuse_ino_t p, const char* n) {
      Fs(r)->Mknod(r, p, n, S_IFLNK | 0777, target);
    };
    o.unlink = [](fuse_req_t r, fuse_ino_t p, const char* n) { Fs(r)->Unlink(r, p, n, FileOps::Removing::kNotDir); };
    o.rmdir = [](fuse_req_t r, fuse_ino_t p, const char* n) { Fs(r)->Unlink(r, p, n, FileOps::Removing::kDir); };
    o.rename = [](fuse_req_t r, fuse_ino_t p, const char* n, fuse_ino_t np, const char* nn, unsigned f) {
      Fs(r)->Rename(r, p, n, np, nn, f);
    };
    o.link = [](fuse_req_t r, fuse_ino_t i, fuse_ino_t np, const char* nn) { Fs(r)->Link(r, i, np, nn); };
    o.open = [](fuse_req_t r, fuse_ino_t i, struct fuse_file_info* fi) { Fs(r)->Open(r, i, fi); };
    o.create = [](fuse_req_t r, fuse_ino_t p, const char* n, mode_t m, struct fuse_file_info* fi) {
      Fs(r)->Create(r, p, n, m, fi);
    };
    o.read = [](fuse_req_t r, fuse_ino_t i, size_t s, off_t off, struct fuse_file_info*) { Fs(r)->Read(r, i, s, off); };
    o.write = [](fuse_req_t r, fuse_ino_t i, const char* b, size_t s, off_t off, struct fuse_file_info*) {
      Fs(r)->Write(r, i, b, s, off);
    };
    o.flush = [](fuse_req_t r, fuse_ino_t i, struct fuse_file_info*) { Fs(r)->Flush(r, i); };
    o.release = [](fuse_req_t r, fuse_ino_t i, struct fuse_file_info*) { Fs(r)->Release(r, i); };
    o.fsync = [](fuse_req_t r, fuse_ino_t i, int, struct fuse_file_info*) { Fs(r)->Fsync(r, i); };
    o.opendir = [](fuse_req_t r, fuse_ino_t i, struct fuse_file_info* fi) { Fs(r)->Opendir(r, i, fi); };
    o.readdir = [](fuse_req_t r, fuse_ino_t i, size_t s, off_t off, struct fuse_file_info* fi) {
      Fs(r)->Readdir(r, i, s, off, fi);
    };
    o.releasedir = [](fuse_req_t r, fuse_ino_t i, struct fuse_file_info* fi) { Fs(r)->Releasedir(r, i, fi); };
    o.fsyncdir = [](fuse_req_t r, fuse_ino_t i, int, struct fuse_file_info*) { Fs(r)->Fsync(r, i); };
    o.statfs = [](fuse_req_t r, fuse_ino_t) { Fs(r)->Statfs(r); };
    o.setxattr = [](fuse_req_t r, fuse_ino_t i, const char* n, const char* v, size_t s, int f) {
      Fs(r)->Setxattr(r, i, n, v, s, f);
    };
    o.getxattr = [](fuse_req_t r, fuse_ino_t i, const char* n, size_t s) { Fs(r)->Getxattr(r, i, n, s); };
    o.listxattr = [](fuse_req_t r, fuse_ino_t i, size_t s) { Fs(r)->Listxattr(r, i, s); };
    o.removexattr = [](fuse_req_t r, fuse_ino_t i, const char* n) { Fs(r)->Removexattr(r, i, n); };
    return o;
  }();
  return &ops;
}

}  // namespace crfs::client
