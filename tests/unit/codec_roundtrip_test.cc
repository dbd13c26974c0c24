// Every message and item type survives encode -> decode unchanged, and the
// bytes the codec writes are the layout of the structs in crfs_proto.h.
#include <endian.h>
#include <gtest/gtest.h>
#include <linux/btrfs_tree.h>

#include <cstring>
#include <set>

#include "proto/codec.h"
#include "tests/unit/sample_frames.h"

namespace crfs::proto {
namespace {

// The protocol promises today's btrfs numbers.
static_assert(CRFS_INODE_ITEM_KEY == BTRFS_INODE_ITEM_KEY);
static_assert(CRFS_INODE_REF_KEY == BTRFS_INODE_REF_KEY);
static_assert(CRFS_XATTR_ITEM_KEY == BTRFS_XATTR_ITEM_KEY);
static_assert(CRFS_DIR_ITEM_KEY == BTRFS_DIR_ITEM_KEY);
static_assert(CRFS_DIR_INDEX_KEY == BTRFS_DIR_INDEX_KEY);
static_assert(CRFS_EXTENT_DATA_KEY == BTRFS_EXTENT_DATA_KEY);
static_assert(CRFS_ROOT_OBJECTID == BTRFS_FIRST_FREE_OBJECTID);
static_assert(CRFS_FT_REG_FILE == BTRFS_FT_REG_FILE && CRFS_FT_DIR == BTRFS_FT_DIR);
static_assert(CRFS_FT_SYMLINK == BTRFS_FT_SYMLINK && CRFS_FT_SOCK == BTRFS_FT_SOCK);
static_assert(CRFS_FT_CHRDEV == BTRFS_FT_CHRDEV && CRFS_FT_BLKDEV == BTRFS_FT_BLKDEV);
static_assert(CRFS_FT_FIFO == BTRFS_FT_FIFO);

TEST(CodecRoundTrip, EveryMessageType) {
  std::set<uint16_t> seen;
  for (const Frame& f : testing::SampleFrames()) {
    SCOPED_TRACE(MessageTypeName(MessageType(f.msg)));
    auto bytes = EncodeFrame(f);
    ASSERT_TRUE(bytes.ok()) << bytes.status().ToString();
    size_t consumed = 0;
    auto back = DecodeFrame(*bytes, &consumed);
    ASSERT_TRUE(back.ok()) << back.status().ToString();
    EXPECT_EQ(consumed, bytes->size());
    EXPECT_TRUE(*back == f);
    // Re-encoding the decoded frame gives the same bytes.
    auto again = EncodeFrame(*back);
    ASSERT_TRUE(again.ok());
    EXPECT_EQ(*again, *bytes);
    seen.insert(MessageType(f.msg));
  }
  EXPECT_EQ(seen.size(), size_t{CRFS_MSG_TYPE_MAX}) << "a message type has no round-trip sample";
}

TEST(CodecRoundTrip, EveryItemBodyType) {
  std::set<uint8_t> seen;
  for (const Item& it : testing::SampleRange().items) {
    auto bytes = EncodeItemBody(it.key.type, it.body);
    ASSERT_TRUE(bytes.ok()) << bytes.status().ToString();
    auto back = DecodeItemBody(it.key.type, *bytes);
    ASSERT_TRUE(back.ok()) << back.status().ToString();
    EXPECT_TRUE(*back == it.body);
    seen.insert(it.key.type);
  }
  EXPECT_EQ(seen.size(), 6u);
}

TEST(CodecRoundTrip, FramesConcatenateAndDecodeInSequence) {
  std::vector<uint8_t> stream;
  auto frames = testing::SampleFrames();
  for (const Frame& f : frames) {
    auto b = EncodeFrame(f);
    ASSERT_TRUE(b.ok());
    stream.insert(stream.end(), b->begin(), b->end());
  }
  Bytes rest(stream);
  for (const Frame& f : frames) {
    size_t n = 0;
    auto got = DecodeFrame(rest, &n);
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    EXPECT_TRUE(*got == f);
    rest = rest.subspan(n);
  }
  EXPECT_TRUE(rest.empty());
}

TEST(CodecRoundTrip, LargestDataAndRangeFit) {
  DataWrite w;
  w.objectid = 300;
  w.data.assign(CRFS_MAX_DATA_BYTES, 0x5a);
  w.csums = DataBlockCrcs(w.data);
  auto b = EncodeFrame(Frame{1, 0, w});
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  size_t n;
  ASSERT_TRUE(DecodeFrame(*b, &n).ok());

  ItemRange r{{400, 0, 0}, {400, 0xff, ~0ull}, {}};
  for (uint64_t i = 0; i < 5000; i++) {
    r.items.push_back(Item{
        {400, CRFS_DIR_INDEX_KEY, i + 2},
        DirEntries{{DirEntry{{1000 + i, CRFS_INODE_ITEM_KEY, 0}, 1, CRFS_FT_REG_FILE, "file-" + std::to_string(i)}}}});
  }
  b = EncodeFrame(Frame{2, 0, r});
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  auto back = DecodeFrame(*b, &n);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(std::get<ItemRange>(back->msg).items.size(), 5000u);
}

// ---- the codec's bytes are the C header's structs ------------------------

template <typename T>
std::vector<uint8_t> StructBytes(const T& s) {
  std::vector<uint8_t> v(sizeof(T));
  std::memcpy(v.data(), &s, sizeof(T));
  return v;
}

struct crfs_key LeKey(const Key& k) {
  struct crfs_key out;
  out.objectid = htole64(k.objectid);
  out.type = k.type;
  out.offset = htole64(k.offset);
  return out;
}

std::vector<uint8_t> Encoded(const Frame& f) {
  auto b = EncodeFrame(f);
  EXPECT_TRUE(b.ok()) << b.status().ToString();
  return b.ok() ? *b : std::vector<uint8_t>{};
}

TEST(WireLayout, HeaderAndItemQueryMatchTheStructs) {
  ItemQuery q{{256, 1, 0}, {256, 0, 0}, {~0ull, 0xff, ~0ull}, 4028};
  auto bytes = Encoded(Frame{0x1122334455667788ull, 0, q});
  ASSERT_EQ(bytes.size(), sizeof(crfs_header) + sizeof(crfs_msg_item_query));

  struct crfs_header h {};
  h.id = htole64(0x1122334455667788ull);
  h.bytes = htole32(sizeof(crfs_msg_item_query));
  h.type = htole16(CRFS_MSG_ITEM_QUERY);
  struct crfs_msg_item_query s {};
  s.key = LeKey(q.key);
  s.min = LeKey(q.min);
  s.max = LeKey(q.max);
  s.bytes = htole32(4028);
  std::vector<uint8_t> want = StructBytes(h);
  auto body = StructBytes(s);
  want.insert(want.end(), body.begin(), body.end());
  EXPECT_EQ(bytes, want);
}

TEST(WireLayout, HelloMatchesTheStruct) {
  auto bytes = Encoded(Frame{1, 0, Hello{1, 2, 0x10, 1 << 17, {}}});
  struct crfs_msg_hello s {};
  s.magic = htole32(CRFS_PROTO_MAGIC);
  s.version_min = htole16(1);
  s.version_max = htole16(2);
  s.features = htole32(0x10);
  s.max_payload = htole32(1 << 17);
  EXPECT_EQ(std::vector<uint8_t>(bytes.begin() + kHeaderSize, bytes.end()), StructBytes(s));
  EXPECT_EQ(std::memcmp(bytes.data(), "\x01\x00\x00\x00", 4), 0);
  EXPECT_EQ(std::memcmp(bytes.data() + kHeaderSize, "CRFS", 4), 0);
}

TEST(WireLayout, RangeItemsAndDirEntryMatchTheStructs) {
  const std::string name = "some-dir";
  ItemRange r{
      {256, CRFS_DIR_ITEM_KEY, 5},
      {256, CRFS_DIR_ITEM_KEY, 5},
      {Item{{256, CRFS_DIR_ITEM_KEY, 5}, DirEntries{{DirEntry{{258, CRFS_INODE_ITEM_KEY, 0}, 8, CRFS_FT_DIR, name}}}}}};
  auto bytes = Encoded(Frame{1, 0, r});
  std::vector<uint8_t> payload(bytes.begin() + kHeaderSize, bytes.end());

  struct crfs_item_range rh {};
  rh.min = LeKey(r.min);
  rh.max = LeKey(r.max);
  rh.nr_items = htole32(1);
  rh.bytes = htole32(sizeof(crfs_item_range) + sizeof(crfs_item) + sizeof(crfs_dir_item) + name.size());
  struct crfs_item item {};
  item.key = LeKey(r.items[0].key);
  item.offset = htole32(sizeof(crfs_item_range) + sizeof(crfs_item));
  item.size = htole32(sizeof(crfs_dir_item) + name.size());
  struct crfs_dir_item de {};
  de.location = LeKey({258, CRFS_INODE_ITEM_KEY, 0});
  de.transid = htole64(8);
  de.name_len = htole16(name.size());
  de.type = CRFS_FT_DIR;
  std::vector<uint8_t> want = StructBytes(rh);
  for (auto part : {StructBytes(item), StructBytes(de)}) want.insert(want.end(), part.begin(), part.end());
  want.insert(want.end(), name.begin(), name.end());
  EXPECT_EQ(payload, want);
}

TEST(WireLayout, InodeItemMatchesTheStruct) {
  InodeItem i = testing::SampleInode();
  auto bytes = EncodeItemBody(CRFS_INODE_ITEM_KEY, i);
  ASSERT_TRUE(bytes.ok());
  struct crfs_inode_item s {};
  s.generation = htole64(i.generation);
  s.transid = htole64(i.transid);
  s.size = htole64(i.size);
  s.nbytes = htole64(i.nbytes);
  s.nlink = htole32(i.nlink);
  s.uid = htole32(i.uid);
  s.gid = htole32(i.gid);
  s.mode = htole32(i.mode);
  s.rdev = htole64(i.rdev);
  s.flags = htole64(i.flags);
  s.sequence = htole64(i.sequence);
  s.atime = {htole64(i.atime.sec), htole32(i.atime.nsec)};
  s.ctime = {htole64(i.ctime.sec), htole32(i.ctime.nsec)};
  s.mtime = {htole64(i.mtime.sec), htole32(i.mtime.nsec)};
  s.otime = {htole64(i.otime.sec), htole32(i.otime.nsec)};
  EXPECT_EQ(*bytes, StructBytes(s));
}

TEST(WireLayout, TransReplyAndDataMatchTheStructs) {
  auto bytes = Encoded(Frame{3, 0, TransReply{9, CRFS_TRANS_R_DURABLE, {{CRFS_PROVISIONAL_FIRST, 260}}}});
  struct crfs_msg_trans_reply tr {};
  tr.tenant_gen = htole64(9);
  tr.flags = htole32(CRFS_TRANS_R_DURABLE);
  tr.nr_map = htole32(1);
  struct crfs_trans_map_entry me {};
  me.provisional = htole64(CRFS_PROVISIONAL_FIRST);
  me.real = htole64(260);
  std::vector<uint8_t> want = StructBytes(tr);
  auto m = StructBytes(me);
  want.insert(want.end(), m.begin(), m.end());
  EXPECT_EQ(std::vector<uint8_t>(bytes.begin() + kHeaderSize, bytes.end()), want);

  DataPayload d = testing::SampleData();
  Data data;
  static_cast<DataPayload&>(data) = d;
  bytes = Encoded(Frame{4, 0, data});
  struct crfs_msg_data dh {};
  dh.objectid = htole64(d.objectid);
  dh.offset = htole64(d.offset);
  dh.len = htole32(d.data.size());
  dh.nr_csums = htole16(d.csums.size());
  want = StructBytes(dh);
  for (uint32_t c : d.csums) {
    uint32_t le = htole32(c);
    auto* p = reinterpret_cast<uint8_t*>(&le);
    want.insert(want.end(), p, p + 4);
  }
  want.insert(want.end(), d.data.begin(), d.data.end());
  EXPECT_EQ(std::vector<uint8_t>(bytes.begin() + kHeaderSize, bytes.end()), want);
}

}  // namespace
}  // namespace crfs::proto
