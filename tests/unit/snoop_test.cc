#include "proto/snoop.h"

#include <gtest/gtest.h>

#include "proto/checksum.h"
#include "proto/codec.h"

namespace crfs::proto {
namespace {

TEST(Snoop, KeysPrintLikeCrfs2008) {
  EXPECT_EQ(FormatKey({256, CRFS_INODE_ITEM_KEY, 0}), "(256.i.0)");
  EXPECT_EQ(FormatKey(kMinKey), "(0.0.0)");
  EXPECT_EQ(FormatKey(kMaxKey), "(~0.~0.~0)");
  EXPECT_EQ(FormatKey({5, CRFS_DIR_ITEM_KEY, 0x9371c7261dac5beaull}), "(5.d.0x9371c7261dac5bea)");
  EXPECT_EQ(FormatKey({5, CRFS_DIR_INDEX_KEY, 5}), "(5.D.5)");
  EXPECT_EQ(FormatKey({CRFS_PROVISIONAL_FIRST + 2, CRFS_INODE_REF_KEY, 256}), "(p2.r.256)");
  EXPECT_EQ(FormatKey({7, 42, 1}), "(7.42.1)");
}

TEST(Snoop, QueryAndMkdirRangeLines) {
  Frame q{1, 0, ItemQuery{{256, CRFS_INODE_ITEM_KEY, 0}, kMinKey, kMaxKey, 4028}};
  EXPECT_EQ(FormatFrame(q, 55),
            "header id 1 info 0 bytes 55 type 2 [CRFS_MSG_ITEM_QUERY]\n"
            "  query key (256.i.0) min (0.0.0) max (~0.~0.~0) bytes 4028\n");

  InodeItem dir;
  dir.size = 42;
  dir.nlink = 1;
  dir.mode = 040755;
  const uint32_t h = BtrfsNameHash("some-dir");
  ItemRange r{{256, CRFS_INODE_ITEM_KEY, 0},
              kMaxKey,
              {Item{{256, CRFS_INODE_ITEM_KEY, 0}, dir},
               Item{{256, CRFS_DIR_ITEM_KEY, h},
                    DirEntries{{DirEntry{{257, CRFS_INODE_ITEM_KEY, 0}, 1, CRFS_FT_DIR, "some-dir"}}}}}};
  auto bytes = EncodeFrame(Frame{2, 0, r});
  ASSERT_TRUE(bytes.ok());
  size_t n;
  auto decoded = DecodeFrame(*bytes, &n);
  ASSERT_TRUE(decoded.ok());
  std::string out = FormatFrame(*decoded, static_cast<uint32_t>(n - kHeaderSize));
  EXPECT_NE(out.find("  range nr 2 min (256.i.0) max (~0.~0.~0)\n"), std::string::npos) << out;
  EXPECT_NE(out.find("    off 92 size 120 key (256.i.0)\n      ino sz 42 nlink 1 uid 0 gid 0 mode DIR|0755\n"),
            std::string::npos)
      << out;
  EXPECT_NE(out.find("dent len 8 type 2 [CRFS_FT_DIR] name 'some-dir' loc (257.i.0)"), std::string::npos) << out;
}

TEST(Snoop, HostileNamesAreEscapedOnOneLine) {
  Frame f{3, 0, Snapshot{std::string("a\nb'\\\x01", 6)}};
  EXPECT_EQ(FormatFrame(f, 10),
            "header id 3 info 0 bytes 10 type 14 [CRFS_MSG_SNAPSHOT]\n"
            "  snapshot name 'a\\x0ab\\x27\\x5c\\x01'\n");
}

TEST(Snoop, BadDataChecksumIsFlagged) {
  Data d;
  d.objectid = 257;
  d.data = {'h', 'i'};
  d.csums = {DataCrc32c(d.data) ^ 1};
  EXPECT_NE(FormatFrame(Frame{4, 0, d}, 30).find("csums 1 [BAD]"), std::string::npos);
  d.csums = DataBlockCrcs(d.data);
  EXPECT_NE(FormatFrame(Frame{4, 0, d}, 30).find("csums 1 [ok] data 'hi'"), std::string::npos);
}

TEST(Snoop, FinalReplyNamesTheErrno) {
  Frame f{6, 17, FinalReply{"exists", 7}};
  EXPECT_EQ(FormatFrame(f, 14),
            "header id 6 info 17 bytes 14 type 1 [CRFS_MSG_FINAL_REPLY] EEXIST\n"
            "  final-reply generation 7\n"
            "  text 'exists'\n");
}

TEST(Snoop, EscapeTextKeepsPeerTextOnOneAsciiLine) {
  const std::string hostile = "name\x1b[31m\n\xff\xc3\x28\\end";
  const std::string out = EscapeText(hostile, 1024);
  EXPECT_EQ(out, "name\\x1b[31m\\x0a\\xff\\xc3(\\x5cend");
  for (unsigned char c : out) EXPECT_TRUE(c >= 0x20 && c < 0x7f) << int(c);
  // Cut at the limit, never past it.
  const std::string cut = EscapeText(std::string(2000, '\x01'), 1024);
  EXPECT_LE(cut.size(), 1024u);
  EXPECT_EQ(cut.substr(cut.size() - 3), "...");
}

}  // namespace
}  // namespace crfs::proto
