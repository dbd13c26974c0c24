// item_codec.cc - keys, item bodies and item ranges.
#include <algorithm>
#include <string>
#include <utility>

#include "proto/checksum.h"
#include "proto/codec.h"
#include "proto/codec_internal.h"

namespace crfs::proto {
namespace internal {

namespace {

Status Bad(Code code, std::string msg) { return Status(code, std::move(msg)); }

bool ValidFileMode(uint32_t mode) {
  switch (mode & 0170000) {
    case 0140000:  // socket
    case 0120000:  // symlink
    case 0100000:  // regular
    case 0060000:  // block device
    case 0040000:  // directory
    case 0020000:  // char device
    case 0010000:  // fifo
      return true;
  }
  return false;
}

Status ReadTimespec(Reader* r, Timespec* t, const char* what) {
  CRFS_RETURN_IF_ERROR(r->Le64(&t->sec, what));
  CRFS_RETURN_IF_ERROR(r->Le32(&t->nsec, what));
  if (t->nsec >= 1000000000u) return Bad(Code::kBadValue, std::string(what) + " nsec >= 1e9");
  return Status::Ok();
}

void WriteTimespec(Writer* w, const Timespec& t) {
  w->Le64(t.sec);
  w->Le32(t.nsec);
}

// Reads a name of 1..CRFS_MAX_NAME bytes whose length was announced.
Status ReadName(Reader* r, uint16_t len, std::string* out, const char* what) {
  if (len == 0) return Bad(Code::kBadValue, std::string(what) + " is empty");
  if (len > CRFS_MAX_NAME) {
    return Bad(Code::kTooLarge,
               std::string(what) + " length " + std::to_string(len) + " > " + std::to_string(CRFS_MAX_NAME));
  }
  return r->TakeString(len, out, what);
}

Status CheckName(const std::string& name, const char* what) {
  if (name.empty() || name.size() > CRFS_MAX_NAME) {
    return Bad(Code::kInvalidArgument, std::string(what) + " must be 1.." + std::to_string(CRFS_MAX_NAME) +
                                           " bytes, is " + std::to_string(name.size()));
  }
  return Status::Ok();
}

Status ReadInodeItem(Reader* r, InodeItem* i) {
  CRFS_RETURN_IF_ERROR(r->Le64(&i->generation, "inode generation"));
  CRFS_RETURN_IF_ERROR(r->Le64(&i->transid, "inode transid"));
  CRFS_RETURN_IF_ERROR(r->Le64(&i->size, "inode size"));
  CRFS_RETURN_IF_ERROR(r->Le64(&i->nbytes, "inode nbytes"));
  CRFS_RETURN_IF_ERROR(r->Le32(&i->nlink, "inode nlink"));
  CRFS_RETURN_IF_ERROR(r->Le32(&i->uid, "inode uid"));
  CRFS_RETURN_IF_ERROR(r->Le32(&i->gid, "inode gid"));
  CRFS_RETURN_IF_ERROR(r->Le32(&i->mode, "inode mode"));
  CRFS_RETURN_IF_ERROR(r->Le64(&i->rdev, "inode rdev"));
  CRFS_RETURN_IF_ERROR(r->Le64(&i->flags, "inode flags"));
  CRFS_RETURN_IF_ERROR(r->Le64(&i->sequence, "inode sequence"));
  CRFS_RETURN_IF_ERROR(ReadTimespec(r, &i->atime, "inode atime"));
  CRFS_RETURN_IF_ERROR(ReadTimespec(r, &i->ctime, "inode ctime"));
  CRFS_RETURN_IF_ERROR(ReadTimespec(r, &i->mtime, "inode mtime"));
  CRFS_RETURN_IF_ERROR(ReadTimespec(r, &i->otime, "inode otime"));
  CRFS_RETURN_IF_ERROR(r->ExpectEnd("inode item"));
  if (!ValidFileMode(i->mode)) return Bad(Code::kBadValue, "inode mode has no valid file type");
  if (i->mode & ~0177777u) return Bad(Code::kBadValue, "inode mode has unknown bits");
  return Status::Ok();
}

void WriteInodeItem(Writer* w, const InodeItem& i) {
  w->Le64(i.generation);
  w->Le64(i.transid);
  w->Le64(i.size);
  w->Le64(i.nbytes);
  w->Le32(i.nlink);
  w->Le32(i.uid);
  w->Le32(i.gid);
  w->Le32(i.mode);
  w->Le64(i.rdev);
  w->Le64(i.flags);
  w->Le64(i.sequence);
  WriteTimespec(w, i.atime);
  WriteTimespec(w, i.ctime);
  WriteTimespec(w, i.mtime);
  WriteTimespec(w, i.otime);
}

Status ReadDirEntries(Reader* r, bool exactly_one, DirEntries* out) {
  do {
    DirEntry e;
    uint16_t name_len = 0;
    CRFS_RETURN_IF_ERROR(ReadKey(r, &e.location, "dir entry location"));
    CRFS_RETURN_IF_ERROR(r->Le64(&e.transid, "dir entry transid"));
    CRFS_RETURN_IF_ERROR(r->Le16(&name_len, "dir entry name_len"));
    CRFS_RETURN_IF_ERROR(r->U8(&e.type, "dir entry type"));
    CRFS_RETURN_IF_ERROR(ReadName(r, name_len, &e.name, "dir entry name"));
    if (e.type == CRFS_FT_UNKNOWN || e.type >= CRFS_FT_MAX) {
      return Bad(Code::kUnknownType, "dir entry file type " + std::to_string(e.type));
    }
    if (e.location.type != CRFS_INODE_ITEM_KEY || e.location.offset != 0) {
      return Bad(Code::kBadValue, "dir entry location is not an inode key (ino, 1, 0)");
    }
    out->entries.push_back(std::move(e));
  } while (!r->empty() && !exactly_one);
  return r->ExpectEnd("dir index entry");
}

Status WriteDirEntries(Writer* w, const DirEntries& d) {
  for (const DirEntry& e : d.entries) {
    CRFS_RETURN_IF_ERROR(CheckName(e.name, "dir entry name"));
    WriteKey(w, e.location);
    w->Le64(e.transid);
    w->Le16(static_cast<uint16_t>(e.name.size()));
    w->U8(e.type);
    w->Put(e.name);
  }
  return Status::Ok();
}

Status ReadInodeRefs(Reader* r, InodeRefs* out) {
  do {
    InodeRefEntry e;
    uint16_t name_len = 0;
    CRFS_RETURN_IF_ERROR(r->Le64(&e.index, "inode ref index"));
    CRFS_RETURN_IF_ERROR(r->Le16(&name_len, "inode ref name_len"));
    CRFS_RETURN_IF_ERROR(ReadName(r, name_len, &e.name, "inode ref name"));
    out->refs.push_back(std::move(e));
  } while (!r->empty());
  return Status::Ok();
}

Status WriteInodeRefs(Writer* w, const InodeRefs& refs) {
  for (const InodeRefEntry& e : refs.refs) {
    CRFS_RETURN_IF_ERROR(CheckName(e.name, "inode ref name"));
    w->Le64(e.index);
    w->Le16(static_cast<uint16_t>(e.name.size()));
    w->Put(e.name);
  }
  return Status::Ok();
}

Status ReadXattrs(Reader* r, Xattrs* out) {
  do {
    XattrEntry e;
    uint16_t name_len = 0;
    uint32_t value_len = 0;
    CRFS_RETURN_IF_ERROR(r->Le16(&name_len, "xattr name_len"));
    CRFS_RETURN_IF_ERROR(r->Le32(&value_len, "xattr value_len"));
    if (value_len > CRFS_MAX_XATTR_VALUE) {
      return Bad(Code::kTooLarge,
                 "xattr value_len " + std::to_string(value_len) + " > " + std::to_string(CRFS_MAX_XATTR_VALUE));
    }
    CRFS_RETURN_IF_ERROR(ReadName(r, name_len, &e.name, "xattr name"));
    CRFS_RETURN_IF_ERROR(r->TakeString(value_len, &e.value, "xattr value"));
    out->entries.push_back(std::move(e));
  } while (!r->empty());
  return Status::Ok();
}

Status WriteXattrs(Writer* w, const Xattrs& x) {
  for (const XattrEntry& e : x.entries) {
    CRFS_RETURN_IF_ERROR(CheckName(e.name, "xattr name"));
    if (e.value.size() > CRFS_MAX_XATTR_VALUE) return Bad(Code::kInvalidArgument, "xattr value too large");
    w->Le16(static_cast<uint16_t>(e.name.size()));
    w->Le32(static_cast<uint32_t>(e.value.size()));
    w->Put(e.name);
    w->Put(e.value);
  }
  return Status::Ok();
}

Status ReadExtentData(Reader* r, ExtentData* e) {
  uint8_t reserved = 0;
  uint16_t nr_csums = 0;
  CRFS_RETURN_IF_ERROR(r->Le64(&e->generation, "extent generation"));
  CRFS_RETURN_IF_ERROR(r->Le32(&e->len, "extent len"));
  CRFS_RETURN_IF_ERROR(r->U8(&e->type, "extent type"));
  CRFS_RETURN_IF_ERROR(r->U8(&reserved, "extent reserved"));
  CRFS_RETURN_IF_ERROR(r->Le16(&nr_csums, "extent nr_csums"));
  if (reserved != 0) return Bad(Code::kBadValue, "extent reserved byte is not zero");
  if (e->len == 0) return Bad(Code::kBadValue, "extent len is zero");
  switch (e->type) {
    case CRFS_EXTENT_INLINE: return ReadCsummedData(r, e->len, nr_csums, &e->csums, &e->data);
    case CRFS_EXTENT_HOLE:
    case CRFS_EXTENT_REG:
      if (nr_csums != 0) return Bad(Code::kBadCount, "hole or regular extent carries checksums");
      return r->ExpectEnd("hole or regular extent");
  }
  return Bad(Code::kUnknownType, "extent type " + std::to_string(e->type));
}

Status WriteExtentData(Writer* w, const ExtentData& e) {
  if (e.type == CRFS_EXTENT_INLINE && (e.data.size() != e.len || e.len > CRFS_MAX_DATA_BYTES ||
                                       e.csums.size() != DataBlockCount(e.len, CRFS_DATA_BLOCK_SIZE))) {
    return Bad(Code::kInvalidArgument, "inline extent len, data and checksums disagree");
  }
  if (e.type != CRFS_EXTENT_INLINE && (!e.data.empty() || !e.csums.empty())) {
    return Bad(Code::kInvalidArgument, "hole or regular extent with data or checksums");
  }
  w->Le64(e.generation);
  w->Le32(e.len);
  w->U8(e.type);
  w->U8(0);
  w->Le16(static_cast<uint16_t>(e.csums.size()));
  for (uint32_t c : e.csums) w->Le32(c);
  w->Put(e.data);
  return Status::Ok();
}

}  // namespace

Status ReadKey(Reader* r, Key* out, const char* what) {
  CRFS_RETURN_IF_ERROR(r->Le64(&out->objectid, what));
  CRFS_RETURN_IF_ERROR(r->U8(&out->type, what));
  return r->Le64(&out->offset, what);
}

void WriteKey(Writer* w, const Key& k) {
  w->Le64(k.objectid);
  w->U8(k.type);
  w->Le64(k.offset);
}

Status ReadCsummedData(Reader* r, uint32_t len, uint16_t nr_csums, std::vector<uint32_t>* csums,
                       std::vector<uint8_t>* data) {
  if (len > CRFS_MAX_DATA_BYTES) {
    return Bad(Code::kTooLarge, "data len " + std::to_string(len) + " > " + std::to_string(CRFS_MAX_DATA_BYTES));
  }
  if (nr_csums != DataBlockCount(len, CRFS_DATA_BLOCK_SIZE)) {
    return Bad(Code::kBadCount, std::to_string(nr_csums) + " checksums for " + std::to_string(len) + " bytes");
  }
  if (r->remaining() != size_t{nr_csums} * 4 + len) {
    return Bad(Code::kLengthMismatch, "checksums and data need " + std::to_string(size_t{nr_csums} * 4 + len) +
                                          " bytes, " + std::to_string(r->remaining()) + " present");
  }
  csums->resize(nr_csums);
  for (uint32_t& c : *csums) CRFS_RETURN_IF_ERROR(r->Le32(&c, "data crc32c"));
  Bytes b;
  CRFS_RETURN_IF_ERROR(r->Take(len, &b, "data"));
  data->assign(b.begin(), b.end());
  return Status::Ok();
}

Status ReadRange(Reader* r, ItemRange* out) {
  uint32_t nr_items = 0;
  uint32_t bytes = 0;
  CRFS_RETURN_IF_ERROR(ReadKey(r, &out->min, "range min"));
  CRFS_RETURN_IF_ERROR(ReadKey(r, &out->max, "range max"));
  CRFS_RETURN_IF_ERROR(r->Le32(&nr_items, "range nr_items"));
  CRFS_RETURN_IF_ERROR(r->Le32(&bytes, "range bytes"));
  constexpr size_t kHead = sizeof(struct crfs_item_range);
  if (bytes < kHead) return Bad(Code::kLengthMismatch, "range bytes " + std::to_string(bytes) + " < header");
  if (nr_items > CRFS_MAX_RANGE_ITEMS) {
    return Bad(Code::kTooLarge,
               "range nr_items " + std::to_string(nr_items) + " > " + std::to_string(CRFS_MAX_RANGE_ITEMS));
  }
  if (out->max < out->min) return Bad(Code::kOutOfOrder, "range max is below range min");
  // The rest of the range: the item array and the bodies. Everything below
  // reads from `body`, so nothing can reach past the range's own bytes.
  Reader rest(Bytes{});
  CRFS_RETURN_IF_ERROR(r->Sub(bytes - kHead, &rest, "range items and bodies"));
  const size_t array_bytes = size_t{nr_items} * sizeof(struct crfs_item);
  if (array_bytes > rest.remaining()) {
    return Bad(Code::kBadCount, "range nr_items " + std::to_string(nr_items) + " needs " + std::to_string(array_bytes) +
                                    " bytes, range has " + std::to_string(rest.remaining()));
  }
  struct Loc {
    uint32_t offset, size;
    size_t index;
  };
  std::vector<Loc> locs(nr_items);
  out->items.resize(nr_items);
  for (uint32_t i = 0; i < nr_items; i++) {
    CRFS_RETURN_IF_ERROR(ReadKey(&rest, &out->items[i].key, "item key"));
    CRFS_RETURN_IF_ERROR(rest.Le32(&locs[i].offset, "item offset"));
    CRFS_RETURN_IF_ERROR(rest.Le32(&locs[i].size, "item size"));
    locs[i].index = i;
    const Key& k = out->items[i].key;
    if (k < out->min || out->max < k) return Bad(Code::kOutOfOrder, "item " + std::to_string(i) + " key outside range");
    if (i > 0 && !(out->items[i - 1].key < k)) {
      return Bad(Code::kOutOfOrder, "item " + std::to_string(i) + " key not above the previous key");
    }
  }
  // Bodies must tile the data area exactly: no overlap, no slack bytes.
  Bytes data_area;
  CRFS_RETURN_IF_ERROR(rest.Take(rest.remaining(), &data_area, "item bodies"));
  const size_t data_start = kHead + array_bytes;
  std::sort(locs.begin(), locs.end(), [](const Loc& a, const Loc& b) { return a.offset < b.offset; });
  size_t expect = data_start;
  for (const Loc& l : locs) {
    if (l.size > CRFS_MAX_ITEM_BYTES) {
      return Bad(Code::kTooLarge, "item " + std::to_string(l.index) + " size " + std::to_string(l.size));
    }
    if (l.offset != expect) {
      return Bad(Code::kLengthMismatch, "item " + std::to_string(l.index) + " body at " + std::to_string(l.offset) +
                                            ", expected " + std::to_string(expect) + " (overlap or gap)");
    }
    if (l.size > data_start + data_area.size() - expect) {
      return Bad(Code::kLengthMismatch, "item " + std::to_string(l.index) + " body runs past the range");
    }
    auto body = DecodeItemBody(out->items[l.index].key.type, data_area.subspan(l.offset - data_start, l.size));
    if (!body.ok()) {
      Status s = body.status();
      return Status(s.code(), "item " + std::to_string(l.index) + ": " + s.message());
    }
    out->items[l.index].body = std::move(*body);
    out->items[l.index].wire_offset = l.offset;
    out->items[l.index].wire_size = l.size;
    expect += l.size;
  }
  if (expect != data_start + data_area.size()) {
    return Bad(Code::kLengthMismatch,
               std::to_string(data_start + data_area.size() - expect) + " bytes in range not covered by any item");
  }
  return Status::Ok();
}

Status WriteRange(Writer* w, const ItemRange& range) {
  if (range.items.size() > CRFS_MAX_RANGE_ITEMS) return Bad(Code::kInvalidArgument, "too many items in range");
  std::vector<std::vector<uint8_t>> bodies;
  bodies.reserve(range.items.size());
  size_t total = sizeof(struct crfs_item_range) + range.items.size() * sizeof(struct crfs_item);
  for (const Item& it : range.items) {
    auto b = EncodeItemBody(it.key.type, it.body);
    if (!b.ok()) return b.status();
    total += b->size();
    bodies.push_back(std::move(*b));
  }
  if (total > CRFS_MAX_PAYLOAD) return Bad(Code::kTooLarge, "range of " + std::to_string(total) + " bytes");
  WriteKey(w, range.min);
  WriteKey(w, range.max);
  w->Le32(static_cast<uint32_t>(range.items.size()));
  w->Le32(static_cast<uint32_t>(total));
  uint32_t off = static_cast<uint32_t>(sizeof(struct crfs_item_range) + range.items.size() * sizeof(struct crfs_item));
  for (size_t i = 0; i < range.items.size(); i++) {
    WriteKey(w, range.items[i].key);
    w->Le32(off);
    w->Le32(static_cast<uint32_t>(bodies[i].size()));
    off += static_cast<uint32_t>(bodies[i].size());
  }
  for (const auto& b : bodies) w->Put(b);
  return Status::Ok();
}

}  // namespace internal

using internal::Bad;

Result<ItemBody> DecodeItemBody(uint8_t key_type, Bytes body) {
  Reader r(body);
  switch (key_type) {
    case CRFS_INODE_ITEM_KEY: {
      InodeItem i;
      CRFS_RETURN_IF_ERROR(internal::ReadInodeItem(&r, &i));
      return ItemBody(std::move(i));
    }
    case CRFS_INODE_REF_KEY: {
      InodeRefs refs;
      CRFS_RETURN_IF_ERROR(internal::ReadInodeRefs(&r, &refs));
      return ItemBody(std::move(refs));
    }
    case CRFS_XATTR_ITEM_KEY: {
      Xattrs x;
      CRFS_RETURN_IF_ERROR(internal::ReadXattrs(&r, &x));
      return ItemBody(std::move(x));
    }
    case CRFS_DIR_ITEM_KEY:
    case CRFS_DIR_INDEX_KEY: {
      DirEntries d;
      CRFS_RETURN_IF_ERROR(internal::ReadDirEntries(&r, key_type == CRFS_DIR_INDEX_KEY, &d));
      return ItemBody(std::move(d));
    }
    case CRFS_EXTENT_DATA_KEY: {
      ExtentData e;
      CRFS_RETURN_IF_ERROR(internal::ReadExtentData(&r, &e));
      return ItemBody(std::move(e));
    }
  }
  return Bad(Code::kUnknownType, "item type " + std::to_string(key_type));
}

Result<std::vector<uint8_t>> EncodeItemBody(uint8_t key_type, const ItemBody& body) {
  Writer w(CRFS_MAX_ITEM_BYTES);
  Status s;
  switch (key_type) {
    case CRFS_INODE_ITEM_KEY:
      if (!std::holds_alternative<InodeItem>(body)) break;
      internal::WriteInodeItem(&w, std::get<InodeItem>(body));
      break;
    case CRFS_INODE_REF_KEY:
      if (!std::holds_alternative<InodeRefs>(body)) break;
      s = internal::WriteInodeRefs(&w, std::get<InodeRefs>(body));
      break;
    case CRFS_XATTR_ITEM_KEY:
      if (!std::holds_alternative<Xattrs>(body)) break;
      s = internal::WriteXattrs(&w, std::get<Xattrs>(body));
      break;
    case CRFS_DIR_ITEM_KEY:
    case CRFS_DIR_INDEX_KEY:
      if (!std::holds_alternative<DirEntries>(body)) break;
      if (key_type == CRFS_DIR_INDEX_KEY && std::get<DirEntries>(body).entries.size() != 1) {
        return Bad(Code::kInvalidArgument, "a DIR_INDEX item holds exactly one entry");
      }
      s = internal::WriteDirEntries(&w, std::get<DirEntries>(body));
      break;
    case CRFS_EXTENT_DATA_KEY:
      if (!std::holds_alternative<ExtentData>(body)) break;
      s = internal::WriteExtentData(&w, std::get<ExtentData>(body));
      break;
    default: return Bad(Code::kInvalidArgument, "item type " + std::to_string(key_type));
  }
  CRFS_RETURN_IF_ERROR(s);
  CRFS_RETURN_IF_ERROR(w.status());
  if (w.size() == 0)
    return Bad(Code::kInvalidArgument, "item body is empty or does not match key type " + std::to_string(key_type));
  return std::move(w).Take();
}

}  // namespace crfs::proto
