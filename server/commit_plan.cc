#include "server/commit_plan.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <deque>
#include <optional>
#include <string_view>
#include <tuple>

#include "proto/snoop.h"

namespace crfs::server {
namespace {

using proto::Item;
using proto::Key;

RequestError Err(int e, std::string text) { return RequestError{e, std::move(text)}; }
std::string K(const Key& k) { return proto::FormatKey(k); }
std::string O(uint64_t id) { return K(Key{id, CRFS_INODE_ITEM_KEY, 0}); }
bool Covers(const proto::ItemRange& r, const Key& k) { return !(k < r.min) && !(r.max < k); }

template <typename F>
Op MakeOp(Op::Kind kind, F&& set) {
  Op op;
  op.kind = kind;
  set(op);
  return op;
}

struct Slot {
  uint64_t dir = 0;
  std::string name;
  auto operator<=>(const Slot&) const = default;
};

// A directory entry as the planner compares it (transid is the server's).
struct Target {
  uint64_t obj = 0;
  uint8_t type = 0;
  bool operator==(const Target&) const = default;
};

struct DataRange {
  uint64_t first = 0, last = 0;  // bytes [first, last]
  std::vector<const proto::ExtentData*> items;
  std::vector<uint64_t> offsets;
};

struct Object {
  bool is_new = false;
  std::optional<proto::InodeItem> current;  // existing objects, once fetched
  const proto::InodeItem* listed = nullptr;
  bool inode_removed = false;
  std::vector<Slot> removed;
  std::vector<std::pair<Slot, uint8_t>> added;
  std::map<std::string, std::string> xattr_set;  // name -> value
  std::set<std::string> xattr_removed;
  std::vector<DataRange> data;
  std::vector<std::pair<uint64_t, const proto::ExtentData*>> new_extents;  // new objects
  std::set<Slot> refs;                                                     // new objects: INODE_REFs listed
  bool has_refs = false;
  int64_t dir_name_bytes = 0;  // change of the directory's btrfs size (2 x name bytes)
  uint64_t new_entries = 0;    // entries added to a new directory
  bool deleted = false;
  bool has_range = false;
  uint8_t removed_type = 0;  // the type its removed entries report
};

struct Planner {
  const Transaction& t;
  const IdMap& ids;
  TreeView* view;
  Plan* plan;
  std::map<uint64_t, Object> objs;
  // Per directory and name: the entry now and after (from DIR_ITEM ranges).
  std::map<Slot, std::pair<std::optional<Target>, std::optional<Target>>> changes;
  // The same, as DIR_INDEX ranges state it: (dir, name, obj) removed / added.
  std::multiset<std::tuple<uint64_t, std::string, uint64_t>> index_removed, index_added, item_removed, item_added;
  // Per directory: entries removed and added (from `changes`).
  std::map<uint64_t, std::pair<int64_t, int64_t>> entry_changes;
  // A directory's items, read once per plan (every range of it is cut from
  // them), and how many items the plan has read in all: a transaction costs
  // bounded work whatever its ranges ask for.
  std::map<uint64_t, std::vector<Item>> dir_items;
  std::deque<std::vector<Item>> fetched;  // items of other ranges, kept for the plan's pointers
  size_t items_read = 0;
  static constexpr size_t kMaxItemsRead = 8u << 20;

  // The items the tree holds in `r` now; the pointers stay valid for the plan.
  RequestError Fetch(uint64_t id, const proto::ItemRange& r, std::vector<const Item*>* out) {
    RequestError err;
    const bool dir_keys = !(r.max < Key{id, CRFS_DIR_ITEM_KEY, 0}) && !(Key{id, CRFS_DIR_INDEX_KEY, ~0ull} < r.min);
    auto cached = dir_items.find(id);
    if (cached == dir_items.end() && dir_keys) {
      std::vector<Item> all;
      if (!view->Items(id, Key{id, 0, 0}, Key{id, 0xff, ~0ull}, &all, &err)) return err;
      items_read += all.size();
      cached = dir_items.emplace(id, std::move(all)).first;
    }
    if (cached != dir_items.end()) {
      const auto& all = cached->second;
      auto lo =
          std::lower_bound(all.begin(), all.end(), r.min, [](const Item& it, const Key& k) { return it.key < k; });
      for (; lo != all.end() && !(r.max < lo->key); ++lo) out->push_back(&*lo);
    } else {
      std::vector<Item>& got = fetched.emplace_back();
      if (!view->Items(id, r.min, r.max, &got, &err)) return err;
      std::erase_if(got, [&](const Item& it) { return !Covers(r, it.key); });
      items_read += got.size();
      for (const Item& it : got) out->push_back(&it);
    }
    if (items_read > kMaxItemsRead) {
      return Err(E2BIG, "transaction reads more than " + std::to_string(kMaxItemsRead) + " items; split it");
    }
    return {};
  }

  RequestError Current(uint64_t id, const proto::InodeItem** out) {
    Object& o = objs[id];
    if (!o.current) {
      std::vector<Item> items;
      RequestError err;
      if (!view->Items(id, Key{id, CRFS_INODE_ITEM_KEY, 0}, Key{id, CRFS_INODE_ITEM_KEY, 0}, &items, &err)) return err;
      if (items.empty() || !std::holds_alternative<proto::InodeItem>(items[0].body)) {
        return Err(ENOENT, O(id) + ": no such object");
      }
      o.current = std::get<proto::InodeItem>(items[0].body);
    }
    *out = &*o.current;
    return {};
  }

  RequestError Stale(uint64_t id) {
    const uint64_t at = view->ChangedAt(id);
    if (at > t.base_generation) {
      return Err(ESTALE, O(id) + " changed at generation " + std::to_string(at) + ", after the transaction's base " +
                             std::to_string(t.base_generation));
    }
    return {};
  }

  RequestError NewObjectRange(const proto::ItemRange& r) {
    const uint64_t id = r.min.objectid;
    Object& o = objs[id];
    o.is_new = true;
    o.has_range = true;
    for (const Item& it : r.items) {
      switch (it.key.type) {
        case CRFS_INODE_ITEM_KEY: o.listed = &std::get<proto::InodeItem>(it.body); break;
        case CRFS_INODE_REF_KEY:
          o.has_refs = true;
          for (const auto& ref : std::get<proto::InodeRefs>(it.body).refs) o.refs.insert(Slot{it.key.offset, ref.name});
          break;
        case CRFS_XATTR_ITEM_KEY:
          for (const auto& x : std::get<proto::Xattrs>(it.body).entries) o.xattr_set[x.name] = x.value;
          break;
        case CRFS_DIR_ITEM_KEY:
          for (const auto& e : std::get<proto::DirEntries>(it.body).entries) {
            changes[Slot{id, e.name}].second = Target{e.location.objectid, e.type};
            item_added.emplace(id, e.name, e.location.objectid);
          }
          break;
        case CRFS_DIR_INDEX_KEY:
          if (!proto::IsProvisional(it.key.offset))
            return Err(EINVAL, K(it.key) + ": a new directory's index must be provisional");
          for (const auto& e : std::get<proto::DirEntries>(it.body).entries) {
            index_added.emplace(id, e.name, e.location.objectid);
            plan->new_indexes[it.key.offset] = {id, e.name};
          }
          break;
        case CRFS_EXTENT_DATA_KEY:
          o.new_extents.emplace_back(it.key.offset, &std::get<proto::ExtentData>(it.body));
          break;
        default: return Err(EINVAL, K(it.key) + ": item type not supported in a transaction");
      }
    }
    return {};
  }

  RequestError ExistingObjectRange(const proto::ItemRange& r) {
    const uint64_t id = r.min.objectid;
    if (auto e = Stale(id); e.err) return e;
    std::vector<const Item*> cur, items;
    if (auto e = Fetch(id, r, &cur); e.err) return e;
    items.reserve(r.items.size());
    for (const Item& it : r.items) items.push_back(&it);
    Object& o = objs[id];
    o.has_range = true;
    plan->changed.insert(id);
    if (!o.current && !cur.empty() && cur[0]->key.type == CRFS_INODE_ITEM_KEY) {
      o.current = std::get<proto::InodeItem>(cur[0]->body);  // already here: no second look
    }
    const proto::InodeItem* inode = nullptr;
    if (auto e = Current(id, &inode); e.err) return e;
    const bool is_dir = S_ISDIR(inode->mode), is_reg = S_ISREG(inode->mode);

    auto of_type = [](const std::vector<const Item*>& items, uint8_t type) {
      std::vector<const Item*> v;
      for (const Item* it : items) {
        if (it->key.type == type) v.push_back(it);
      }
      return v;
    };
    for (const Item& it : r.items) {
      switch (it.key.type) {
        case CRFS_INODE_ITEM_KEY:
        case CRFS_INODE_REF_KEY:
        case CRFS_XATTR_ITEM_KEY:
        case CRFS_EXTENT_DATA_KEY: break;
        case CRFS_DIR_ITEM_KEY:
        case CRFS_DIR_INDEX_KEY:
          if (!is_dir) return Err(ENOTDIR, K(it.key) + ": not a directory");
          break;
        default: return Err(EINVAL, K(it.key) + ": item type not supported in a transaction");
      }
    }
    // INODE_ITEM: listed = setattr; covered but not listed = the object goes.
    if (Covers(r, Key{id, CRFS_INODE_ITEM_KEY, 0})) {
      auto listed = of_type(items, CRFS_INODE_ITEM_KEY);
      if (!listed.empty()) {
        o.listed = &std::get<proto::InodeItem>(listed[0]->body);
      } else {
        o.inode_removed = true;
      }
    }
    // INODE_REF: derived from directory entries; listed ones must be the current ones.
    {
      auto a = of_type(cur, CRFS_INODE_REF_KEY), b = of_type(items, CRFS_INODE_REF_KEY);
      bool same = a.size() == b.size();
      for (size_t i = 0; same && i < a.size(); i++) same = *a[i] == *b[i];
      if (!same && !o.inode_removed) {
        return Err(EINVAL, O(id) + ": INODE_REF items are derived from directory entries; send the current ones");
      }
    }
    // XATTR_ITEM: per name.
    {
      std::map<std::string, std::string> before, after;
      for (const Item* it : of_type(cur, CRFS_XATTR_ITEM_KEY)) {
        for (const auto& x : std::get<proto::Xattrs>(it->body).entries) before[x.name] = x.value;
      }
      for (const Item* it : of_type(items, CRFS_XATTR_ITEM_KEY)) {
        for (const auto& x : std::get<proto::Xattrs>(it->body).entries) after[x.name] = x.value;
      }
      if ((!before.empty() || !after.empty()) && !is_dir && !is_reg) {
        return Err(EPERM, O(id) + ": user.* xattrs only on regular files and directories");
      }
      for (const auto& [n, v] : after) {
        auto b = before.find(n);
        if (b == before.end() || b->second != v) o.xattr_set[n] = v;
      }
      for (const auto& [n, v] : before) {
        if (!after.count(n)) o.xattr_removed.insert(n);
      }
    }
    // DIR_ITEM: names now and after.
    {
      // Names are views into items that outlive the plan's use of them.
      std::map<std::string_view, Target> before, after;
      for (const Item* it : of_type(cur, CRFS_DIR_ITEM_KEY)) {
        for (const auto& e : std::get<proto::DirEntries>(it->body).entries) {
          before[e.name] = {e.location.objectid, e.type};
        }
      }
      for (const Item* it : of_type(items, CRFS_DIR_ITEM_KEY)) {
        for (const auto& e : std::get<proto::DirEntries>(it->body).entries) {
          after[e.name] = {e.location.objectid, e.type};
        }
      }
      for (const auto& [n, tgt] : before) {
        auto a = after.find(n);
        if (a != after.end() && a->second == tgt) continue;
        changes[Slot{id, std::string(n)}].first = tgt;
        item_removed.emplace(id, std::string(n), tgt.obj);
      }
      for (const auto& [n, tgt] : after) {
        auto b = before.find(n);
        if (b != before.end() && b->second == tgt) continue;
        changes[Slot{id, std::string(n)}].second = tgt;
        item_added.emplace(id, std::string(n), tgt.obj);
      }
    }
    // DIR_INDEX: existing indexes are the server's; new ones provisional.
    {
      std::map<uint64_t, const proto::DirEntry*> before;
      for (const Item* it : of_type(cur, CRFS_DIR_INDEX_KEY)) {
        before[it->key.offset] = &std::get<proto::DirEntries>(it->body).entries.at(0);
      }
      for (const Item* it : of_type(items, CRFS_DIR_INDEX_KEY)) {
        const auto& e = std::get<proto::DirEntries>(it->body).entries.at(0);
        if (proto::IsProvisional(it->key.offset)) {
          index_added.emplace(id, e.name, e.location.objectid);
          plan->new_indexes[it->key.offset] = {id, e.name};
          continue;
        }
        auto b = before.find(it->key.offset);
        if (b == before.end() || b->second->name != e.name || b->second->location.objectid != e.location.objectid ||
            b->second->type != e.type) {
          return Err(EINVAL, K(it->key) + ": not the server's entry (new entries take a provisional index)");
        }
        before.erase(b);
      }
      for (const auto& [index, e] : before) index_removed.emplace(id, e->name, e->location.objectid);
    }
    // EXTENT_DATA of a regular file: the listed items tile the range's bytes.
    if (!is_reg) {
      for (const Item* it : of_type(items, CRFS_EXTENT_DATA_KEY)) {
        return Err(EINVAL, K(it->key) + ": data of a " + (is_dir ? "directory" : "symlink") + " is the server's");
      }
      if (!of_type(cur, CRFS_EXTENT_DATA_KEY).empty() && !o.inode_removed) {
        return Err(EINVAL, O(id) + ": a symlink's target cannot change");
      }
    } else if (!(r.max < Key{id, CRFS_EXTENT_DATA_KEY, 0}) && !(Key{id, CRFS_EXTENT_DATA_KEY, ~0ull} < r.min) &&
               !o.inode_removed) {
      DataRange d;
      d.first = r.min < Key{id, CRFS_EXTENT_DATA_KEY, 0} ? 0 : r.min.offset;
      d.last = Key{id, CRFS_EXTENT_DATA_KEY, ~0ull} < r.max ? ~0ull : r.max.offset;
      uint64_t at = d.first;
      for (const Item* it : of_type(items, CRFS_EXTENT_DATA_KEY)) {
        const auto& ext = std::get<proto::ExtentData>(it->body);
        if (ext.type == CRFS_EXTENT_REG) return Err(EINVAL, K(it->key) + ": REG extents are the server's");
        if (it->key.offset != at) return Err(EINVAL, K(it->key) + ": extents must tile the range without gaps");
        if (ext.len == 0) return Err(EINVAL, K(it->key) + ": empty extent");
        d.items.push_back(&ext);
        d.offsets.push_back(it->key.offset);
        at = it->key.offset + ext.len;
      }
      if (!d.items.empty() && d.last != ~0ull && at != d.last + 1) {
        return Err(EINVAL, O(id) + ": extents do not end at the range's end");
      }
      if (!d.items.empty() && d.last == ~0ull) d.last = at - 1;
      o.data.push_back(std::move(d));
    }
    return {};
  }

  RequestError Run() {
    for (const auto& r : t.ranges) {
      auto e = proto::IsProvisional(r.min.objectid) ? NewObjectRange(r) : ExistingObjectRange(r);
      if (e.err) return e;
    }
    if (item_removed != index_removed || item_added != index_added) {
      return Err(EINVAL, "DIR_ITEM and DIR_INDEX changes disagree (every entry added or removed needs both)");
    }
    // Names per object.
    for (const auto& [slot, c] : changes) {
      const auto& [before, after] = c;
      if (before && after && before->obj == after->obj && before->type != after->type) {
        return Err(EINVAL, O(slot.dir) + ": entry '" + slot.name + "' changes type");
      }
      if (before) {
        objs[before->obj].removed.push_back(slot);
        objs[before->obj].removed_type = before->type;
      }
      if (after && !before && !proto::IsProvisional(slot.dir) && view->Hidden(slot.dir, slot.name)) {
        return Err(EEXIST, O(slot.dir) + ": '" + slot.name + "' is taken by an object that is not the tenant's");
      }
      if (after) objs[after->obj].added.emplace_back(slot, after->type);
      auto& counts = entry_changes[slot.dir];
      counts.first += before ? 1 : 0;
      counts.second += after ? 1 : 0;
      auto& d = objs[slot.dir];
      d.dir_name_bytes += 2 * ((after ? 1 : 0) - (before ? 1 : 0)) * static_cast<int64_t>(slot.name.size());
      if (after && proto::IsProvisional(slot.dir)) d.new_entries++;
    }
    for (auto& [id, o] : objs) {
      if (proto::IsProvisional(id)) {
        if (auto e = CheckNew(id, o); e.err) return e;
      } else if (auto e = CheckExisting(id, o); e.err) {
        return e;
      }
    }
    if (auto e = CheckNoCycles(); e.err) return e;
    size_t created = 0;
    for (const auto& [id, o] : objs) created += o.is_new ? 1 : 0;
    if (created + plan->new_indexes.size() > t.max_reply_map) {
      return Err(E2BIG, "more new objects and entries than this session's TRANS_REPLY can map (" +
                            std::to_string(t.max_reply_map) + " with its max_payload); split it");
    }
    if (auto e = Order(); e.err) return e;
    if (plan->created.size() + plan->new_indexes.size() > t.max_reply_map) {
      return Err(E2BIG, "more new objects and entries than this session's TRANS_REPLY can map (" +
                            std::to_string(t.max_reply_map) + " with its max_payload); split it");
    }
    return {};
  }

  RequestError CheckNew(uint64_t id, Object& o) {
    if (!o.is_new || !o.listed) return Err(EINVAL, O(id) + ": provisional object without its INODE_ITEM");
    const proto::InodeItem& in = *o.listed;
    const uint32_t type = in.mode & S_IFMT;
    if (type != S_IFREG && type != S_IFDIR && type != S_IFLNK) {
      return Err(EPERM, O(id) + ": only regular files, directories and symlinks can be created");
    }
    if (in.flags != 0 || in.rdev != 0) return Err(EINVAL, O(id) + ": flags and rdev must be 0");
    if (!o.removed.empty()) return Err(EINVAL, O(id) + ": a new object cannot lose a name");
    if (o.added.empty()) return Err(EINVAL, O(id) + ": a new object needs a name");
    if (in.nlink != (type == S_IFDIR ? 1 : o.added.size())) {
      return Err(EINVAL, O(id) + ": nlink " + std::to_string(in.nlink) + ", but the transaction gives it " +
                             std::to_string(o.added.size()) + " name(s)");
    }
    if (type == S_IFDIR && o.added.size() != 1) return Err(EPERM, O(id) + ": a directory has exactly one name");
    if (o.has_refs) {
      std::set<Slot> names;
      for (const auto& [s, ty] : o.added) names.insert(s);
      if (names != o.refs) return Err(EINVAL, O(id) + ": INODE_REF items do not match the entries naming it");
    }
    if (type == S_IFDIR) {
      if (static_cast<int64_t>(in.size) != o.dir_name_bytes) {
        return Err(EINVAL, O(id) + ": directory size " + std::to_string(in.size) + ", the server computes " +
                               std::to_string(o.dir_name_bytes));
      }
      if (!o.new_extents.empty()) return Err(EINVAL, O(id) + ": a directory has no data");
    } else if (o.new_entries != 0 || o.dir_name_bytes != 0) {
      return Err(ENOTDIR, O(id) + ": entries in an object that is not a directory");
    }
    if (type == S_IFLNK) {
      if (o.new_extents.size() != 1 || o.new_extents[0].first != 0 ||
          o.new_extents[0].second->type != CRFS_EXTENT_INLINE) {
        return Err(EINVAL, O(id) + ": a symlink is one INLINE extent at offset 0 holding its target");
      }
      const auto& d = o.new_extents[0].second->data;
      if (d.empty() || d.size() >= 4096 || std::find(d.begin(), d.end(), 0) != d.end()) {
        return Err(EINVAL, O(id) + ": symlink target must be 1..4095 bytes without NUL");
      }
      if (in.size != d.size()) return Err(EINVAL, O(id) + ": symlink size must be its target's length");
      if (!o.xattr_set.empty()) return Err(EPERM, O(id) + ": user.* xattrs only on regular files and directories");
    }
    if (type == S_IFREG) {
      uint64_t end = 0;
      for (const auto& [off, ext] : o.new_extents) {
        if (ext->type == CRFS_EXTENT_REG) return Err(EINVAL, O(id) + ": REG extents are the server's");
        if (off < end) return Err(EINVAL, O(id) + ": extents overlap at " + std::to_string(off));
        end = off + ext->len;
      }
      if (end > in.size) return Err(EINVAL, O(id) + ": extents end past the size");
    }
    return {};
  }

  RequestError CheckExisting(uint64_t id, Object& o) {
    const proto::InodeItem* cur = nullptr;
    if (!o.has_range && !o.current && o.added.empty()) {
      // Only loses names (rm -r's files): each is an unlink of an entry the
      // server listed itself, whatever the link count; the entry's type is
      // all it takes. The object goes from the plan's view; other names it
      // may have elsewhere are untouched.
      proto::InodeItem shape;
      shape.mode = proto::ModeOfFileType(o.removed_type);
      shape.nlink = static_cast<uint32_t>(o.removed.size());
      o.current = shape;
    }
    if (!o.has_range && !o.current) {
      // Only names change: the type and link count are all it takes.
      proto::InodeItem shape;
      RequestError err;
      if (!view->Shape(id, &shape.mode, &shape.nlink, &err)) return err;
      o.current = shape;
    }
    if (auto e = Current(id, &cur); e.err) return e;
    const bool is_dir = S_ISDIR(cur->mode);
    // An object without names: removed while a session holds it open, and
    // reached through that session. Its data and attributes may change;
    // names and entries it cannot get back (link(2) of an unlinked file
    // fails too).
    const bool nameless = id != CRFS_ROOT_OBJECTID && cur->nlink == 0;
    if (nameless && (!o.removed.empty() || !o.added.empty() || entry_changes.count(id))) {
      return Err(ENOENT, O(id) + " has no name (removed while open): it gets no names or entries");
    }
    if (!o.removed.empty() || !o.added.empty()) {
      if (id == CRFS_ROOT_OBJECTID) return Err(EPERM, "the root directory has no name to change");
      if (auto e = Stale(id); e.err) return e;
      plan->changed.insert(id);
    }
    for (const auto& [slot, type] : o.added) {
      if (type != proto::FileTypeOfMode(cur->mode)) {
        return Err(EINVAL, O(slot.dir) + ": entry '" + slot.name + "' does not name " + O(id) + "'s type");
      }
    }
    const int64_t names = nameless ? 0
                                   : static_cast<int64_t>(is_dir ? 1 : cur->nlink) +
                                         static_cast<int64_t>(o.added.size() - o.removed.size());
    if (id != CRFS_ROOT_OBJECTID && is_dir && names > 1) return Err(EPERM, O(id) + ": a directory has one name");
    if (names < 0) return Err(EINVAL, O(id) + ": loses more names than it has");
    o.deleted = id != CRFS_ROOT_OBJECTID && names == 0 && !nameless;
    if (o.inode_removed && nameless) return Err(EINVAL, O(id) + ": INODE_ITEM removed: CLOSE ends an unnamed object");
    if (o.inode_removed && !o.deleted) return Err(EINVAL, O(id) + ": INODE_ITEM removed, but the object keeps a name");
    if (o.deleted && is_dir) {
      // Its entries now: from the listing this plan already read (rm -r
      // names every directory it removes), else from the view.
      size_t now = 0;
      if (auto cached = dir_items.find(id); cached != dir_items.end()) {
        now = static_cast<size_t>(std::count_if(cached->second.begin(), cached->second.end(),
                                                [](const Item& it) { return it.key.type == CRFS_DIR_INDEX_KEY; }));
      } else {
        std::vector<Item> entries;
        RequestError err;
        if (!view->Items(id, Key{id, CRFS_DIR_INDEX_KEY, 0}, Key{id, CRFS_DIR_INDEX_KEY, ~0ull}, &entries, &err)) {
          return err;
        }
        now = entries.size();
      }
      // A nested subvolume or snapshot (the tenant is not shown it) keeps
      // the directory: removing it would take the admin's subvolume along.
      if (view->HasHidden(id)) {
        return Err(ENOTEMPTY, O(id) + ": directory holds entries that are not the tenant's (a nested subvolume)");
      }
      const auto& [gone, come] = entry_changes[id];
      const int64_t left = static_cast<int64_t>(now) + come - gone;
      if (left != 0) return Err(ENOTEMPTY, O(id) + ": directory removed but " + std::to_string(left) + " entries stay");
    }
    if (o.deleted) {
      if (o.listed) return Err(EINVAL, O(id) + ": INODE_ITEM listed for an object whose last name goes");
      return {};
    }
    if (o.listed) {
      const proto::InodeItem& in = *o.listed;
      auto derived = [&](const char* field) {
        return Err(EINVAL, O(id) + ": " + field + " is the server's (derived) and differs from its value");
      };
      if ((in.mode & S_IFMT) != (cur->mode & S_IFMT)) return Err(EINVAL, O(id) + ": file type cannot change");
      if (in.nlink != static_cast<uint32_t>(names)) {
        return Err(EINVAL,
                   O(id) + ": nlink " + std::to_string(in.nlink) + ", the server computes " + std::to_string(names));
      }
      if (is_dir && static_cast<int64_t>(in.size) != static_cast<int64_t>(cur->size) + o.dir_name_bytes) {
        return Err(EINVAL, O(id) + ": directory size " + std::to_string(in.size) + ", the server computes " +
                               std::to_string(static_cast<int64_t>(cur->size) + o.dir_name_bytes));
      }
      if (in.nbytes != cur->nbytes) return derived("nbytes");
      if (in.generation != cur->generation) return derived("generation");
      if (in.transid != cur->transid) return derived("transid");
      if (in.sequence != cur->sequence) return derived("sequence");
      if (in.ctime != cur->ctime) return derived("ctime");
      if (in.otime != cur->otime) return derived("otime");
      if (in.flags != cur->flags) return derived("flags");
      if (in.rdev != cur->rdev) return derived("rdev");
      if (S_ISLNK(cur->mode) && (in.mode != cur->mode || in.size != cur->size)) {
        return Err(EINVAL, O(id) + ": a symlink's mode and size cannot change");
      }
      if (!S_ISREG(cur->mode) && !is_dir && in.size != cur->size) return derived("size");
    }
    return {};
  }

  // The directory `id` sits in after the transaction.
  uint64_t ParentAfter(uint64_t id) {
    auto o = objs.find(id);
    if (o != objs.end() && !o->second.added.empty()) return o->second.added[0].first.dir;
    return view->ParentOf(id);
  }

  RequestError CheckNoCycles() {
    for (auto& [id, o] : objs) {
      if (o.added.empty()) continue;
      const proto::InodeItem* in = o.is_new ? o.listed : &*o.current;
      if (!S_ISDIR(in->mode)) continue;
      uint64_t at = o.added[0].first.dir;
      for (int depth = 0;; depth++) {
        if (at == id) return Err(EINVAL, O(id) + ": a directory cannot move into its own subtree");
        if (at == CRFS_ROOT_OBJECTID) break;
        if (at == 0 || depth > 4096) return Err(ELOOP, O(id) + ": cannot trace its new parent to the root");
        at = ParentAfter(at);
      }
    }
    return {};
  }

  // Orders the namespace operations (see commit_plan.h), then the others.
  RequestError Order();
};

RequestError Planner::Order() {
  struct Move {
    uint64_t obj;
    std::optional<Slot> from, to;
    bool create = false;
    bool done = false;
  };
  std::vector<Move> moves;
  moves.reserve(objs.size());
  for (auto& id_o : objs) {
    const uint64_t id = id_o.first;
    Object& o = id_o.second;
    if (o.is_new) {
      for (size_t i = 0; i < o.added.size(); i++) moves.push_back({id, std::nullopt, o.added[i].first, i == 0});
      continue;
    }
    const size_t pairs = std::min(o.removed.size(), o.added.size());
    for (size_t i = 0; i < pairs; i++) moves.push_back({id, o.removed[i], o.added[i].first});
    for (size_t i = pairs; i < o.added.size(); i++) moves.push_back({id, std::nullopt, o.added[i].first});
    for (size_t i = pairs; i < o.removed.size(); i++) moves.push_back({id, o.removed[i], std::nullopt});
  }
  // One directory's changes together, as rm -r or cp -r would make them,
  // and within it by objectid: btrfs numbers inodes and directory indexes
  // in creation order, so its items (DIR_INDEX, INODE_ITEM, INODE_REF) are
  // then touched roughly in key order rather than in name order (applying
  // an rm -r of 21,500 objects: 408-470 ms against 431-619 ms in three
  // rounds each; noisy, docs/benchmarks.md).
  std::stable_sort(moves.begin(), moves.end(), [](const Move& a, const Move& b) {
    const Slot& sa = a.from ? *a.from : *a.to;
    const Slot& sb = b.from ? *b.from : *b.to;
    return std::tie(sa.dir, a.obj) < std::tie(sb.dir, b.obj);
  });
  // The simulated namespace: slots that change, entries left in directories
  // that go, directories that exist (new ones once created), dirs' parents.
  std::map<Slot, uint64_t> at;
  for (const auto& [slot, c] : changes) at[slot] = c.first ? c.first->obj : 0;
  std::map<uint64_t, int64_t> entries;  // directories that go: entries now
  std::set<uint64_t> gone, made;
  std::map<uint64_t, uint64_t> parent;  // moved directories
  for (auto& id_o : objs) {
    const uint64_t id = id_o.first;
    Object& o = id_o.second;
    if (!o.deleted || !S_ISDIR(o.current->mode)) continue;
    entries[id] = entry_changes[id].first;  // CheckExisting proved that is all it holds
  }
  auto is_dir = [&](uint64_t id) {
    const Object& o = objs[id];
    const proto::InodeItem* in = o.is_new ? o.listed : o.current ? &*o.current : nullptr;
    return in && S_ISDIR(in->mode);
  };
  auto dir_exists = [&](uint64_t d) { return proto::IsProvisional(d) ? made.count(d) > 0 : gone.count(d) == 0; };
  auto parent_now = [&](uint64_t d) {
    auto p = parent.find(d);
    return p != parent.end() ? p->second : view->ParentOf(d);
  };
  auto inside = [&](uint64_t d, uint64_t x) {  // is d x or below it, now?
    for (int depth = 0; depth < 4096 && d != 0; depth++) {
      if (d == x) return true;
      if (d == CRFS_ROOT_OBJECTID) return false;
      if (proto::IsProvisional(d)) {
        auto p = parent.find(d);  // where it was created
        if (p == parent.end()) return false;
        d = p->second;
        continue;
      }
      d = parent_now(d);
    }
    return false;
  };
  auto ready = [&](const Move& m) {
    if (m.to) {
      if (at[*m.to] != 0 || !dir_exists(m.to->dir)) return false;
      if (!m.create && !m.from && proto::IsProvisional(m.obj) && !made.count(m.obj)) return false;  // link after create
      if (m.from && is_dir(m.obj) && inside(m.to->dir, m.obj)) return false;
      return true;
    }
    return !is_dir(m.obj) || entries[m.obj] == 0;
  };
  auto apply = [&](const Move& m) {
    if (m.from) {
      at[*m.from] = 0;
      if (entries.count(m.from->dir)) entries[m.from->dir]--;
    }
    if (m.to) {
      at[*m.to] = m.obj;
      if (entries.count(m.to->dir)) entries[m.to->dir]++;
      if (is_dir(m.obj)) parent[m.obj] = m.to->dir;
    }
    if (m.create) made.insert(m.obj);
    if (!m.to && is_dir(m.obj)) gone.insert(m.obj);
  };
  plan->ops.reserve(plan->ops.size() + moves.size());
  auto emit = [&](const Move& m) {
    Op op;
    if (m.create) {
      const proto::InodeItem& in = *objs[m.obj].listed;
      op.kind = Op::kCreate;
      op.mode = in.mode & (S_IFMT | 07777);
      op.uid = *ids.UidToHost(in.uid);
      op.gid = *ids.GidToHost(in.gid);
      if (S_ISLNK(in.mode)) {
        const auto& d = objs[m.obj].new_extents[0].second->data;
        op.data.assign(d.begin(), d.end());
      }
      plan->created.push_back(m.obj);
    } else if (m.from && m.to) {
      op.kind = Op::kRename;
    } else if (m.to) {
      op.kind = Op::kLink;
    } else {
      op.kind = Op::kUnlink;
      op.mode = is_dir(m.obj) ? S_IFDIR : 0;
    }
    op.obj = m.obj;
    const Slot& s = m.from && m.to ? *m.from : m.to ? *m.to : *m.from;
    op.dir = s.dir;
    op.name = s.name;
    if (m.from && m.to) {
      op.dir2 = m.to->dir;
      op.name2 = m.to->name;
    }
    plan->ops.push_back(std::move(op));
  };

  // Attribute and data changes of existing objects come first, while every
  // object is where its INODE_REF says (directories' times come last:
  // entry changes would overwrite them).
  std::vector<Op> last;
  for (auto& id_o : objs) {
    const uint64_t id = id_o.first;
    Object& o = id_o.second;
    if (o.is_new || o.deleted || !o.current) continue;
    const proto::InodeItem& cur = *o.current;
    std::vector<Op>& out = S_ISDIR(cur.mode) ? last : plan->ops;
    uint64_t size = cur.size, data_end = 0;
    for (const DataRange& d : o.data) {
      if (d.items.empty()) {
        // [first, last]; an open end means "to the end of the file".
        const uint64_t len = d.last == ~0ull ? ~0ull - d.first : d.last - d.first + 1;
        plan->ops.push_back(MakeOp(Op::kPunch, [&](Op& x) {
          x.obj = id;
          x.offset = d.first;
          x.length = len;
        }));
        continue;
      }
      for (size_t i = 0; i < d.items.size(); i++) {
        const proto::ExtentData& ext = *d.items[i];
        Op op = MakeOp(ext.type == CRFS_EXTENT_INLINE ? Op::kWrite : Op::kPunch, [&](Op& x) {
          x.obj = id;
          x.offset = d.offsets[i];
        });
        if (ext.type == CRFS_EXTENT_INLINE) {
          op.data.assign(ext.data.begin(), ext.data.end());
        } else {
          op.length = ext.len;
        }
        plan->ops.push_back(std::move(op));
        size = std::max(size, d.offsets[i] + ext.len);
        data_end = std::max(data_end, d.offsets[i] + ext.len);
      }
    }
    if (o.listed && S_ISREG(cur.mode)) {
      if (o.listed->size < data_end) {
        return Err(EINVAL, O(id) + ": size " + std::to_string(o.listed->size) + " is below the data written");
      }
      size = o.listed->size;
    }
    if (S_ISREG(cur.mode) && size != cur.size)
      plan->ops.push_back(MakeOp(Op::kTruncate, [&](Op& x) {
        x.obj = id;
        x.offset = size;
      }));
    if (o.listed) {
      const proto::InodeItem& in = *o.listed;
      if (in.uid != cur.uid || in.gid != cur.gid) {
        plan->ops.push_back(MakeOp(Op::kChown, [&](Op& x) {
          x.obj = id;
          x.uid = *ids.UidToHost(in.uid);
          x.gid = *ids.GidToHost(in.gid);
        }));
      }
      if ((in.mode & 07777) != (cur.mode & 07777) || ((in.uid != cur.uid || in.gid != cur.gid) && (cur.mode & 06000))) {
        out.push_back(MakeOp(Op::kChmod, [&](Op& x) {  // a directory's after its entries change
          x.obj = id;
          x.mode = in.mode & 07777;
        }));
      }
    }
    for (const auto& name_value : o.xattr_set)
      plan->ops.push_back(MakeOp(Op::kSetXattr, [&](Op& x) {
        x.obj = id;
        x.data = name_value.second;
        x.xname = name_value.first;
      }));
    for (const auto& n : o.xattr_removed)
      plan->ops.push_back(MakeOp(Op::kRemoveXattr, [&](Op& x) {
        x.obj = id;
        x.xname = n;
      }));
    if (o.listed && (o.listed->atime != cur.atime || o.listed->mtime != cur.mtime)) {
      out.push_back(MakeOp(Op::kSetTimes, [&](Op& x) {
        x.obj = id;
        x.atime = o.listed->atime;
        x.mtime = o.listed->mtime;
      }));
    }
    if (!o.xattr_set.empty() || !o.xattr_removed.empty() || o.listed || !o.data.empty()) plan->changed.insert(id);
  }

  // Namespace operations, in an order each can run in.
  size_t left = moves.size();
  // Each pass is linear; a transaction needing very many passes (a deep
  // chain of renames) is refused rather than ordered at any cost.
  constexpr uint64_t kMaxOrderingWork = 1ull << 26;
  uint64_t work = 0;
  // Unfinished renames by the slot they leave: the move out of a taken
  // target, found in one lookup when renames are stuck.
  std::map<Slot, Move*> leaving;
  for (Move& m : moves) {
    if (m.from && m.to) leaving[*m.from] = &m;
  }
  while (left > 0) {
    bool progress = false;
    if ((work += moves.size()) > kMaxOrderingWork) {
      return Err(E2BIG, "transaction too entangled to order within bounds; split it");
    }
    for (Move& m : moves) {
      if (m.done || !ready(m)) continue;
      emit(m);
      apply(m);
      if (m.from && m.to) leaving.erase(*m.from);
      m.done = true;
      left--;
      progress = true;
    }
    if (progress) continue;
    // Stuck: renames form cycles (every target is taken by an object that
    // moves on). One RENAME_EXCHANGE puts m's object in place and the
    // object that was there where m's was; that object's move then starts
    // from there. A cycle of k objects takes k - 1 exchanges, no temporary
    // names, and each is atomic.
    bool swapped = false;
    if ((work += moves.size()) > kMaxOrderingWork) {
      return Err(E2BIG, "transaction too entangled to order within bounds; split it");
    }
    for (Move& m : moves) {
      if (m.done || !m.from || !m.to) continue;
      const uint64_t other = at[*m.to];
      auto next = leaving.find(*m.to);
      if (next == leaving.end() || next->second == &m || next->second->obj != other) continue;
      Move& n = *next->second;
      if ((is_dir(m.obj) && inside(m.to->dir, m.obj)) || (is_dir(n.obj) && inside(m.from->dir, n.obj))) continue;
      plan->ops.push_back(MakeOp(Op::kExchange, [&](Op& x) {
        x.dir = m.from->dir;
        x.name = m.from->name;
        x.obj = m.obj;
        x.dir2 = m.to->dir;
        x.name2 = m.to->name;
        x.obj2 = n.obj;
      }));
      at[*m.from] = n.obj;
      at[*m.to] = m.obj;
      if (is_dir(m.obj)) parent[m.obj] = m.to->dir;
      if (is_dir(n.obj)) parent[n.obj] = m.from->dir;
      leaving.erase(*m.from);
      leaving.erase(*m.to);
      m.done = true;
      left--;
      if (*n.to == *m.from) {  // they traded places
        n.done = true;
        left--;
      } else {
        n.from = *m.from;
        leaving[*n.from] = &n;
      }
      swapped = true;
      break;
    }
    if (!swapped) {
      return Err(EOPNOTSUPP,
                 "renames and removals that cannot be ordered without a temporary name; split the transaction");
    }
  }
  for (Op& op : last) plan->ops.push_back(std::move(op));

  // New objects: data, xattrs, then times, once every entry exists.
  std::vector<Op> times;
  for (uint64_t id : plan->created) {
    Object& o = objs[id];
    const proto::InodeItem& in = *o.listed;
    if (S_ISREG(in.mode)) {
      for (const auto& off_ext : o.new_extents) {
        const uint64_t off = off_ext.first;
        const proto::ExtentData* ext = off_ext.second;
        if (ext->type != CRFS_EXTENT_INLINE) continue;
        plan->ops.push_back(MakeOp(Op::kWrite, [&](Op& x) {
          x.obj = id;
          x.offset = off;
          x.data = {ext->data.begin(), ext->data.end()};
        }));
      }
      if (in.size != 0)
        plan->ops.push_back(MakeOp(Op::kTruncate, [&](Op& x) {
          x.obj = id;
          x.offset = in.size;
        }));
    }
    for (const auto& name_value : o.xattr_set)
      plan->ops.push_back(MakeOp(Op::kSetXattr, [&](Op& x) {
        x.obj = id;
        x.data = name_value.second;
        x.xname = name_value.first;
      }));
    // Created owner-writable (kCreate), so that its creator can fill it;
    // its own mode once everything is in.
    if (!S_ISLNK(in.mode)) {
      times.push_back(MakeOp(Op::kChmod, [&](Op& x) {
        x.obj = id;
        x.mode = in.mode & 07777;
      }));
    }
    if (in.mtime != proto::Timespec{} || in.atime != proto::Timespec{}) {
      times.push_back(MakeOp(Op::kSetTimes, [&](Op& x) {
        x.obj = id;
        x.atime = in.atime;
        x.mtime = in.mtime;
      }));
    }
  }
  for (Op& op : times) plan->ops.push_back(std::move(op));
  return {};
}

}  // namespace

RequestError PlanTransaction(const Transaction& t, const IdMap& ids, uint64_t floor, uint64_t current, TreeView* view,
                             Plan* plan) {
  if (t.base_generation == 0) {
    return Err(ESTALE, "base_generation 0 asserts write grants, and this server grants none yet");
  }
  if (t.base_generation < floor || t.base_generation > current) {
    return Err(ESTALE, "base generation " + std::to_string(t.base_generation) + " is outside [" +
                           std::to_string(floor) + ", " + std::to_string(current) + "]: re-read and retry");
  }
  *plan = Plan{};
  Planner p{t, ids, view, plan, {}, {}, {}, {}, {}, {}, {}, {}, {}, 0};
  return p.Run();
}

}  // namespace crfs::server
