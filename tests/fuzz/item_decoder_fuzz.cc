// libFuzzer target: one item body. The first input byte selects the key
// type from the known ones (or passes through as an unknown type), the rest
// is the body. Oracle as in frame_decoder_fuzz.cc.
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "proto/codec.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace crfs::proto;
  if (size == 0) return 0;
  static const uint8_t kTypes[] = {CRFS_INODE_ITEM_KEY, CRFS_INODE_REF_KEY, CRFS_XATTR_ITEM_KEY,
                                   CRFS_DIR_ITEM_KEY,   CRFS_DIR_INDEX_KEY, CRFS_EXTENT_DATA_KEY};
  const uint8_t type = data[0] < 240 ? kTypes[data[0] % 6] : data[0];
  Bytes body(data + 1, size - 1);
  auto decoded = DecodeItemBody(type, body);
  if (!decoded.ok()) return 0;
  auto again = EncodeItemBody(type, *decoded);
  if (!again.ok() || again->size() != body.size() || std::memcmp(again->data(), body.data(), body.size()) != 0) {
    abort();
  }
  return 0;
}
