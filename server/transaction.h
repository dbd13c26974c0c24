// transaction.h - a client's transaction, reassembled and checked before
// anything touches the file system (docs/protocol.md §6).
//
// TransactionAssembler collects the TRANS_FRAG fragments of one session by
// transaction id: fragments must arrive in order (0, 1, 2, ...), agree on
// flags and base_generation, and stay within per-session bounds, so a
// client cannot make the server buffer without limit.
//
// ValidateTransaction applies every rule that needs no file system: ranges
// do not overlap and each covers one objectid; objectids are the tenant's
// (>= 256); DIR_ITEM and XATTR_ITEM offsets are the names' btrfs hashes;
// names carry no '/' or NUL and are not "." or ".."; xattrs are user.*;
// every DIR_INDEX entry has its DIR_ITEM twin; a directory is not linked
// twice; a provisional object is created whole (it has an INODE_ITEM) and
// its dir entries name its real file type; provisional values are unique;
// inline data matches its crc32c; uids and gids are in the tenant's map.
// Rules that need the current tree (link counts, sizes, rename cycles,
// base_generation) are the committer's.
//
// Not thread-safe: one assembler per session.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <vector>

#include "proto/messages.h"
#include "proto/status.h"
#include "server/idmap.h"
#include "server/request_error.h"

namespace crfs::server {

struct Transaction {
  uint64_t id = 0;
  uint8_t flags = 0;
  uint64_t base_generation = 0;
  std::vector<proto::ItemRange> ranges;
  // How many provisional-to-real entries the session's TRANS_REPLY can
  // carry: (max_payload - 16) / 16 (protocol.md §6.2). A transaction whose
  // map would be longer is refused (E2BIG) before it is applied.
  size_t max_reply_map = CRFS_MAX_TRANS_MAP;
};

class TransactionAssembler {
 public:
  static constexpr size_t kMaxOpen = 16;            // transactions in flight per session
  static constexpr size_t kMaxBytes = 64ull << 20;  // buffered fragment bytes per session
  static constexpr uint32_t kMaxFragments = 4096;   // fragments per transaction

  enum class Outcome { kNeedMore, kComplete, kRefused };

  // Adds fragment `frag` (payload of `wire_bytes`) of transaction `id`.
  // kComplete moves the whole transaction into *done; kRefused sets *err and
  // forgets the transaction (the client must start it again).
  Outcome Add(uint64_t id, proto::TransFrag frag, size_t wire_bytes, Transaction* done, RequestError* err);

  size_t open() const { return open_.size(); }
  size_t buffered_bytes() const { return bytes_; }

 private:
  struct Open {
    Transaction t;
    uint32_t next_frag = 0;
    size_t bytes = 0;
  };
  void Drop(uint64_t id);

  std::map<uint64_t, Open> open_;
  size_t bytes_ = 0;
};

// 0 (err->err == 0) if `t` passes every rule above, else the errno to answer
// with and a text naming the offending key.
RequestError ValidateTransaction(const Transaction& t, const IdMap& ids);

}  // namespace crfs::server
