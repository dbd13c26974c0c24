// tenant_names.cc - the object table: every known name of each object the
// tenant's store has seen, learned from listings, from the transactions it
// applies and, for an object it lacks, from btrfs's back references
// (BTRFS_IOC_INO_PATHS). See tenant_store.h.
#include <fcntl.h>
#include <linux/btrfs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <vector>

#include "server/fd.h"
#include "server/fs_credentials.h"
#include "server/log.h"
#include "server/tenant_store.h"

namespace crfs::server {

void TenantStore::Saw(uint64_t dir, uint64_t ino, uint64_t index, const std::string& name, uint8_t type) {
  auto [it, fresh] = table_.try_emplace(ino);
  Entry& e = it->second;
  if (fresh || e.type != type) {  // new, or the number now names another kind of object
    names_ -= fresh ? 0 : 1 + e.more.size();
    if (!fresh) paths_epoch_++;
    e = Entry{dir, index, name, type, {}};
    names_++;
    return;
  }
  if (e.parent == dir && e.name == name) {
    if (index != 0) e.index = index;
    return;
  }
  for (Name& n : e.more) {
    if (n.parent == dir && n.name == name) {
      if (index != 0) n.index = index;
      return;
    }
  }
  paths_epoch_++;
  if (type == CRFS_FT_DIR) {  // a directory has one name: where it was seen last
    e.parent = dir;
    e.index = index;
    e.name = name;
    return;
  }
  e.more.push_back(Name{dir, index, name});
  names_++;
}

void TenantStore::Moved(uint64_t ino, uint64_t from_dir, const std::string& from, uint64_t to_dir,
                        const std::string& to) {
  auto it = table_.find(ino);
  if (it == table_.end()) return;
  paths_epoch_++;
  Entry& e = it->second;
  if (e.parent == from_dir && e.name == from) {
    e.parent = to_dir;
    e.name = to;
    e.index = 0;
    return;
  }
  for (Name& n : e.more) {
    if (n.parent == from_dir && n.name == from) n = Name{to_dir, 0, to};
  }
}

void TenantStore::Forget(uint64_t ino, uint64_t dir, const std::string& name) {
  auto it = table_.find(ino);
  if (it != table_.end()) {
    paths_epoch_++;
    Entry& e = it->second;
    if (e.parent == dir && e.name == name) {
      names_--;
      if (e.more.empty()) {
        table_.erase(it);
      } else {  // another name carries it
        e.parent = e.more.back().parent;
        e.index = e.more.back().index;
        e.name = std::move(e.more.back().name);
        e.more.pop_back();
      }
    } else {
      for (size_t i = 0; i < e.more.size(); i++) {
        if (e.more[i].parent == dir && e.more[i].name == name) {
          e.more.erase(e.more.begin() + static_cast<long>(i));
          names_--;
          break;
        }
      }
    }
  }
  if (auto d = dir_cache_.find(ino); d != dir_cache_.end() && !table_.count(ino)) {
    close(d->second);
    dir_cache_.erase(d);
  }
}

const TenantStore::Entry* TenantStore::Known(uint64_t ino, RequestError* err) {
  if (auto it = table_.find(ino); it != table_.end()) return &it->second;
  if (ino <= CRFS_ROOT_OBJECTID || proto::IsProvisional(ino)) {
    Fail(err, ENOENT, "no object " + std::to_string(ino) + " in tenant " + name_);
    return nullptr;
  }
  if (!LearnNames(ino, err)) return nullptr;
  if (auto it = table_.find(ino); it != table_.end()) return &it->second;
  Fail(err, ENOENT, "no object " + std::to_string(ino) + " in tenant " + name_);
  return nullptr;
}

bool TenantStore::LearnNames(uint64_t ino, RequestError* err) {
  // Learning is not an access decision (those are Reachable's and
  // Permitted's): with crfsd's rights, which the ioctl needs.
  ServerCredentials as_crfsd;
  // The ioctl wants a real (not O_PATH) fd in the subvolume.
  Fd root(openat(root_fd_, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (root.fd < 0) return Errno(err, "open root");
  std::vector<uint64_t> buf(64 << 10 >> 3);  // 64 KiB, 8-byte aligned
  struct btrfs_ioctl_ino_path_args args {};
  args.inum = ino;
  args.size = buf.size() * sizeof(uint64_t);
  args.fspath = reinterpret_cast<uintptr_t>(buf.data());
  if (ioctl(root.fd, BTRFS_IOC_INO_PATHS, &args) != 0) {
    // ENOENT: no such inode in this subvolume.
    if (errno == ENOENT) return Fail(err, ENOENT, "no object " + std::to_string(ino) + " in tenant " + name_);
    return Fail(err, errno == EPERM ? ENOENT : errno,
                "names of object " + std::to_string(ino) + ": " + std::string(strerror(errno)));
  }
  const auto* c = reinterpret_cast<const btrfs_data_container*>(buf.data());
  const char* base = reinterpret_cast<const char*>(c->val);
  const char* end = reinterpret_cast<const char*>(buf.data()) + args.size;
  for (uint32_t i = 0; i < c->elem_cnt && base + i * sizeof(uint64_t) < end; i++) {
    const uint64_t off = c->val[i];
    if (off >= static_cast<uint64_t>(end - base)) continue;
    const char* p = base + off;
    const std::string path(p, strnlen(p, static_cast<size_t>(end - p)));
    // Walk it down from the root, one listed directory at a time: each
    // listing learns its entries (with their indexes), and the step checks
    // the inode number it leads to.
    uint64_t dir = CRFS_ROOT_OBJECTID;
    size_t pos = 0;
    bool ok = true;
    while (ok) {
      const size_t slash = path.find('/', pos);
      const std::string comp = path.substr(pos, slash == std::string::npos ? std::string::npos : slash - pos);
      const bool last = slash == std::string::npos;
      if (comp.empty() || comp == "." || comp == ".." || comp.size() > CRFS_MAX_NAME ||
          (dir == CRFS_ROOT_OBJECTID && comp == kUndoDir)) {
        ok = false;  // crfsd's undo area, or nothing a tenant can name
        break;
      }
      RequestError e;
      const int64_t child = Lookup(dir, comp, &e);
      if (child <= 0 || (last && static_cast<uint64_t>(child) != ino)) {
        ok = false;
        break;
      }
      auto known = table_.find(static_cast<uint64_t>(child));
      bool named = false;
      if (known != table_.end()) {
        named = known->second.parent == dir && known->second.name == comp && known->second.index != 0;
        for (const Name& n : known->second.more) named = named || (n.parent == dir && n.name == comp && n.index != 0);
      }
      if (!named) {
        int dfd = DirFd(dir, 0, &e);
        std::vector<proto::Item> items;
        if (dfd < 0 || !DirItems(dfd, dir, &items, &e)) {
          ok = false;
          break;
        }
      }
      if (last) break;
      dir = static_cast<uint64_t>(child);
      pos = slash + 1;
    }
  }
  return true;
}

std::vector<TenantStore::Name> TenantStore::NamesOf(uint64_t ino, uint32_t nlink, bool is_dir) {
  std::vector<Name> names;
  auto collect = [&] {
    names.clear();
    auto it = table_.find(ino);
    if (it == table_.end()) return;
    names.push_back(Name{it->second.parent, it->second.index, it->second.name});
    for (const Name& n : it->second.more) names.push_back(n);
  };
  auto check = [&] {  // drop names that no longer lead to ino
    std::vector<Name> stale;
    for (const Name& n : names) {
      RequestError e;
      if (Lookup(n.parent, n.name, &e) != static_cast<int64_t>(ino)) stale.push_back(n);
    }
    for (const Name& n : stale) Forget(ino, n.parent, n.name);
    collect();
  };
  collect();
  // One name and one link: the name OpenObject just reached it by.
  if (names.size() == 1 && (is_dir || nlink == 1) && names[0].index != 0) return names;
  check();
  const size_t want = is_dir ? 1 : nlink;
  bool unindexed = false;
  for (const Name& n : names) unindexed = unindexed || n.index == 0;
  if (names.size() < want || unindexed) {
    RequestError e;
    if (LearnNames(ino, &e)) collect();
  }
  return names;
}

void TenantStore::TrimTables() {
  if (names_ > max_known_) {
    const size_t keep = max_known_ / 4 * 3;
    const size_t before = table_.size();
    for (auto it = table_.begin(); it != table_.end() && names_ > keep;) {
      if (held_.count(it->first)) {  // objects sessions hold keep their names (cheap: bounded by holders)
        ++it;
        continue;
      }
      names_ -= 1 + it->second.more.size();
      if (auto d = dir_cache_.find(it->first); d != dir_cache_.end()) {
        close(d->second);
        dir_cache_.erase(d);
      }
      hidden_.erase(it->first);
      it = table_.erase(it);
    }
    Log(LogLevel::kInfo, "tenant %s: object table over %zu names: %zu of %zu objects dropped (relearned on demand)",
        name_.c_str(), max_known_, before - table_.size(), before);
  }
  if (hidden_.size() > max_known_) hidden_.clear();  // relearned with the next listing of each directory
  if (changed_.size() > max_known_) {
    changed_.clear();
    changed_floor_ = Generation();
  }
}

}  // namespace crfs::server
