#include "server/transaction.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <set>
#include <string>

#include "proto/checksum.h"
#include "proto/snoop.h"

namespace crfs::server {
namespace {

using proto::Key;

constexpr size_t kMaxItems = 1 << 20;
// The largest file size and offset the kernel takes (MAX_LFS_FILESIZE on
// 64-bit), and what btrfs stores of one xattr (name + value in one leaf item
// of a 16 KiB node, with room to spare).
constexpr uint64_t kMaxFileSize = (1ull << 63) - 1;
constexpr size_t kMaxXattrBytes = 16000;

RequestError Err(int e, std::string text) { return RequestError{e, std::move(text)}; }

std::string K(const Key& k) { return proto::FormatKey(k); }

// A name a directory entry, inode ref or xattr may carry.
bool ValidName(const std::string& n) {
  return !n.empty() && n != "." && n != ".." && n.find('/') == std::string::npos && n.find('\0') == std::string::npos;
}

struct Entry {
  uint64_t location;
  uint8_t type;
};

}  // namespace

void TransactionAssembler::Drop(uint64_t id) {
  auto it = open_.find(id);
  if (it == open_.end()) return;
  bytes_ -= it->second.bytes;
  open_.erase(it);
}

TransactionAssembler::Outcome TransactionAssembler::Add(uint64_t id, proto::TransFrag frag, size_t wire_bytes,
                                                        Transaction* done, RequestError* err) {
  auto refuse = [&](int e, std::string text) {
    Drop(id);
    *err = Err(e, std::move(text));
    return Outcome::kRefused;
  };
  auto it = open_.find(id);
  if (it == open_.end()) {
    if (frag.frag_nr != 0)
      return refuse(EINVAL, "fragment " + std::to_string(frag.frag_nr) + " of a transaction that has not started");
    if (open_.size() >= kMaxOpen) return refuse(EAGAIN, "too many transactions in flight on this session");
    it = open_.emplace(id, Open{Transaction{id, frag.flags, frag.base_generation, {}}, 0, 0}).first;
  }
  Open& o = it->second;
  if (frag.frag_nr != o.next_frag) {
    return refuse(
        EINVAL, "fragment " + std::to_string(frag.frag_nr) + " out of order, expected " + std::to_string(o.next_frag));
  }
  if (frag.flags != o.t.flags || frag.base_generation != o.t.base_generation) {
    return refuse(EINVAL, "fragments disagree on flags or base_generation");
  }
  if (o.next_frag >= kMaxFragments) return refuse(E2BIG, "more than " + std::to_string(kMaxFragments) + " fragments");
  if (wire_bytes > kMaxBytes - bytes_) {
    return refuse(E2BIG, "transaction data past " + std::to_string(kMaxBytes >> 20) + " MiB buffered on this session");
  }
  for (auto& r : frag.ranges) o.t.ranges.push_back(std::move(r));
  o.bytes += wire_bytes;
  bytes_ += wire_bytes;
  o.next_frag++;
  if (!frag.last) return Outcome::kNeedMore;
  *done = std::move(o.t);
  Drop(id);
  return Outcome::kComplete;
}

RequestError ValidateTransaction(const Transaction& t, const IdMap& ids) {
  // Ranges: one objectid each, the tenant's, not overlapping.
  std::vector<const proto::ItemRange*> order;
  size_t items = 0;
  for (const auto& r : t.ranges) {
    if (r.min.objectid != r.max.objectid) return Err(EINVAL, "range " + K(r.min) + " covers more than one objectid");
    if (r.min.objectid < CRFS_ROOT_OBJECTID)
      return Err(ENOENT, "range " + K(r.min) + ": no such object in the tenant (objectids start at 256)");
    order.push_back(&r);
    items += r.items.size();
  }
  if (items > kMaxItems) return Err(E2BIG, "more than " + std::to_string(kMaxItems) + " items");
  std::sort(order.begin(), order.end(), [](auto* a, auto* b) { return a->min < b->min; });
  for (size_t i = 1; i < order.size(); i++) {
    if (!(order[i - 1]->max < order[i]->min)) return Err(EINVAL, "ranges overlap at " + K(order[i]->min));
  }

  std::set<uint64_t> created;                                // provisional objects with an INODE_ITEM
  std::map<uint64_t, uint32_t> modes;                        // objectid -> mode, for listed inodes
  std::set<uint64_t> referenced;                             // provisional objectids used anywhere
  std::set<uint64_t> provisional_indexes;                    // provisional DIR_INDEX offsets
  std::map<uint64_t, std::map<std::string, Entry>> by_name;  // DIR_ITEM entries per directory
  std::map<uint64_t, int> dir_links;                         // directory -> names pointing at it
  for (const auto& r : t.ranges) {
    for (const auto& it : r.items) {
      const Key& k = it.key;
      if (proto::IsProvisional(k.objectid)) referenced.insert(k.objectid);
      if (const auto* in = std::get_if<proto::InodeItem>(&it.body)) {
        if (proto::IsProvisional(k.objectid)) created.insert(k.objectid);
        modes[k.objectid] = in->mode;
        if (in->size > kMaxFileSize) return Err(EFBIG, K(k) + ": size past the largest file");
        if (!ids.UidToHost(in->uid))
          return Err(EPERM, K(k) + ": uid " + std::to_string(in->uid) + " is outside the tenant's id map");
        if (!ids.GidToHost(in->gid))
          return Err(EPERM, K(k) + ": gid " + std::to_string(in->gid) + " is outside the tenant's id map");
      } else if (const auto* d = std::get_if<proto::DirEntries>(&it.body)) {
        for (const auto& e : d->entries) {
          if (!ValidName(e.name)) return Err(EINVAL, K(k) + ": invalid name");
          if (proto::IsProvisional(e.location.objectid)) referenced.insert(e.location.objectid);
          if (k.type == CRFS_DIR_ITEM_KEY) {
            if (k.offset != proto::BtrfsNameHash(e.name)) return Err(EINVAL, K(k) + ": offset is not the name's hash");
            if (!by_name[k.objectid].emplace(e.name, Entry{e.location.objectid, e.type}).second) {
              return Err(EINVAL, K(k) + ": name listed twice");
            }
            if (e.type == CRFS_FT_DIR && ++dir_links[e.location.objectid] > 1) {
              return Err(EPERM, "directory " + std::to_string(e.location.objectid) + " would have two names");
            }
          } else if (proto::IsProvisional(k.offset) && !provisional_indexes.insert(k.offset).second) {
            return Err(EINVAL, K(k) + ": provisional index used twice");
          }
        }
      } else if (const auto* refs = std::get_if<proto::InodeRefs>(&it.body)) {
        for (const auto& e : refs->refs) {
          if (!ValidName(e.name)) return Err(EINVAL, K(k) + ": invalid name");
        }
      } else if (const auto* x = std::get_if<proto::Xattrs>(&it.body)) {
        for (const auto& e : x->entries) {
          if (e.name.rfind("user.", 0) != 0) return Err(EPERM, K(k) + ": only user.* xattrs");
          if (e.name.size() == 5) return Err(EINVAL, K(k) + ": xattr name 'user.' names nothing");
          if (e.name.size() + e.value.size() > kMaxXattrBytes) {
            return Err(E2BIG, K(k) + ": xattr name and value past " + std::to_string(kMaxXattrBytes) + " bytes");
          }
          if (k.offset != proto::BtrfsNameHash(e.name)) return Err(EINVAL, K(k) + ": offset is not the name's hash");
        }
      } else if (const auto* ext = std::get_if<proto::ExtentData>(&it.body)) {
        if (ext->type == CRFS_EXTENT_INLINE && !proto::VerifyDataBlockCrcs(ext->data, ext->csums).ok()) {
          return Err(EBADMSG, K(k) + ": data does not match its crc32c");
        }
        if (k.offset > kMaxFileSize || ext->len > kMaxFileSize - k.offset) {
          return Err(EFBIG, K(k) + ": extent past the largest file");
        }
      }
    }
  }
  // Every DIR_INDEX entry has its DIR_ITEM twin, and entries name the real type.
  for (const auto& r : t.ranges) {
    for (const auto& it : r.items) {
      if (it.key.type != CRFS_DIR_INDEX_KEY && it.key.type != CRFS_DIR_ITEM_KEY) continue;
      for (const auto& e : std::get<proto::DirEntries>(it.body).entries) {
        if (it.key.type == CRFS_DIR_INDEX_KEY) {
          const Entry* twin = nullptr;
          if (auto dir = by_name.find(it.key.objectid); dir != by_name.end()) {
            if (auto m = dir->second.find(e.name); m != dir->second.end()) twin = &m->second;
          }
          if (!twin || twin->location != e.location.objectid || twin->type != e.type) {
            return Err(EINVAL, K(it.key) + ": no matching DIR_ITEM for '" + e.name + "'");
          }
        }
        auto mode = modes.find(e.location.objectid);
        if (mode != modes.end() && proto::FileTypeOfMode(mode->second) != e.type) {
          return Err(EINVAL, K(it.key) + ": entry type does not match the inode's mode");
        }
      }
    }
  }
  for (uint64_t p : referenced) {
    if (provisional_indexes.count(p)) {
      return Err(EINVAL, "provisional value " + std::to_string(p) + " used as an objectid and as an index");
    }
    if (!created.count(p)) {
      return Err(EINVAL, "provisional objectid " + K(Key{p, CRFS_INODE_ITEM_KEY, 0}) + " has no INODE_ITEM");
    }
  }
  return {};
}

}  // namespace crfs::server
