#include "proto/checksum.h"

#include <gtest/gtest.h>

#include "proto/crfs_proto.h"

namespace crfs::proto {
namespace {

TEST(Checksum, BtrfsNameHashOfDefault) {
  // The value btrfs stores as the DIR_ITEM offset of "default" in the root
  // tree (also checked against a real image in name_hash_btrfs.sh).
  EXPECT_EQ(BtrfsNameHash("default"), 2378154706u);
}

TEST(Checksum, NameHashIsRawCrcWithSeedNotOne) {
  const std::string name = "some-dir";
  EXPECT_EQ(BtrfsNameHash(name),
            Crc32cUpdate(~1u, std::span(reinterpret_cast<const uint8_t*>(name.data()), name.size())));
  EXPECT_NE(BtrfsNameHash("a"), BtrfsNameHash("b"));
  EXPECT_EQ(BtrfsNameHash(""), ~1u);
}

TEST(Checksum, StandardCrc32cCheckValue) {
  const std::string s = "123456789";  // the CRC catalogue's check input
  EXPECT_EQ(DataCrc32c(std::span(reinterpret_cast<const uint8_t*>(s.data()), s.size())), 0xe3069283u);
}

TEST(Checksum, OneCrcPerBlockLastShort) {
  std::vector<uint8_t> data(2 * CRFS_DATA_BLOCK_SIZE + 10, 0xab);
  auto crcs = DataBlockCrcs(data);
  ASSERT_EQ(crcs.size(), 3u);
  EXPECT_EQ(crcs[0], crcs[1]);
  EXPECT_NE(crcs[1], crcs[2]);
  EXPECT_TRUE(VerifyDataBlockCrcs(data, crcs).ok());
  EXPECT_EQ(DataBlockCount(0, 4096), 0u);
  EXPECT_EQ(DataBlockCount(4096, 4096), 1u);
  EXPECT_EQ(DataBlockCount(4097, 4096), 2u);
}

TEST(Checksum, VerifyNamesTheBadBlock) {
  std::vector<uint8_t> data(3 * CRFS_DATA_BLOCK_SIZE, 0);
  auto crcs = DataBlockCrcs(data);
  data[CRFS_DATA_BLOCK_SIZE * 2 + 7] ^= 1;
  Status s = VerifyDataBlockCrcs(data, crcs);
  EXPECT_EQ(s.code(), Code::kChecksum);
  EXPECT_NE(s.message().find("block 2"), std::string::npos) << s.ToString();
  crcs.pop_back();
  EXPECT_EQ(VerifyDataBlockCrcs(data, crcs).code(), Code::kBadCount);
}

}  // namespace
}  // namespace crfs::proto
