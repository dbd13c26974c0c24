// messages.h - the decoded (C++) form of every frame, message and item.
//
// These are plain value types. The byte layouts they correspond to are the
// structs of proto/crfs_proto.h; proto/codec.h converts between the two and
// is the only place that does. A value that came out of the decoder has
// passed every structural check of docs/protocol.md ("Validation by the
// decoder"); semantic checks (name hashes, link counts, permissions) are the
// server's.
#pragma once

#include <array>
#include <compare>
#include <cstdint>
#include <string>
#include <variant>
#include <vector>

#include "proto/crfs_proto.h"

namespace crfs::proto {

struct Key {
  uint64_t objectid = 0;
  uint8_t type = 0;
  uint64_t offset = 0;
  auto operator<=>(const Key&) const = default;
};

inline constexpr Key kMinKey{0, 0, 0};

// A provisional objectid or DIR_INDEX value (protocol.md §6.2): chosen by a
// client for something its transaction creates; the server maps it.
inline constexpr bool IsProvisional(uint64_t v) { return v >= CRFS_PROVISIONAL_FIRST && v != ~0ull; }

// CRFS_FT_* of a st_mode, and back (S_IF* values are fixed by Linux).
inline constexpr uint8_t FileTypeOfMode(uint32_t mode) {
  switch (mode & 0170000) {
    case 0100000: return CRFS_FT_REG_FILE;
    case 0040000: return CRFS_FT_DIR;
    case 0020000: return CRFS_FT_CHRDEV;
    case 0060000: return CRFS_FT_BLKDEV;
    case 0010000: return CRFS_FT_FIFO;
    case 0140000: return CRFS_FT_SOCK;
    case 0120000: return CRFS_FT_SYMLINK;
  }
  return CRFS_FT_UNKNOWN;
}
inline constexpr uint32_t ModeOfFileType(uint8_t type) {
  switch (type) {
    case CRFS_FT_DIR: return 0040000;
    case CRFS_FT_SYMLINK: return 0120000;
    case CRFS_FT_CHRDEV: return 0020000;
    case CRFS_FT_BLKDEV: return 0060000;
    case CRFS_FT_FIFO: return 0010000;
    case CRFS_FT_SOCK: return 0140000;
  }
  return 0100000;
}
inline constexpr Key kMaxKey{~0ull, 0xff, ~0ull};

// ---- item bodies -------------------------------------------------------

struct Timespec {
  uint64_t sec = 0;
  uint32_t nsec = 0;
  bool operator==(const Timespec&) const = default;
};

struct InodeItem {
  uint64_t generation = 0;
  uint64_t transid = 0;
  uint64_t size = 0;
  uint64_t nbytes = 0;
  uint32_t nlink = 0;
  uint32_t uid = 0;
  uint32_t gid = 0;
  uint32_t mode = 0;
  uint64_t rdev = 0;
  uint64_t flags = 0;
  uint64_t sequence = 0;
  Timespec atime, ctime, mtime, otime;
  bool operator==(const InodeItem&) const = default;
};

// One directory entry of a DIR_ITEM (one or more) or DIR_INDEX (exactly one).
struct DirEntry {
  Key location;
  uint64_t transid = 0;
  uint8_t type = CRFS_FT_UNKNOWN;
  std::string name;
  bool operator==(const DirEntry&) const = default;
};
struct DirEntries {
  std::vector<DirEntry> entries;
  bool operator==(const DirEntries&) const = default;
};

struct InodeRefEntry {
  uint64_t index = 0;
  std::string name;
  bool operator==(const InodeRefEntry&) const = default;
};
struct InodeRefs {
  std::vector<InodeRefEntry> refs;
  bool operator==(const InodeRefs&) const = default;
};

struct XattrEntry {
  std::string name;
  std::string value;  // arbitrary bytes
  bool operator==(const XattrEntry&) const = default;
};
struct Xattrs {
  std::vector<XattrEntry> entries;
  bool operator==(const Xattrs&) const = default;
};

struct ExtentData {
  uint64_t generation = 0;
  uint8_t type = CRFS_EXTENT_INLINE;
  uint32_t len = 0;             // data bytes (INLINE) or hole length (HOLE)
  std::vector<uint32_t> csums;  // INLINE: one crc32c per data block
  std::vector<uint8_t> data;    // INLINE: exactly len bytes
  bool operator==(const ExtentData&) const = default;
};

// Which alternative an item holds follows from its key type:
// INODE_ITEM -> InodeItem, INODE_REF -> InodeRefs, XATTR_ITEM -> Xattrs,
// DIR_ITEM/DIR_INDEX -> DirEntries, EXTENT_DATA -> ExtentData.
using ItemBody = std::variant<InodeItem, InodeRefs, Xattrs, DirEntries, ExtentData>;

struct Item {
  Key key;
  ItemBody body;
  // Where the body lay in the decoded range (offset from the range's first
  // byte, and size); set by the decoder for diagnostics such as the snoop
  // printer, ignored by the encoder and by comparisons.
  uint32_t wire_offset = 0;
  uint32_t wire_size = 0;
  bool operator==(const Item& o) const { return key == o.key && body == o.body; }
};

struct ItemRange {
  Key min;
  Key max;
  std::vector<Item> items;  // strictly ascending keys, all within [min, max]
  bool operator==(const ItemRange&) const = default;
};

// ---- messages, in message-type order (variant index + 1 == type) -------

struct FinalReply {
  std::string text;         // optional detail; the status is Frame::info
  uint64_t generation = 0;  // the tenant's when answered (crfs_msg_final_reply)
  bool operator==(const FinalReply&) const = default;
};
struct ItemQuery {
  Key key, min, max;
  uint32_t bytes = 0;
  bool operator==(const ItemQuery&) const = default;
};
// CRFS_MSG_ITEM_RANGE carries an ItemRange.
struct Lock {
  Key min, max;
  uint8_t mode = CRFS_LOCK_READ;
  bool operator==(const Lock&) const = default;
};
struct Grant {
  uint64_t grant_id = 0;
  Key min, max;
  uint8_t mode = CRFS_LOCK_READ;
  uint32_t lease_ms = 0;
  bool operator==(const Grant&) const = default;
};
struct TransFrag {
  uint32_t frag_nr = 0;
  bool last = false;
  uint8_t flags = 0;
  uint64_t base_generation = 0;
  std::vector<ItemRange> ranges;
  bool operator==(const TransFrag&) const = default;
};
struct Revoke {
  uint64_t grant_id = 0;
  uint8_t mode = CRFS_LOCK_NONE;
  bool operator==(const Revoke&) const = default;
};
struct Release {
  uint64_t grant_id = 0;
  uint8_t mode = CRFS_LOCK_NONE;
  bool operator==(const Release&) const = default;
};
struct Hello {
  uint16_t version_min = CRFS_PROTO_VERSION;
  uint16_t version_max = CRFS_PROTO_VERSION;
  uint32_t features = 0;
  uint32_t max_payload = CRFS_MAX_PAYLOAD;
  std::vector<uint8_t> capability;
  std::array<uint8_t, 16> client_id{};  // all zero: no client identity (protocol.md §6.4)
  bool operator==(const Hello&) const = default;
};
struct HelloReply {
  uint16_t version = CRFS_PROTO_VERSION;
  uint32_t features = 0;
  uint32_t max_payload = CRFS_MAX_PAYLOAD;
  uint32_t lease_ms = 0;
  uint64_t session_id = 0;
  uint64_t root_objectid = CRFS_ROOT_OBJECTID;
  uint64_t generation = 0;
  uint32_t uid = 0;  // who the session acts as (tenant ids)
  uint32_t gid = 0;
  bool operator==(const HelloReply&) const = default;
};
struct DataRead {
  uint64_t objectid = 0;
  uint64_t offset = 0;
  uint32_t len = 0;
  bool operator==(const DataRead&) const = default;
};
struct DataPayload {
  uint64_t objectid = 0;
  uint64_t offset = 0;
  std::vector<uint32_t> csums;  // one crc32c per data block
  std::vector<uint8_t> data;
  bool operator==(const DataPayload&) const = default;
};
struct Data : DataPayload {};       // reply to DATA_READ
struct DataWrite : DataPayload {};  // request
struct Snapshot {
  std::string name;
  bool operator==(const Snapshot&) const = default;
};
struct Ping {
  bool operator==(const Ping&) const = default;
};
struct TransMapEntry {
  uint64_t provisional = 0;
  uint64_t real = 0;
  bool operator==(const TransMapEntry&) const = default;
};
struct TransReply {
  uint64_t generation = 0;
  uint32_t flags = 0;
  std::vector<TransMapEntry> map;
  bool operator==(const TransReply&) const = default;
};
struct Sync {
  bool operator==(const Sync&) const = default;
};
struct Durable {
  uint64_t generation = 0;
  bool operator==(const Durable&) const = default;
};
struct TreeQuery {
  uint64_t objectid = 0;
  uint32_t bytes = 0;
  bool operator==(const TreeQuery&) const = default;
};

struct Open {
  uint64_t objectid = 0;
  uint32_t flags = 0;  // CRFS_OPEN_*
  bool operator==(const Open&) const = default;
};
struct Close {
  uint64_t objectid = 0;
  bool operator==(const Close&) const = default;
};

using Message =
    std::variant<FinalReply, ItemQuery, ItemRange, Lock, Grant, TransFrag, Revoke, Release, Hello, HelloReply, DataRead,
                 Data, DataWrite, Snapshot, Ping, TransReply, Sync, Durable, TreeQuery, Open, Close>;
static_assert(std::variant_size_v<Message> == CRFS_MSG_TYPE_MAX);

inline uint16_t MessageType(const Message& m) { return static_cast<uint16_t>(m.index() + 1); }

struct Frame {
  uint64_t id = 0;
  uint32_t info = 0;  // FINAL_REPLY: status (0 or a Linux errno); else 0
  Message msg;
  bool operator==(const Frame&) const = default;
};

// The decoded fixed header; `bytes` of payload follow it.
struct Header {
  uint64_t id = 0;
  uint32_t info = 0;
  uint32_t bytes = 0;
  uint16_t type = 0;
};

}  // namespace crfs::proto
