#include "proto/checksum.h"

#include <isa-l/crc.h>

#include <algorithm>
#include <string>

#include "proto/crfs_proto.h"

namespace crfs::proto {

uint32_t Crc32cUpdate(uint32_t crc, std::span<const uint8_t> data) {
  // ISA-L takes an int length; feed it in pieces that fit.
  constexpr size_t kChunk = 1u << 30;
  while (!data.empty()) {
    size_t n = data.size() < kChunk ? data.size() : kChunk;
    crc = crc32_iscsi(const_cast<unsigned char*>(data.data()), static_cast<int>(n), crc);
    data = data.subspan(n);
  }
  return crc;
}

uint32_t BtrfsNameHash(std::string_view name) {
  return Crc32cUpdate(~1u, std::span(reinterpret_cast<const uint8_t*>(name.data()), name.size()));
}

uint32_t DataCrc32c(std::span<const uint8_t> block) { return ~Crc32cUpdate(~0u, block); }

std::vector<uint32_t> DataBlockCrcs(std::span<const uint8_t> data) {
  std::vector<uint32_t> crcs;
  crcs.reserve(DataBlockCount(data.size(), CRFS_DATA_BLOCK_SIZE));
  for (size_t off = 0; off < data.size(); off += CRFS_DATA_BLOCK_SIZE) {
    crcs.push_back(DataCrc32c(data.subspan(off, std::min<size_t>(CRFS_DATA_BLOCK_SIZE, data.size() - off))));
  }
  return crcs;
}

Status VerifyDataBlockCrcs(std::span<const uint8_t> data, std::span<const uint32_t> crcs) {
  if (crcs.size() != DataBlockCount(data.size(), CRFS_DATA_BLOCK_SIZE)) {
    return Status(Code::kBadCount,
                  std::to_string(crcs.size()) + " checksums for " + std::to_string(data.size()) + " bytes of data");
  }
  for (size_t i = 0; i < crcs.size(); i++) {
    size_t off = i * CRFS_DATA_BLOCK_SIZE;
    uint32_t got = DataCrc32c(data.subspan(off, std::min<size_t>(CRFS_DATA_BLOCK_SIZE, data.size() - off)));
    if (got != crcs[i]) {
      return Status(Code::kChecksum, "data block " + std::to_string(i) + " crc32c " + std::to_string(got) +
                                         " != " + std::to_string(crcs[i]));
    }
  }
  return Status::Ok();
}

}  // namespace crfs::proto
