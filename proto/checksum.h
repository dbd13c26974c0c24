// checksum.h - the two crc32c uses of the protocol.
//
// Both are CRC-32C (Castagnoli), computed by ISA-L (hardware accelerated
// where the CPU has SSE4.2):
//  - BtrfsNameHash: btrfs's directory/xattr name hash, crc32c seeded with ~1
//    and without the final inversion, exactly as btrfs's btrfs_name_hash().
//    It is the offset of DIR_ITEM and XATTR_ITEM keys. "default" hashes to
//    2378154706.
//  - DataCrc32c: the standard CRC-32C (seed ~0, final inversion) of one data
//    block, the value btrfs stores in its checksum tree for data blocks. The
//    protocol carries one per CRFS_DATA_BLOCK_SIZE block of file data.
//
// Pure functions; thread-safe.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "proto/status.h"

namespace crfs::proto {

// Raw CRC-32C update: no inversion in or out.
uint32_t Crc32cUpdate(uint32_t crc, std::span<const uint8_t> data);

uint32_t BtrfsNameHash(std::string_view name);

uint32_t DataCrc32c(std::span<const uint8_t> block);

// Number of checksum blocks covering `len` bytes of data.
constexpr uint32_t DataBlockCount(uint64_t len, uint32_t block_size) {
  return static_cast<uint32_t>((len + block_size - 1) / block_size);
}

// One crc per CRFS_DATA_BLOCK_SIZE block of `data` (the last may be short).
std::vector<uint32_t> DataBlockCrcs(std::span<const uint8_t> data);

// OK when `crcs` are exactly DataBlockCrcs(data); kChecksum names the first
// block that differs, kBadCount if the number of crcs is wrong.
Status VerifyDataBlockCrcs(std::span<const uint8_t> data, std::span<const uint32_t> crcs);

}  // namespace crfs::proto
