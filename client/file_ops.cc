#include "client/file_ops.h"

#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <ctime>
#include <deque>
#include <filesystem>
#include <map>
#include <set>

#include "proto/checksum.h"
#include "proto/codec.h"

namespace crfs::client {
namespace {

using proto::Item;
using proto::ItemRange;
using proto::Key;

constexpr size_t kExtentBytes = CRFS_MAX_DATA_BYTES;  // data per INLINE item
constexpr size_t kRangeBytes = 512 << 10;             // data per range
constexpr size_t kMaxRangesPerFragment = 1024;        // protocol.md §6.1

Status Errno(int e, const std::string& what) {
  return Status::Remote(
      e, std::string(strerrorname_np(e) ? strerrorname_np(e) : "E?") + " (" + std::to_string(e) + "): " + what);
}

proto::Timespec Now() {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return {static_cast<uint64_t>(ts.tv_sec), static_cast<uint32_t>(ts.tv_nsec)};
}

std::pair<std::string, std::string> Split(const std::string& path) {
  std::string p = path;
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  const size_t slash = p.rfind('/');
  if (slash == std::string::npos) return {"/", p};
  return {slash == 0 ? "/" : p.substr(0, slash), p.substr(slash + 1)};
}

// A symlink's target, as its one INLINE EXTENT_DATA item.
Item SymlinkTarget(uint64_t obj, const std::string& target) {
  proto::ExtentData e;
  e.type = CRFS_EXTENT_INLINE;
  e.len = static_cast<uint32_t>(target.size());
  e.data.assign(target.begin(), target.end());
  e.csums = proto::DataBlockCrcs(e.data);
  return Item{{obj, CRFS_EXTENT_DATA_KEY, 0}, std::move(e)};
}

ItemRange WholeObject(uint64_t obj) { return ItemRange{{obj, 0, 0}, {obj, 0xff, ~0ull}, {}}; }

proto::InodeItem NewInode(const proto::HelloReply& me, uint32_t mode, uint64_t size) {
  proto::InodeItem i;
  i.uid = me.uid;  // a new object belongs to its creator
  i.gid = me.gid;
  i.mode = mode;
  i.size = size;
  i.nlink = 1;
  i.atime = i.mtime = Now();
  return i;
}

// Data ranges of `obj` for bytes [from, to) of `data`, which starts at file
// offset `base`.
void DataRanges(uint64_t obj, const std::vector<uint8_t>& data, size_t from, size_t to, std::vector<ItemRange>* out,
                uint64_t base = 0) {
  for (size_t r = from; r < to; r += kRangeBytes) {
    const size_t r_end = std::min(to, r + kRangeBytes);
    ItemRange range{{obj, CRFS_EXTENT_DATA_KEY, base + r}, {obj, CRFS_EXTENT_DATA_KEY, base + r_end - 1}, {}};
    for (size_t o = r; o < r_end; o += kExtentBytes) {
      const size_t n = std::min(r_end, o + kExtentBytes) - o;
      proto::ExtentData e;
      e.type = CRFS_EXTENT_INLINE;
      e.len = static_cast<uint32_t>(n);
      e.data.assign(data.begin() + static_cast<ptrdiff_t>(o), data.begin() + static_cast<ptrdiff_t>(o + n));
      e.csums = proto::DataBlockCrcs(e.data);
      range.items.push_back(Item{{obj, CRFS_EXTENT_DATA_KEY, base + o}, std::move(e)});
    }
    out->push_back(std::move(range));
  }
}

size_t EncodedRangeSize(const ItemRange& r) {
  size_t n = sizeof(struct crfs_item_range);
  for (const Item& it : r.items) {
    auto b = proto::EncodeItemBody(it.key.type, it.body);
    n += sizeof(struct crfs_item) + (b.ok() ? b->size() : 0);
  }
  return n;
}

}  // namespace

Result<FileOps::Entry> FileOps::Find(const std::string& path) {
  auto [parent, name] = Split(path);
  if (name.empty() || name == "." || name == "..") return Status(Code::kInvalidArgument, "bad path: " + path);
  auto dir = c_->Lookup(parent);
  if (!dir.ok()) return dir.status();
  return FindIn(*dir, name);
}

Result<FileOps::Entry> FileOps::FindIn(uint64_t dir, const std::string& name) {
  if (name.empty() || name == "." || name == ".." || name.size() > 255 || name.find('/') != std::string::npos) {
    return Errno(name.size() > 255 ? ENAMETOOLONG : EINVAL, "bad name '" + name + "'");
  }
  Entry e;
  e.dir = dir;
  e.name = name;
  const uint64_t hash = proto::BtrfsNameHash(name);
  auto items = c_->ItemsIn({dir, CRFS_DIR_ITEM_KEY, hash}, {dir, CRFS_DIR_ITEM_KEY, hash});
  if (!items.ok()) return items.status();
  for (const Item& it : *items) {
    const auto* d = std::get_if<proto::DirEntries>(&it.body);
    if (!d) continue;
    for (const auto& de : d->entries) {
      if (de.name == name) {
        e.obj = de.location.objectid;
        e.type = de.type;
      } else {
        e.same_hash.push_back(de);
      }
    }
  }
  if (e.obj == 0) return e;
  // Its index in `dir` (the object's INODE_REF for that directory) and, in
  // the same query, its INODE_ITEM: the keys from one to the other are one
  // range, and neither needs more than reaching the object (protocol.md §7).
  auto refs = c_->ItemsIn({e.obj, CRFS_INODE_ITEM_KEY, 0}, {e.obj, CRFS_INODE_REF_KEY, dir});
  if (!refs.ok()) return refs.status();
  for (const Item& it : *refs) {
    if (const auto* in = std::get_if<proto::InodeItem>(&it.body)) e.inode = *in;
    if (const auto* r = std::get_if<proto::InodeRefs>(&it.body); r && it.key.offset == dir) {
      for (const auto& ref : r->refs) {
        if (ref.name == name) e.index = ref.index;
      }
    }
  }
  if (e.index == 0 || !e.inode) {
    return Errno(ESTALE, name + ": its entry and its back reference disagree (changed meanwhile)");
  }
  return e;
}

Result<proto::InodeItem> FileOps::Inode(uint64_t obj) {
  auto items = c_->ItemsOf(obj, CRFS_INODE_ITEM_KEY, CRFS_INODE_ITEM_KEY);
  if (!items.ok()) return items.status();
  for (const Item& it : *items) {
    if (const auto* in = std::get_if<proto::InodeItem>(&it.body)) return *in;
  }
  return Status(Code::kBadValue, "no INODE_ITEM for " + std::to_string(obj));
}

void FileOps::EntryRanges(const Entry& e, uint64_t obj, uint8_t type, std::vector<ItemRange>* out) {
  const uint64_t hash = proto::BtrfsNameHash(e.name);
  ItemRange items{{e.dir, CRFS_DIR_ITEM_KEY, hash}, {e.dir, CRFS_DIR_ITEM_KEY, hash}, {}};
  proto::DirEntries at_hash{e.same_hash};
  const proto::DirEntry entry{{obj, CRFS_INODE_ITEM_KEY, 0}, 0, type, e.name};
  if (obj != 0) at_hash.entries.push_back(entry);
  if (!at_hash.entries.empty()) items.items.push_back(Item{items.min, at_hash});
  out->push_back(std::move(items));
  if (e.obj != 0)
    out->push_back(ItemRange{{e.dir, CRFS_DIR_INDEX_KEY, e.index}, {e.dir, CRFS_DIR_INDEX_KEY, e.index}, {}});
  if (obj != 0) {
    const uint64_t index = NextProvisional();
    const Key k{e.dir, CRFS_DIR_INDEX_KEY, index};
    out->push_back(ItemRange{k, k, {Item{k, proto::DirEntries{{entry}}}}});
  }
}

Result<proto::TransReply> FileOps::Commit(std::vector<ItemRange> ranges, uint8_t flags) {
  // Based on what the change read (the oldest generation of those reads),
  // else on the last commit of this FileOps (or HELLO).
  return CommitAt(std::move(ranges), c_->view_generation() != 0 ? c_->view_generation() : generation_, flags);
}

Result<proto::TransReply> FileOps::CommitAt(std::vector<ItemRange> ranges, uint64_t base, uint8_t flags) {
  const size_t limit = c_->hello().max_payload - sizeof(struct crfs_msg_trans_frag);
  std::vector<std::vector<ItemRange>> frags(1);
  size_t bytes = 0;
  for (ItemRange& r : ranges) {
    const size_t n = EncodedRangeSize(r);
    if (n > limit) return Status(Code::kTooLarge, "one range does not fit a fragment");
    if (!frags.back().empty() && (bytes + n > limit || frags.back().size() >= kMaxRangesPerFragment)) {
      frags.emplace_back();
      bytes = 0;
    }
    frags.back().push_back(std::move(r));
    bytes += n;
  }
  const uint64_t id = c_->NewId();
  // A connection lost before the answer: the same transaction (same id,
  // same bytes) again on a new session of this client instance. The server
  // answers it once (docs/protocol.md §6.4): applied before, it says so.
  for (int attempt = 0;; attempt++) {
    auto reply = SendTransaction(id, frags, base, flags);
    if (reply.ok() || reply.status().code() != Code::kIo || !c_->can_reconnect() || attempt >= kMaxResends) {
      return reply;
    }
    std::fprintf(stderr, "crfs: %s; reconnecting to resend transaction %" PRIu64 "\n", reply.status().message().c_str(),
                 id);
    CRFS_RETURN_IF_ERROR(c_->Reconnect());
  }
}

Result<proto::TransReply> FileOps::SendTransaction(uint64_t id, const std::vector<std::vector<ItemRange>>& frags,
                                                   uint64_t base, uint8_t flags) {
  for (size_t i = 0; i < frags.size(); i++) {
    const bool last = i + 1 == frags.size();
    proto::TransFrag f{static_cast<uint32_t>(i), last, flags, base, frags[i]};
    for (const auto& r : f.ranges) bytes_sent_ += EncodedRangeSize(r);
    bytes_sent_ += sizeof(struct crfs_header) + sizeof(struct crfs_msg_trans_frag);
    frames_sent_++;
    auto replies = c_->CallAs(id, std::move(f));
    if (!replies.ok()) return replies.status();
    CRFS_RETURN_IF_ERROR(Connection::Check(replies->back()));
    if (!last) continue;
    for (auto& fr : *replies) {
      if (auto* r = std::get_if<proto::TransReply>(&fr.msg)) {
        generation_ = r->generation;
        c_->StartView();  // later reads of this change come after its commit
        return *r;
      }
    }
    return Status(Code::kBadValue, "transaction answered without a TRANS_REPLY");
  }
  return Status(Code::kInvalidArgument, "empty transaction");
}

Status FileOps::Mkdir(const std::string& path, uint32_t mode) {
  auto [parent, name] = Split(path);
  auto dir = c_->Lookup(parent);
  if (!dir.ok()) return dir.status();
  return CreateIn(*dir, name, S_IFDIR | (mode & 07777)).status();
}

Result<uint64_t> FileOps::CreateIn(uint64_t dir, const std::string& name, uint32_t mode, const std::string& target) {
  if (!S_ISDIR(mode) && !S_ISREG(mode) && !S_ISLNK(mode)) {
    return Errno(EPERM, name + ": crfsd makes regular files, directories and symlinks only");
  }
  if (S_ISLNK(mode) && (target.empty() || target.size() > 4095)) {
    return Errno(target.empty() ? ENOENT : ENAMETOOLONG, "symlink target");
  }
  c_->StartView();  // what this change reads from here on is its base
  auto e = FindIn(dir, name);
  if (!e.ok()) return e.status();
  if (e->obj) return Errno(EEXIST, name);
  const uint64_t p = NextProvisional();
  std::vector<ItemRange> ranges;
  const uint8_t type = S_ISDIR(mode) ? CRFS_FT_DIR : S_ISLNK(mode) ? CRFS_FT_SYMLINK : CRFS_FT_REG_FILE;
  EntryRanges(*e, p, type, &ranges);
  ItemRange obj = WholeObject(p);
  const uint32_t perms = S_ISLNK(mode) ? 0777 : mode & 07777;
  obj.items.push_back(Item{{p, CRFS_INODE_ITEM_KEY, 0},
                           NewInode(c_->hello(), (mode & S_IFMT) | perms, S_ISLNK(mode) ? target.size() : 0)});
  if (S_ISLNK(mode)) obj.items.push_back(SymlinkTarget(p, target));
  ranges.push_back(std::move(obj));
  auto r = Commit(std::move(ranges));
  if (!r.ok()) return r.status();
  for (const auto& m : r->map) {
    if (m.provisional == p) return m.real;
  }
  return Status(Code::kBadValue, "the reply does not map the new object");
}

Status FileOps::Put(const std::string& path, const std::vector<uint8_t>& data, uint32_t mode) {
  c_->StartView();  // what this change reads from here on is its base
  auto e = Find(path);
  if (!e.ok()) return e.status();
  if (e->obj && e->type != CRFS_FT_REG_FILE) return Errno(e->type == CRFS_FT_DIR ? EISDIR : EEXIST, path);
  size_t done = std::min(data.size(), kTransactionBytes);
  uint64_t obj = e->obj;
  std::vector<ItemRange> ranges;
  if (obj == 0) {
    const uint64_t p = NextProvisional();
    EntryRanges(*e, p, CRFS_FT_REG_FILE, &ranges);
    ranges.push_back(
        ItemRange{{p, 0, 0},
                  {p, CRFS_EXTENT_DATA_KEY - 1, ~0ull},
                  {Item{{p, CRFS_INODE_ITEM_KEY, 0}, NewInode(c_->hello(), S_IFREG | (mode & 07777), data.size())}}});
    DataRanges(p, data, 0, done, &ranges);
    auto r = Commit(std::move(ranges));
    if (!r.ok()) return r.status();
    for (const auto& m : r->map) {
      if (m.provisional == p) obj = m.real;
    }
    if (obj == 0) return Status(Code::kBadValue, "the reply does not map the new file");
  } else {
    auto in = Inode(obj);
    if (!in.ok()) return in.status();
    in->size = data.size();
    ranges.push_back(ItemRange{
        {obj, CRFS_INODE_ITEM_KEY, 0}, {obj, CRFS_INODE_ITEM_KEY, 0}, {Item{{obj, CRFS_INODE_ITEM_KEY, 0}, *in}}});
    DataRanges(obj, data, 0, done, &ranges);
    CRFS_RETURN_IF_ERROR(Commit(std::move(ranges)).status());
  }
  while (done < data.size()) {
    const size_t end = std::min(data.size(), done + kTransactionBytes);
    ranges.clear();
    DataRanges(obj, data, done, end, &ranges);
    CRFS_RETURN_IF_ERROR(Commit(std::move(ranges)).status());
    done = end;
  }
  return Status::Ok();
}

Status FileOps::WriteAt(uint64_t obj, uint64_t offset, const std::vector<uint8_t>& data) {
  c_->StartView();  // what this change reads from here on is its base
  if (data.empty()) return Status::Ok();
  if (offset > (1ull << 62) || data.size() > (1ull << 62) - offset) return Errno(EFBIG, "write past 2^62");
  auto in = Inode(obj);
  if (!in.ok()) return in.status();
  if (!S_ISREG(in->mode)) return Errno(S_ISDIR(in->mode) ? EISDIR : EINVAL, "objectid " + std::to_string(obj));
  for (size_t done = 0; done < data.size();) {
    const size_t end = std::min(data.size(), done + kTransactionBytes);
    std::vector<ItemRange> ranges;
    if (done == 0 && offset + data.size() > in->size) {  // grows: the size is the client's to state, once
      in->size = offset + data.size();
      ranges.push_back(ItemRange{
          {obj, CRFS_INODE_ITEM_KEY, 0}, {obj, CRFS_INODE_ITEM_KEY, 0}, {Item{{obj, CRFS_INODE_ITEM_KEY, 0}, *in}}});
    }
    DataRanges(obj, data, done, end, &ranges, offset);
    CRFS_RETURN_IF_ERROR(Commit(std::move(ranges)).status());
    done = end;
  }
  return Status::Ok();
}

Status FileOps::WriteExtents(uint64_t obj, const std::map<uint64_t, std::vector<uint8_t>>& pieces) {
  c_->StartView();  // what this change reads from here on is its base
  if (pieces.empty()) return Status::Ok();
  size_t total = 0;
  uint64_t end = 0;
  for (const auto& [off, data] : pieces) {
    if (off > (1ull << 62) || data.size() > (1ull << 62) - off) return Errno(EFBIG, "write past 2^62");
    if (off < end) return Status(Code::kInvalidArgument, "overlapping pieces");
    total += data.size();
    end = off + data.size();
  }
  if (total > kTransactionBytes) return Status(Code::kInvalidArgument, "pieces past one transaction");
  auto in = Inode(obj);
  if (!in.ok()) return in.status();
  if (!S_ISREG(in->mode)) return Errno(S_ISDIR(in->mode) ? EISDIR : EINVAL, "objectid " + std::to_string(obj));
  std::vector<ItemRange> ranges;
  if (end > in->size) {
    in->size = end;
    ranges.push_back(ItemRange{
        {obj, CRFS_INODE_ITEM_KEY, 0}, {obj, CRFS_INODE_ITEM_KEY, 0}, {Item{{obj, CRFS_INODE_ITEM_KEY, 0}, *in}}});
  }
  for (const auto& [off, data] : pieces) DataRanges(obj, data, 0, data.size(), &ranges, off);
  return Commit(std::move(ranges)).status();
}

Status FileOps::Remove(const std::string& path) {
  auto [parent, name] = Split(path);
  auto dir = c_->Lookup(parent);
  if (!dir.ok()) return dir.status();
  return RemoveIn(*dir, name, Removing::kAny);
}

Status FileOps::RemoveIn(uint64_t dir, const std::string& name, Removing what) {
  c_->StartView();  // what this change reads from here on is its base
  auto e = FindIn(dir, name);
  if (!e.ok()) return e.status();
  if (!e->obj) return Errno(ENOENT, name);
  if (what == Removing::kNotDir && e->type == CRFS_FT_DIR) return Errno(EISDIR, name);
  if (what == Removing::kDir && e->type != CRFS_FT_DIR) return Errno(ENOTDIR, name);
  // A directory with entries is the server's to refuse (ENOTEMPTY): listing
  // it here would need read permission, which rmdir does not.
  std::vector<ItemRange> ranges;
  EntryRanges(*e, 0, 0, &ranges);
  return Commit(std::move(ranges)).status();
}

Status FileOps::RemoveTree(const std::string& path) {
  c_->StartView();  // what this change reads from here on is its base
  auto e = Find(path);
  if (!e.ok()) return e.status();
  if (!e->obj) return Errno(ENOENT, path);
  if (e->type != CRFS_FT_DIR) return Remove(path);
  // Every directory below: one TREE_QUERY lists them all (protocol.md §7);
  // directories it did not reach or cut short are asked for again.
  std::set<uint64_t> dirs{e->obj}, complete, asked;
  auto take = [&](const std::vector<Item>& items) {
    for (const Item& it : items) {
      const auto* de = std::get_if<proto::DirEntries>(&it.body);
      if (de && it.key.type == CRFS_DIR_INDEX_KEY && de->entries.at(0).type == CRFS_FT_DIR) {
        dirs.insert(de->entries.at(0).location.objectid);
      }
    }
  };
  for (;;) {
    std::vector<uint64_t> unreached, cut;
    for (uint64_t d : dirs) {
      if (complete.count(d)) continue;
      (asked.count(d) ? cut : unreached).push_back(d);
    }
    for (uint64_t d : cut) {  // reached but cut short, or gone: list it whole
      auto items = c_->ItemsOf(d, CRFS_DIR_INDEX_KEY, CRFS_DIR_INDEX_KEY);
      if (!items.ok()) return items.status();
      take(*items);
      complete.insert(d);
    }
    if (unreached.empty() && cut.empty()) break;
    for (size_t at = 0; at < unreached.size();) {
      std::vector<proto::Message> queries;
      for (; at < unreached.size() && queries.size() < 256; at++) {
        queries.push_back(proto::TreeQuery{unreached[at], c_->hello().max_payload});
        asked.insert(unreached[at]);
      }
      auto replies = c_->CallMany(std::move(queries));
      if (!replies.ok()) return replies.status();
      for (const auto& frames : *replies) {
        CRFS_RETURN_IF_ERROR(Connection::Check(frames.back()));
        for (const auto& f : frames) {
          const auto* r = std::get_if<ItemRange>(&f.msg);
          if (!r) continue;
          const uint64_t d = r->min.objectid;
          asked.insert(d);
          take(r->items);
          if (r->max == Key{d, CRFS_DIR_INDEX_KEY, ~0ull}) complete.insert(d);
        }
      }
    }
  }
  std::vector<ItemRange> ranges;
  EntryRanges(*e, 0, 0, &ranges);
  for (uint64_t d : dirs) ranges.push_back(WholeObject(d));
  return Commit(std::move(ranges)).status();
}

Status FileOps::Rename(const std::string& from, const std::string& to) {
  auto [pa, na] = Split(from);
  auto [pb, nb] = Split(to);
  auto a = c_->Lookup(pa);
  if (!a.ok()) return a.status();
  auto b = c_->Lookup(pb);
  if (!b.ok()) return b.status();
  return RenameIn(*a, na, *b, nb, 0);
}

Status FileOps::RenameIn(uint64_t dir, const std::string& name, uint64_t to_dir, const std::string& to_name,
                         unsigned flags) {
  if ((flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE)) != 0 ||
      (flags & (RENAME_NOREPLACE | RENAME_EXCHANGE)) == (RENAME_NOREPLACE | RENAME_EXCHANGE)) {
    return Errno(EINVAL, "rename flags");
  }
  c_->StartView();  // what this change reads from here on is its base
  auto a = FindIn(dir, name);
  if (!a.ok()) return a.status();
  if (!a->obj) return Errno(ENOENT, name);
  auto b = FindIn(to_dir, to_name);
  if (!b.ok()) return b.status();
  std::vector<ItemRange> ranges;
  const bool one_hash = a->dir == b->dir && proto::BtrfsNameHash(a->name) == proto::BtrfsNameHash(b->name);
  if (flags & RENAME_EXCHANGE) {
    if (!b->obj) return Errno(ENOENT, to_name);
    if (a->dir == b->dir && a->name == b->name) return Status::Ok();
    if (one_hash) return Errno(EINVAL, name + " and " + to_name + " share their directory's name hash");
    EntryRanges(*a, b->obj, b->type, &ranges);
    EntryRanges(*b, a->obj, a->type, &ranges);
    return Commit(std::move(ranges)).status();
  }
  if (b->obj && (flags & RENAME_NOREPLACE)) return Errno(EEXIST, to_name);
  if (b->obj == a->obj) return Status::Ok();  // two names of one object: rename(2) does nothing
  if (b->obj && b->type == CRFS_FT_DIR && a->type != CRFS_FT_DIR) return Errno(EISDIR, to_name);
  if (b->obj && b->type != CRFS_FT_DIR && a->type == CRFS_FT_DIR) return Errno(ENOTDIR, to_name);
  if (one_hash) {
    // Both names under one hash: one DIR_ITEM range says it all.
    Entry both = *b;
    std::erase_if(both.same_hash, [&](const proto::DirEntry& d) { return d.name == a->name; });
    EntryRanges(both, a->obj, a->type, &ranges);
    ranges.push_back(ItemRange{{a->dir, CRFS_DIR_INDEX_KEY, a->index}, {a->dir, CRFS_DIR_INDEX_KEY, a->index}, {}});
  } else {
    EntryRanges(*a, 0, 0, &ranges);
    EntryRanges(*b, a->obj, a->type, &ranges);
  }
  return Commit(std::move(ranges)).status();
}

Status FileOps::Exchange(const std::vector<std::string>& paths) {
  c_->StartView();  // what this change reads from here on is its base
  if (paths.size() < 2) return Status(Code::kInvalidArgument, "exchange needs two names or more");
  std::vector<Entry> e;
  std::set<std::pair<uint64_t, uint64_t>> slots;  // (dir, name hash): one range each
  std::set<uint64_t> objs;
  for (const std::string& p : paths) {
    auto f = Find(p);
    if (!f.ok()) return f.status();
    if (!f->obj) return Errno(ENOENT, p);
    if (!slots.insert({f->dir, proto::BtrfsNameHash(f->name)}).second || !objs.insert(f->obj).second) {
      return Errno(EINVAL, p + ": named twice, or shares its directory and name hash with another");
    }
    e.push_back(std::move(*f));
  }
  std::vector<ItemRange> ranges;
  for (size_t i = 0; i < e.size(); i++) {
    const Entry& next = e[(i + 1) % e.size()];
    EntryRanges(e[i], next.obj, next.type, &ranges);
  }
  return Commit(std::move(ranges)).status();
}

Status FileOps::Link(const std::string& existing, const std::string& path) {
  auto obj = c_->Lookup(existing);
  if (!obj.ok()) return obj.status();
  auto [parent, name] = Split(path);
  auto dir = c_->Lookup(parent);
  if (!dir.ok()) return dir.status();
  return LinkIn(*obj, *dir, name);
}

Status FileOps::LinkIn(uint64_t obj, uint64_t dir, const std::string& name) {
  c_->StartView();  // what this change reads from here on is its base
  auto in = Inode(obj);
  if (!in.ok()) return in.status();
  if (S_ISDIR(in->mode)) return Errno(EPERM, "directories have one name");
  auto e = FindIn(dir, name);
  if (!e.ok()) return e.status();
  if (e->obj) return Errno(EEXIST, name);
  std::vector<ItemRange> ranges;
  EntryRanges(*e, obj, proto::FileTypeOfMode(in->mode), &ranges);
  return Commit(std::move(ranges)).status();
}

Status FileOps::Symlink(const std::string& target, const std::string& path) {
  auto [parent, name] = Split(path);
  auto dir = c_->Lookup(parent);
  if (!dir.ok()) return dir.status();
  return CreateIn(*dir, name, S_IFLNK | 0777, target).status();
}

Result<std::string> FileOps::ReadLink(uint64_t obj) {
  auto items = c_->ItemsOf(obj, CRFS_INODE_ITEM_KEY, CRFS_EXTENT_DATA_KEY);
  if (!items.ok()) return items.status();
  std::string target;
  bool link = false;
  for (const Item& it : *items) {
    if (const auto* in = std::get_if<proto::InodeItem>(&it.body)) link = S_ISLNK(in->mode);
    if (const auto* e = std::get_if<proto::ExtentData>(&it.body); e && e->type == CRFS_EXTENT_INLINE) {
      target.append(e->data.begin(), e->data.end());
    }
  }
  if (!link) return Errno(EINVAL, "objectid " + std::to_string(obj) + " is not a symlink");
  return target;
}

Status FileOps::Chmod(const std::string& path, uint32_t mode) {
  Attrs a;
  a.mode = mode;
  return SetAttrs(path, a);
}

Status FileOps::SetAttrs(const std::string& path, const Attrs& attrs) {
  auto obj = c_->Lookup(path);
  if (!obj.ok()) return obj.status();
  return SetAttrsOf(*obj, attrs);
}

Status FileOps::SetAttrsOf(uint64_t obj, const Attrs& attrs) {
  c_->StartView();  // what this change reads from here on is its base
  auto in = Inode(obj);
  if (!in.ok()) return in.status();
  if (attrs.size && !S_ISREG(in->mode)) return Errno(S_ISDIR(in->mode) ? EISDIR : EINVAL, "truncate");
  if (attrs.mode) in->mode = (in->mode & S_IFMT) | (*attrs.mode & 07777);
  if (attrs.uid) in->uid = *attrs.uid;
  if (attrs.gid) in->gid = *attrs.gid;
  if (attrs.size) in->size = *attrs.size;
  if (attrs.atime) in->atime = *attrs.atime;
  if (attrs.mtime) in->mtime = *attrs.mtime;
  const Key k{obj, CRFS_INODE_ITEM_KEY, 0};
  return Commit({ItemRange{k, k, {Item{k, *in}}}}).status();
}

Status FileOps::SetXattr(const std::string& path, const std::string& name, const std::string& value) {
  auto obj = c_->Lookup(path);
  if (!obj.ok()) return obj.status();
  return SetXattrOf(*obj, name, value);
}

Status FileOps::SetXattrOf(uint64_t obj, const std::string& name, const std::string& value, int flags) {
  c_->StartView();  // what this change reads from here on is its base
  const Key k{obj, CRFS_XATTR_ITEM_KEY, proto::BtrfsNameHash(name)};
  auto items = c_->ItemsIn(k, k);
  if (!items.ok()) return items.status();
  proto::Xattrs x;
  bool found = false;
  for (const Item& it : *items) {
    if (it.key != k) continue;
    for (const auto& e : std::get<proto::Xattrs>(it.body).entries) {
      if (e.name != name) {
        x.entries.push_back(e);
      } else {
        found = true;
      }
    }
  }
  if (found && (flags & XATTR_CREATE)) return Errno(EEXIST, name);
  if (!found && (flags & XATTR_REPLACE)) return Errno(ENODATA, name);
  x.entries.push_back({name, value});
  return Commit({ItemRange{k, k, {Item{k, x}}}}).status();
}

Status FileOps::RemoveXattr(const std::string& path, const std::string& name) {
  auto obj = c_->Lookup(path);
  if (!obj.ok()) return obj.status();
  return RemoveXattrOf(*obj, name);
}

Status FileOps::RemoveXattrOf(uint64_t obj, const std::string& name) {
  c_->StartView();  // what this change reads from here on is its base
  const Key k{obj, CRFS_XATTR_ITEM_KEY, proto::BtrfsNameHash(name)};
  auto items = c_->ItemsIn(k, k);
  if (!items.ok()) return items.status();
  proto::Xattrs x;
  bool found = false;
  for (const Item& it : *items) {
    if (it.key != k) continue;
    for (const auto& e : std::get<proto::Xattrs>(it.body).entries) {
      if (e.name == name) {
        found = true;
      } else {
        x.entries.push_back(e);
      }
    }
  }
  if (!found) return Errno(ENODATA, name);
  ItemRange r{k, k, {}};
  if (!x.entries.empty()) r.items.push_back(Item{k, x});
  return Commit({std::move(r)}).status();
}

Result<std::string> FileOps::GetXattr(uint64_t obj, const std::string& name) {
  const Key k{obj, CRFS_XATTR_ITEM_KEY, proto::BtrfsNameHash(name)};
  auto items = c_->ItemsIn(k, k);
  if (!items.ok()) return items.status();
  for (const Item& it : *items) {
    if (const auto* x = std::get_if<proto::Xattrs>(&it.body)) {
      for (const auto& e : x->entries) {
        if (e.name == name) return e.value;
      }
    }
  }
  return Errno(ENODATA, name);
}

Result<std::vector<std::string>> FileOps::ListXattrs(uint64_t obj) {
  auto items = c_->ItemsOf(obj, CRFS_XATTR_ITEM_KEY, CRFS_XATTR_ITEM_KEY);
  if (!items.ok()) return items.status();
  std::vector<std::string> names;
  for (const Item& it : *items) {
    if (const auto* x = std::get_if<proto::Xattrs>(&it.body)) {
      for (const auto& e : x->entries) names.push_back(e.name);
    }
  }
  return names;
}

}  // namespace crfs::client

namespace crfs::client {
namespace {

struct LocalObject {
  std::string local;
  uint32_t mode = 0;
  uint64_t size = 0;
  proto::Timespec mtime;
  std::string target;  // symlinks
};

}  // namespace

Status FileOps::Import(const std::string& local, const std::string& path, size_t batch, uint64_t* objects,
                       uint64_t* transactions) {
  c_->StartView();  // what this change reads from here on is its base
  *objects = *transactions = 0;
  auto top = Find(path);
  if (!top.ok()) return top.status();
  if (top->obj) return Errno(EEXIST, path);
  auto stat_local = [](const std::string& p, LocalObject* o) -> Status {
    struct stat st;
    if (lstat(p.c_str(), &st) != 0) return Status(Code::kIo, p + ": " + strerror(errno));
    o->local = p;
    o->mode = st.st_mode & (S_IFMT | 07777);
    o->size = static_cast<uint64_t>(st.st_size);
    o->mtime = {static_cast<uint64_t>(st.st_mtim.tv_sec), static_cast<uint32_t>(st.st_mtim.tv_nsec)};
    if (S_ISLNK(st.st_mode)) {
      char buf[4096];
      ssize_t n = readlink(p.c_str(), buf, sizeof(buf));
      if (n <= 0 || n >= static_cast<ssize_t>(sizeof(buf))) return Status(Code::kIo, p + ": readlink failed");
      o->target.assign(buf, static_cast<size_t>(n));
    }
    return Status::Ok();
  };
  auto read_local = [](const std::string& p, std::vector<uint8_t>* data) -> Status {
    std::FILE* f = std::fopen(p.c_str(), "rb");
    if (!f) return Status(Code::kIo, p + ": " + strerror(errno));
    uint8_t buf[1 << 16];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof(buf), f)) > 0) data->insert(data->end(), buf, buf + n);
    const bool bad = std::ferror(f);
    std::fclose(f);
    return bad ? Status(Code::kIo, p + ": read error") : Status::Ok();
  };
  constexpr uint64_t kInlineFile = 4 << 20;  // larger files are created empty, then Put

  // A batch: new objects (provisional ids) and, per directory, the entries
  // it gains. Directories are handled whole, in breadth-first order.
  struct NewObject {
    LocalObject o;
    uint64_t id = 0;
    std::vector<std::pair<std::string, uint64_t>> entries;  // name -> provisional id (directories)
  };
  std::vector<NewObject> made;
  std::map<uint64_t, size_t> made_at;                                               // provisional -> index
  std::map<uint64_t, std::vector<std::pair<std::string, uint64_t>>> existing_dirs;  // real dir -> entries
  std::vector<std::pair<uint64_t, std::string>> big_files;                          // provisional -> local
  std::deque<std::pair<uint64_t, std::string>> dirs;                                // (id, local) to list
  std::map<uint64_t, uint64_t> real;                                                // provisional -> real
  std::vector<std::pair<std::string, std::string>> late_puts;                       // remote, local
  std::map<uint64_t, std::string> remote_path;                                      // provisional -> path

  auto type_of = [](uint32_t mode) -> uint8_t {
    return S_ISDIR(mode) ? CRFS_FT_DIR : S_ISLNK(mode) ? CRFS_FT_SYMLINK : CRFS_FT_REG_FILE;
  };
  auto entry_items = [&](uint64_t dir, const std::vector<std::pair<std::string, uint64_t>>& entries,
                         std::vector<Item>* out) {
    std::map<uint64_t, proto::DirEntries> by_hash;
    std::vector<Item> by_index;
    for (const auto& [name, child] : entries) {
      const NewObject& c = made[made_at.at(child)];
      const proto::DirEntry de{{child, CRFS_INODE_ITEM_KEY, 0}, 0, type_of(c.o.mode), name};
      by_hash[proto::BtrfsNameHash(name)].entries.push_back(de);
      const Key k{dir, CRFS_DIR_INDEX_KEY, NextProvisional()};
      by_index.push_back(Item{k, proto::DirEntries{{de}}});
    }
    for (auto& [h, d] : by_hash) out->push_back(Item{{dir, CRFS_DIR_ITEM_KEY, h}, std::move(d)});
    for (auto& it : by_index) out->push_back(std::move(it));
  };
  auto commit_batch = [&]() -> Status {
    if (made.empty()) return Status::Ok();
    std::vector<ItemRange> ranges;
    std::vector<std::vector<uint8_t>> datas(made.size());
    for (size_t i = 0; i < made.size(); i++) {
      NewObject& n = made[i];
      const bool small_file = S_ISREG(n.o.mode) && n.o.size <= kInlineFile;
      if (small_file && n.o.size > 0) CRFS_RETURN_IF_ERROR(read_local(n.o.local, &datas[i]));
      if (S_ISREG(n.o.mode) && !small_file) late_puts.emplace_back(remote_path[n.id], n.o.local);
      proto::InodeItem in = NewInode(c_->hello(), n.o.mode,
                                     S_ISLNK(n.o.mode) ? n.o.target.size()
                                     : small_file      ? datas[i].size()
                                                       : 0);
      in.mtime = n.o.mtime;
      uint64_t names = 0;
      for (const auto& [name, child] : n.entries) names += 2 * name.size();
      if (S_ISDIR(n.o.mode)) in.size = names;
      ItemRange r{{n.id, 0, 0}, {n.id, 0xff, ~0ull}, {Item{{n.id, CRFS_INODE_ITEM_KEY, 0}, in}}};
      if (S_ISDIR(n.o.mode)) entry_items(n.id, n.entries, &r.items);
      if (S_ISLNK(n.o.mode)) r.items.push_back(SymlinkTarget(n.id, n.o.target));
      if (S_ISREG(n.o.mode) && !datas[i].empty()) {
        r.max = Key{n.id, CRFS_EXTENT_DATA_KEY - 1, ~0ull};
        ranges.push_back(std::move(r));
        DataRanges(n.id, datas[i], 0, datas[i].size(), &ranges);
      } else {
        ranges.push_back(std::move(r));
      }
    }
    // A directory an earlier batch made is visible to others by now: its
    // entries go in as one range per key (each name hash, each new index),
    // authoritative for those keys only, so that no entry someone else
    // added is ever replaced. One added before this object's last commit
    // stays; one added after it makes the batch ESTALE, and one under the
    // same hash EINVAL (its DIR_ITEM would go without its DIR_INDEX).
    for (const auto& [dir, entries] : existing_dirs) {
      std::vector<Item> items;
      entry_items(dir, entries, &items);
      for (Item& it : items) {
        const Key k = it.key;
        ranges.push_back(ItemRange{k, k, {std::move(it)}});
      }
    }
    auto reply = Commit(std::move(ranges));
    if (!reply.ok()) return reply.status();
    for (const auto& m : reply->map) real[m.provisional] = m.real;
    (*transactions)++;
    *objects += made.size();
    made.clear();
    made_at.clear();
    existing_dirs.clear();
    return Status::Ok();
  };
  auto add = [&](const std::string& local_path, const std::string& remote) -> Result<uint64_t> {
    NewObject n;
    CRFS_RETURN_IF_ERROR(stat_local(local_path, &n.o));
    if (!S_ISDIR(n.o.mode) && !S_ISREG(n.o.mode) && !S_ISLNK(n.o.mode)) return uint64_t{0};  // skipped
    n.id = NextProvisional();
    remote_path[n.id] = remote;
    made_at[n.id] = made.size();
    made.push_back(std::move(n));
    if (S_ISDIR(made.back().o.mode)) dirs.emplace_back(made.back().id, local_path);
    return made.back().id;
  };

  // The top directory hangs off an existing directory: its entry ranges.
  auto top_id = add(local, path);
  if (!top_id.ok()) return top_id.status();
  if (*top_id == 0 || !S_ISDIR(made.back().o.mode)) return Status(Code::kInvalidArgument, local + ": not a directory");
  {
    std::vector<ItemRange> entry;
    EntryRanges(*top, *top_id, CRFS_FT_DIR, &entry);
    // Commit the top directory alone: its parent's ranges are not the batch's.
    const uint64_t id = *top_id;
    proto::InodeItem in = NewInode(c_->hello(), made.back().o.mode, 0);
    in.mtime = made.back().o.mtime;
    entry.push_back(ItemRange{{id, 0, 0}, {id, 0xff, ~0ull}, {Item{{id, CRFS_INODE_ITEM_KEY, 0}, in}}});
    auto reply = Commit(std::move(entry));
    if (!reply.ok()) return reply.status();
    for (const auto& m : reply->map) real[m.provisional] = m.real;
    (*transactions)++;
    (*objects)++;
    made.clear();
    made_at.clear();
  }
  while (!dirs.empty()) {
    auto [id, local_dir] = dirs.front();
    dirs.pop_front();
    std::vector<std::string> names;
    for (const auto& de : std::filesystem::directory_iterator(local_dir)) names.push_back(de.path().filename());
    std::sort(names.begin(), names.end());
    std::vector<std::pair<std::string, uint64_t>> entries;
    for (const auto& name : names) {
      auto child = add(local_dir + "/" + name, remote_path[id] + "/" + name);
      if (!child.ok()) return child.status();
      if (*child) entries.emplace_back(name, *child);
    }
    if (auto m = made_at.find(id); m != made_at.end()) {
      made[m->second].entries = std::move(entries);
    } else if (!entries.empty()) {
      existing_dirs[real.at(id)] = std::move(entries);
    }
    if (made.size() >= batch) CRFS_RETURN_IF_ERROR(commit_batch());
  }
  CRFS_RETURN_IF_ERROR(commit_batch());
  for (const auto& [remote, local_file] : late_puts) {
    std::vector<uint8_t> data;
    CRFS_RETURN_IF_ERROR(read_local(local_file, &data));
    CRFS_RETURN_IF_ERROR(Put(remote, data));
    (*transactions)++;
  }
  return Status::Ok();
}

}  // namespace crfs::client
