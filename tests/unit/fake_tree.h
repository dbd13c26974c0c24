// fake_tree.h - a tenant tree in memory that implements TreeView the way
// TenantStore does (tenant_store.cc builds the same items), for the
// planner's unit tests and fuzz target. A test seam only: crfsd plans
// against TenantStore.
//
//   /            256
//   /a           257 dir      /a/f   258 file (100 bytes, user.color)
//   /a/b         259 dir      /a/b/g 260 file
//   /h           261 file, also named /a/h2
//   /s           262 symlink
//
// Not thread-safe.
#pragma once

#include <sys/stat.h>

#include <cerrno>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "proto/checksum.h"
#include "server/commit_plan.h"

namespace crfs::server::testing {

using proto::DirEntries;
using proto::DirEntry;
using proto::Item;
using proto::ItemRange;
using proto::Key;

class FakeTree : public TreeView {
 public:
  struct Obj {
    proto::InodeItem inode;
    uint64_t parent = 0;
    std::string name;
    std::map<std::string, std::pair<uint64_t, uint64_t>> entries;  // name -> (ino, index)
    std::map<std::string, std::string> xattrs;
  };
  std::map<uint64_t, Obj> objs;
  std::map<uint64_t, uint64_t> changed;

  FakeTree() {
    Add(256, 256, "..", S_IFDIR | 0755);
    Add(257, 256, "a", S_IFDIR | 0755);
    Add(258, 257, "f", S_IFREG | 0644, 100);
    Add(259, 257, "b", S_IFDIR | 0755);
    Add(260, 259, "g", S_IFREG | 0644);
    Add(261, 256, "h", S_IFREG | 0644);
    Link(261, 257, "h2");
    Add(262, 256, "s", S_IFLNK | 0777, 4);
    objs[258].xattrs["user.color"] = "blue";
  }
  void Add(uint64_t ino, uint64_t parent, const std::string& name, uint32_t mode, uint64_t size = 0) {
    Obj& o = objs[ino];
    o.inode.mode = mode;
    o.inode.nlink = 1;
    o.inode.size = size;
    o.inode.ctime = {1000, 1};
    o.parent = parent;
    o.name = name;
    if (ino != parent) Link(ino, parent, name, false);
  }
  void Link(uint64_t ino, uint64_t dir, const std::string& name, bool count = true) {
    objs[dir].entries[name] = {ino, 2 + objs[dir].entries.size()};
    objs[dir].inode.size += 2 * name.size();
    if (count) objs[ino].inode.nlink++;
  }
  uint8_t Ft(uint64_t ino) {
    const uint32_t m = objs[ino].inode.mode;
    return S_ISDIR(m) ? CRFS_FT_DIR : S_ISLNK(m) ? CRFS_FT_SYMLINK : CRFS_FT_REG_FILE;
  }
  std::vector<Item> All(uint64_t ino) {
    Obj& o = objs.at(ino);
    std::vector<Item> v{Item{{ino, CRFS_INODE_ITEM_KEY, 0}, o.inode}};
    // An object without a parent has no name (unlinked while held open).
    if (o.parent != 0) v.push_back(Item{{ino, CRFS_INODE_REF_KEY, o.parent}, proto::InodeRefs{{{2, o.name}}}});
    std::map<uint64_t, proto::Xattrs> x;
    for (const auto& [n, val] : o.xattrs) x[proto::BtrfsNameHash(n)].entries.push_back({n, val});
    for (auto& [h, e] : x) v.push_back(Item{{ino, CRFS_XATTR_ITEM_KEY, h}, e});
    std::map<uint64_t, DirEntries> by_hash;
    std::map<uint64_t, DirEntries> by_index;
    for (const auto& [n, e] : o.entries) {
      DirEntry d{{e.first, CRFS_INODE_ITEM_KEY, 0}, 0, Ft(e.first), n};
      by_hash[proto::BtrfsNameHash(n)].entries.push_back(d);
      by_index[e.second].entries.push_back(d);
    }
    for (auto& [h, e] : by_hash) v.push_back(Item{{ino, CRFS_DIR_ITEM_KEY, h}, e});
    for (auto& [i, e] : by_index) v.push_back(Item{{ino, CRFS_DIR_INDEX_KEY, i}, e});
    if (S_ISREG(o.inode.mode) && o.inode.size) {
      v.push_back(Item{{ino, CRFS_EXTENT_DATA_KEY, 0},
                       proto::ExtentData{0, CRFS_EXTENT_REG, static_cast<uint32_t>(o.inode.size), {}, {}}});
    }
    if (S_ISLNK(o.inode.mode)) {
      proto::ExtentData e{0, CRFS_EXTENT_INLINE, 4, {}, {'d', 'e', 's', 't'}};
      e.csums = proto::DataBlockCrcs(e.data);
      v.push_back(Item{{ino, CRFS_EXTENT_DATA_KEY, 0}, e});
    }
    return v;
  }
  bool Items(uint64_t ino, const Key& from, const Key& to, std::vector<Item>* out, RequestError* err) override {
    if (!objs.count(ino)) {
      *err = {ENOENT, "no such object"};
      return false;
    }
    for (auto& it : All(ino)) {
      if (!(it.key < from) && !(to < it.key)) out->push_back(std::move(it));
    }
    return true;
  }
  bool Shape(uint64_t ino, uint32_t* mode, uint32_t* nlink, RequestError* err) override {
    if (!objs.count(ino)) {
      *err = {ENOENT, "no such object"};
      return false;
    }
    *mode = objs[ino].inode.mode;
    *nlink = objs[ino].inode.nlink;
    return true;
  }
  uint64_t ParentOf(uint64_t ino) override { return objs.count(ino) ? objs[ino].parent : 0; }
  uint64_t ChangedAt(uint64_t ino) override { return changed.count(ino) ? changed[ino] : 0; }
  // Names taken by objects the listings do not show (nested subvolumes).
  std::set<std::pair<uint64_t, std::string>> hidden;
  bool Hidden(uint64_t dir, const std::string& name) override { return hidden.count({dir, name}) > 0; }
  bool HasHidden(uint64_t dir) override {
    auto it = hidden.lower_bound({dir, ""});
    return it != hidden.end() && it->first == dir;
  }

  // Ranges that make `name` in `dir` name `obj` (0: nothing), as a client builds them.
  std::vector<ItemRange> Entry(uint64_t dir, const std::string& name, uint64_t obj, uint8_t ft, uint64_t prov_index) {
    const uint64_t h = proto::BtrfsNameHash(name);
    ItemRange item{{dir, CRFS_DIR_ITEM_KEY, h}, {dir, CRFS_DIR_ITEM_KEY, h}, {}};
    if (obj) item.items.push_back(Item{item.min, DirEntries{{DirEntry{{obj, CRFS_INODE_ITEM_KEY, 0}, 0, ft, name}}}});
    std::vector<ItemRange> v{item};
    auto old = objs[dir].entries.find(name);
    if (old != objs[dir].entries.end()) {
      const Key k{dir, CRFS_DIR_INDEX_KEY, old->second.second};
      v.push_back(ItemRange{k, k, {}});
    }
    if (obj) {
      const Key k{dir, CRFS_DIR_INDEX_KEY, prov_index};
      v.push_back(ItemRange{k, k, {Item{k, DirEntries{{DirEntry{{obj, CRFS_INODE_ITEM_KEY, 0}, 0, ft, name}}}}}});
    }
    return v;
  }
};

}  // namespace crfs::server::testing
