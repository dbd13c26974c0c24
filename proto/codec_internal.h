// codec_internal.h - pieces shared by item_codec.cc and frame_codec.cc.
// Not part of the proto library's interface.
#pragma once

#include "proto/messages.h"
#include "proto/status.h"
#include "proto/wire_reader.h"

namespace crfs::proto::internal {

Status ReadKey(Reader* r, Key* out, const char* what);
void WriteKey(Writer* w, const Key& k);

// Reads one struct crfs_item_range (with items and bodies) from the front of
// `r`, consuming exactly its `bytes`.
Status ReadRange(Reader* r, ItemRange* out);
Status WriteRange(Writer* w, const ItemRange& range);

// Reads `nr_csums` crcs then data for a block-checksummed payload of `len`
// bytes, requiring nr_csums == DataBlockCount(len) and the reader to end
// exactly after the data.
Status ReadCsummedData(Reader* r, uint32_t len, uint16_t nr_csums, std::vector<uint32_t>* csums,
                       std::vector<uint8_t>* data);

}  // namespace crfs::proto::internal
