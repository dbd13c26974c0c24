// Bad input: every malformed frame gives a specific error, never a crash,
// an over-read (ASan builds) or an allocation sized by an unchecked count.
#include <gtest/gtest.h>

#include <functional>

#include "proto/codec.h"
#include "tests/unit/param_name.h"
#include "tests/unit/sample_frames.h"

namespace crfs::proto {
namespace {

using Buf = std::vector<uint8_t>;

constexpr size_t P = kHeaderSize;  // payload offset
// Offsets inside a payload that starts with a struct crfs_item_range.
constexpr size_t kRangeNrItems = P + 34;
constexpr size_t kRangeBytes = P + 38;
constexpr size_t kItem0 = P + sizeof(crfs_item_range);  // first struct crfs_item
constexpr size_t kItemSize = sizeof(crfs_item);

Buf Enc(const Frame& f) {
  auto b = EncodeFrame(f);
  EXPECT_TRUE(b.ok()) << b.status().ToString();
  return b.ok() ? *b : Buf{};
}

void Put(Buf& b, size_t off, uint64_t v, size_t n) {
  for (size_t i = 0; i < n; i++) b.at(off + i) = static_cast<uint8_t>(v >> (8 * i));
}
uint64_t Get(const Buf& b, size_t off, size_t n) {
  uint64_t v = 0;
  for (size_t i = 0; i < n; i++) v |= uint64_t{b.at(off + i)} << (8 * i);
  return v;
}
// Keeps the header's byte count in step after a payload edit.
void FixBytes(Buf& b) { Put(b, 12, b.size() - P, 4); }

Frame Msg(Message m, uint64_t id = 1) { return Frame{id, 0, std::move(m)}; }

Frame DirRange(std::vector<DirEntry> entries, uint8_t key_type = CRFS_DIR_ITEM_KEY) {
  Key k{256, key_type, 5};
  return Msg(ItemRange{k, k, {Item{k, DirEntries{std::move(entries)}}}});
}
DirEntry Dent(const std::string& name) { return DirEntry{{258, CRFS_INODE_ITEM_KEY, 0}, 1, CRFS_FT_DIR, name}; }

// A frame carrying one item of `type` whose body is exactly `body`.
Buf RawItem(uint8_t type, const Buf& body) {
  const Key k{257, type, 0};
  const uint32_t range_bytes = static_cast<uint32_t>(sizeof(crfs_item_range) + kItemSize + body.size());
  Writer w(1 << 21);
  w.Le64(1);
  w.Le32(0);
  w.Le32(range_bytes);
  w.Le16(CRFS_MSG_ITEM_RANGE);
  w.Le16(0);
  w.Le32(0);
  for (int i = 0; i < 3; i++) {  // min, max, then the item's key
    if (i == 2) {
      w.Le32(1);  // nr_items
      w.Le32(range_bytes);
    }
    w.Le64(k.objectid);
    w.U8(k.type);
    w.Le64(k.offset);
  }
  w.Le32(sizeof(crfs_item_range) + kItemSize);
  w.Le32(static_cast<uint32_t>(body.size()));
  w.Put(body);
  EXPECT_TRUE(w.status().ok());
  return std::move(w).Take();
}

Buf InodeBody() { return *EncodeItemBody(CRFS_INODE_ITEM_KEY, testing::SampleInode()); }
Buf ExtentBody(size_t len) { return *EncodeItemBody(CRFS_EXTENT_DATA_KEY, testing::SampleInlineExtent(len)); }

struct Case {
  const char* name;
  std::function<Buf()> make;
  Code code;
  const char* needle;  // must appear in the error message
};

const Case kCases[] = {
    // ---- header
    {"empty input", [] { return Buf{}; }, Code::kTruncated, "header id"},
    {"header cut short", [] { return Buf(10, 0); }, Code::kTruncated, "header"},
    {"message type 0",
     [] {
       Buf b = Enc(Msg(Ping{}));
       Put(b, 16, 0, 2);
       return b;
     },
     Code::kUnknownType, "message type 0"},
    {"message type 99",
     [] {
       Buf b = Enc(Msg(Ping{}));
       Put(b, 16, 99, 2);
       return b;
     },
     Code::kUnknownType, "message type 99"},
    {"header flags set",
     [] {
       Buf b = Enc(Msg(Ping{}));
       Put(b, 18, 1, 2);
       return b;
     },
     Code::kBadValue, "flags"},
    {"header reserved set",
     [] {
       Buf b = Enc(Msg(Ping{}));
       Put(b, 20, 0x80000000u, 4);
       return b;
     },
     Code::kBadValue, "reserved"},
    {"oversized frame refused from the header alone",
     [] {
       Buf b = Enc(Msg(Ping{}));
       Put(b, 12, CRFS_MAX_PAYLOAD + 1, 4);
       return b;
     },
     Code::kTooLarge, "payload of 1048577 bytes"},
    {"frame shorter than its header says",
     [] {
       Buf b = Enc(Msg(Snapshot{"snap"}));
       b.pop_back();
       return b;
     },
     Code::kTruncated, "frame announces 8 payload bytes, 7 present"},
    {"request with id 0", [] { return Enc(Msg(Ping{}, 0)); }, Code::kBadValue, "id 0"},
    {"revoke with an id",
     [] {
       return Enc(Msg(Revoke{1, CRFS_LOCK_NONE}, 5));
     },
     Code::kBadValue, "nonzero id"},
    {"info on a request",
     [] {
       Buf b = Enc(Msg(Ping{}));
       Put(b, 8, 5, 4);
       return b;
     },
     Code::kBadValue, "info"},
    {"final reply status past errno range",
     [] {
       Buf b = Enc(Msg(FinalReply{}));
       Put(b, 8, 5000, 4);
       return b;
     },
     Code::kBadValue, "info 5000"},
    // ---- fixed-size messages
    {"query cut short",
     [] {
       Buf b = Enc(Msg(ItemQuery{{1, 0, 0}, {1, 0, 0}, {1, 0, 0}, 100}));
       b.resize(b.size() - 3);
       FixBytes(b);
       return b;
     },
     Code::kTruncated, "query bytes"},
    {"query with a trailing byte",
     [] {
       Buf b = Enc(Msg(ItemQuery{{1, 0, 0}, {1, 0, 0}, {1, 0, 0}, 100}));
       b.push_back(0);
       FixBytes(b);
       return b;
     },
     Code::kLengthMismatch, "trailing"},
    {"query min above max",
     [] {
       return Enc(Msg(ItemQuery{{5, 0, 0}, {5, 0, 0}, {4, 0, 0}, 100}));
     },
     Code::kOutOfOrder, "max is below min"},
    {"query key outside range",
     [] {
       return Enc(Msg(ItemQuery{{9, 0, 0}, {1, 0, 0}, {5, 0, 0}, 100}));
     },
     Code::kOutOfOrder, "outside"},
    {"query of zero bytes",
     [] {
       return Enc(Msg(ItemQuery{{1, 0, 0}, {1, 0, 0}, {1, 0, 0}, 0}));
     },
     Code::kBadValue, "query bytes 0"},
    {"tree query of zero bytes",
     [] {
       return Enc(Msg(TreeQuery{256, 0}));
     },
     Code::kBadValue, "tree query bytes 0"},
    {"open without flags",
     [] {
       return Enc(Msg(Open{257, 0}));
     },
     Code::kBadValue, "open flags 0"},
    {"open with unknown flags",
     [] {
       return Enc(Msg(Open{257, 4}));
     },
     Code::kBadValue, "open flags 4"},
    {"open reserved set",
     [] {
       Buf b = Enc(Msg(Open{257, CRFS_OPEN_READ}));
       b[b.size() - 1] = 1;
       return b;
     },
     Code::kBadValue, "reserved"},
    {"open of a provisional id",
     [] {
       return Enc(Msg(Open{CRFS_PROVISIONAL_FIRST, CRFS_OPEN_READ}));
     },
     Code::kBadValue, "is not an object's"},
    {"open of objectid 0",
     [] {
       return Enc(Msg(Open{0, CRFS_OPEN_READ}));
     },
     Code::kBadValue, "is not an object's"},
    {"close of a provisional id", [] { return Enc(Msg(Close{CRFS_PROVISIONAL_FIRST + 5})); }, Code::kBadValue,
     "is not an object's"},
    {"close cut short",
     [] {
       Buf b = Enc(Msg(Close{257}));
       b.resize(b.size() - 1);
       FixBytes(b);
       return b;
     },
     Code::kTruncated, "close objectid"},
    {"tree query reserved set",
     [] {
       Buf b = Enc(Msg(TreeQuery{256, 100}));
       b[b.size() - 1] = 1;
       return b;
     },
     Code::kBadValue, "reserved"},
    {"tree query cut short",
     [] {
       Buf b = Enc(Msg(TreeQuery{256, 100}));
       b.resize(b.size() - 4);
       FixBytes(b);
       return b;
     },
     Code::kTruncated, "tree query reserved"},
    {"ping with a payload",
     [] {
       Buf b = Enc(Msg(Ping{}));
       b.push_back(1);
       FixBytes(b);
       return b;
     },
     Code::kLengthMismatch, "trailing"},
    {"lock mode none",
     [] {
       return Enc(Msg(Lock{{1, 0, 0}, {2, 0, 0}, CRFS_LOCK_NONE}));
     },
     Code::kBadValue, "lock mode 0"},
    {"revoke leaving a write grant",
     [] {
       return Enc(Msg(Revoke{1, CRFS_LOCK_WRITE}, 0));
     },
     Code::kBadValue, "write grant"},
    {"final reply without its generation",
     [] {
       Buf b = Enc(Msg(FinalReply{}));
       b.resize(b.size() - 3);
       FixBytes(b);
       return b;
     },
     Code::kTruncated, "final reply generation"},
    {"final reply text with NUL", [] { return Enc(Msg(FinalReply{std::string("a\0b", 3)})); }, Code::kBadValue, "NUL"},
    {"final reply text too long",
     [] {
       Buf b = Enc(Msg(FinalReply{std::string(CRFS_MAX_ERROR_TEXT, 'x')}));
       b.push_back('x');
       FixBytes(b);
       return b;
     },
     Code::kTooLarge, "1025 bytes"},
    {"snapshot without a name",
     [] {
       Buf b = Enc(Msg(Snapshot{"s"}));
       Put(b, P, 0, 2);
       b.pop_back();
       FixBytes(b);
       return b;
     },
     Code::kBadValue, "name_len 0"},
    {"snapshot name_len past the frame",
     [] {
       Buf b = Enc(Msg(Snapshot{"snap"}));
       Put(b, P, 200, 2);
       return b;
     },
     Code::kTruncated, "snapshot name"},
    // ---- hello
    {"hello with a bad magic",
     [] {
       Buf b = Enc(Msg(Hello{}));
       Put(b, P, 0x12345678, 4);
       return b;
     },
     Code::kBadValue, "magic"},
    {"hello version range empty",
     [] {
       return Enc(Msg(Hello{2, 1, 0, 1 << 17, {}}));
     },
     Code::kBadValue, "version range"},
    {"hello max_payload below the minimum",
     [] {
       return Enc(Msg(Hello{1, 1, 0, 65536, {}}));
     },
     Code::kBadValue, "max_payload 65536 not in 131072..1048576"},
    {"inode mode with bits past the permission bits",
     [] {
       Buf body = InodeBody();
       Put(body, 44, 01100644, 4);
       return RawItem(CRFS_INODE_ITEM_KEY, body);
     },
     Code::kBadValue, "unknown bits"},
    {"hello capability over the limit",
     [] {
       Buf b = Enc(Msg(Hello{}));
       Put(b, P + 16, CRFS_MAX_CAPABILITY + 1, 4);
       return b;
     },
     Code::kTooLarge, "capability of 8193 bytes"},
    {"hello without its client id",
     [] {
       Buf b = Enc(Msg(Hello{}));
       b.resize(b.size() - 16);
       Put(b, 12, 20, 4);  // the header's `bytes`: the version-1 draft's 20-byte HELLO
       return b;
     },
     Code::kTruncated, "hello client_id"},
    {"hello cap_len lies",
     [] {
       Buf b = Enc(Msg(Hello{1, 1, 0, 1 << 17, {1, 2, 3}}));
       Put(b, P + 16, 2, 4);
       return b;
     },
     Code::kLengthMismatch, "cap_len"},
    // ---- ranges and items
    {"nr_items larger than the range can hold",
     [] {
       Buf b = Enc(DirRange({Dent("a")}));
       Put(b, kRangeNrItems, 1000, 4);
       return b;
     },
     Code::kBadCount, "nr_items 1000"},
    {"nr_items past the limit (no allocation)",
     [] {
       Buf b = Enc(DirRange({Dent("a")}));
       Put(b, kRangeNrItems, 0xffffffffu, 4);
       return b;
     },
     Code::kTooLarge, "nr_items 4294967295"},
    {"nr_items smaller than the items present",
     [] {
       Frame f = Msg(testing::SampleRange());
       Buf b = Enc(f);
       Put(b, kRangeNrItems, 6, 4);
       return b;
     },
     Code::kLengthMismatch, "expected"},
    {"range bytes below its header",
     [] {
       Buf b = Enc(DirRange({Dent("a")}));
       Put(b, kRangeBytes, 10, 4);
       return b;
     },
     Code::kLengthMismatch, "range bytes 10"},
    {"range bytes past the frame",
     [] {
       Buf b = Enc(DirRange({Dent("a")}));
       Put(b, kRangeBytes, 100000, 4);
       return b;
     },
     Code::kTruncated, "range items and bodies"},
    {"range max below min",
     [] {
       Buf b = Enc(DirRange({Dent("a")}));
       Put(b, P + 17, 1, 8);  // max.objectid = 1
       return b;
     },
     Code::kOutOfOrder, "range max is below range min"},
    {"item bodies overlap",
     [] {
       Buf b = Enc(Msg(testing::SampleRange()));
       Put(b, kItem0 + kItemSize + 17, Get(b, kItem0 + 17, 4), 4);
       return b;
     },
     Code::kLengthMismatch, "overlap or gap"},
    {"item size runs past the range",
     [] {
       Buf b = Enc(DirRange({Dent("a")}));
       Put(b, kItem0 + 21, 5000, 4);
       return b;
     },
     Code::kLengthMismatch, "past the range"},
    {"item size over the item limit",
     [] {
       Buf b = Enc(DirRange({Dent("a")}));
       Put(b, kItem0 + 21, CRFS_MAX_ITEM_BYTES + 1, 4);
       return b;
     },
     Code::kTooLarge, "item 0 size"},
    {"slack bytes no item covers",
     [] {
       Buf b = Enc(DirRange({Dent("a")}));
       b.push_back(0xee);
       Put(b, kRangeBytes, Get(b, kRangeBytes, 4) + 1, 4);
       FixBytes(b);
       return b;
     },
     Code::kLengthMismatch, "not covered"},
    {"item keys out of order",
     [] {
       Buf b = Enc(Msg(testing::SampleRange()));
       Put(b, kItem0 + kItemSize + 8, CRFS_INODE_ITEM_KEY, 1);  // item 1 key type = item 0 key type
       Put(b, kItem0 + kItemSize + 9, 0, 8);
       return b;
     },
     Code::kOutOfOrder, "item 1 key not above"},
    {"item key outside its range",
     [] {
       Buf b = Enc(DirRange({Dent("a")}));
       Put(b, kItem0, 999, 8);
       return b;
     },
     Code::kOutOfOrder, "outside range"},
    {"unknown item type",
     [] {
       Buf b = Enc(DirRange({Dent("a")}));
       Put(b, P + 8, 0, 1);          // min type 0 ..
       Put(b, P + 17 + 8, 0xff, 1);  // .. max type 0xff so the key stays inside
       Put(b, kItem0 + 8, 200, 1);
       return b;
     },
     Code::kUnknownType, "item type 200"},
    {"dir name length past the item",
     [] {
       Buf b = Enc(DirRange({Dent("some-dir")}));
       Put(b, b.size() - 8 - 3, 200, 2);  // name_len precedes type (1) and name (8)
       return b;
     },
     Code::kTruncated, "dir entry name"},
    {"dir name of 0 bytes",
     [] {
       Buf b = Enc(DirRange({Dent("x")}));
       Put(b, b.size() - 1 - 3, 0, 2);
       return b;
     },
     Code::kBadValue, "empty"},
    {"dir name over 255 bytes",
     [] {
       Buf b = Enc(DirRange({Dent("x")}));
       Put(b, b.size() - 1 - 3, 256, 2);
       return b;
     },
     Code::kTooLarge, "length 256 > 255"},
    {"dir entry of unknown file type",
     [] {
       Buf b = Enc(DirRange({Dent("x")}));
       Put(b, b.size() - 1 - 1, 9, 1);
       return b;
     },
     Code::kUnknownType, "file type 9"},
    {"dir entry pointing at a non-inode key",
     [] {
       Buf b = Enc(DirRange({Dent("x")}));
       Put(b, b.size() - 1 - 28 + 8, 132, 1);  // location type: ROOT_ITEM
       return b;
     },
     Code::kBadValue, "location"},
    {"dir index with two entries",
     [] {
       Buf b = Enc(DirRange({Dent("x"), Dent("y")}, CRFS_DIR_ITEM_KEY));
       Put(b, P + 8, CRFS_DIR_INDEX_KEY, 1);
       Put(b, P + 17 + 8, CRFS_DIR_INDEX_KEY, 1);
       Put(b, kItem0 + 8, CRFS_DIR_INDEX_KEY, 1);
       return b;
     },
     Code::kLengthMismatch, "dir index"},
    {"inode item one byte short",
     [] {
       Buf body = InodeBody();
       body.pop_back();
       return RawItem(CRFS_INODE_ITEM_KEY, body);
     },
     Code::kTruncated, "inode otime"},
    {"inode item one byte long",
     [] {
       Buf body = InodeBody();
       body.push_back(0);
       return RawItem(CRFS_INODE_ITEM_KEY, body);
     },
     Code::kLengthMismatch, "inode item"},
    {"inode nsec out of range",
     [] {
       Buf body = InodeBody();
       Put(body, 120 - 12 * 3 + 8, 1000000000, 4);  // ctime nsec
       return RawItem(CRFS_INODE_ITEM_KEY, body);
     },
     Code::kBadValue, "ctime nsec"},
    {"inode mode without a file type",
     [] {
       Buf body = InodeBody();
       Put(body, 44, 0644, 4);
       return RawItem(CRFS_INODE_ITEM_KEY, body);
     },
     Code::kBadValue, "file type"},
    {"inode ref name past the item",
     [] {
       return RawItem(CRFS_INODE_REF_KEY, {2, 0, 0, 0, 0, 0, 0, 0, 9, 0, 'a'});
     },
     Code::kTruncated, "inode ref name"},
    {"xattr value over 64 KiB",
     [] {
       return RawItem(CRFS_XATTR_ITEM_KEY, {1, 0, 0x71, 0x11, 0x01, 0x00, 'a'});
     },
     Code::kTooLarge, "value_len 70001"},
    {"xattr value past the item",
     [] {
       return RawItem(CRFS_XATTR_ITEM_KEY, {1, 0, 5, 0, 0, 0, 'a', 'b'});
     },
     Code::kTruncated, "xattr value"},
    {"extent with too few checksums",
     [] {
       Buf body = ExtentBody(5000);
       Put(body, 14, 1, 2);
       return RawItem(CRFS_EXTENT_DATA_KEY, body);
     },
     Code::kBadCount, "1 checksums for 5000 bytes"},
    {"extent data shorter than len",
     [] {
       Buf body = ExtentBody(5000);
       body.pop_back();
       return RawItem(CRFS_EXTENT_DATA_KEY, body);
     },
     Code::kLengthMismatch, "checksums and data"},
    {"extent larger than the data limit",
     [] {
       Buf body = ExtentBody(100);
       Put(body, 8, CRFS_MAX_DATA_BYTES + 1, 4);
       return RawItem(CRFS_EXTENT_DATA_KEY, body);
     },
     Code::kTooLarge, "data len 65537"},
    {"extent of unknown type",
     [] {
       Buf body = ExtentBody(100);
       Put(body, 12, 7, 1);
       return RawItem(CRFS_EXTENT_DATA_KEY, body);
     },
     Code::kUnknownType, "extent type 7"},
    {"hole with checksums",
     [] {
       Buf body = ExtentBody(100);
       Put(body, 12, CRFS_EXTENT_HOLE, 1);
       return RawItem(CRFS_EXTENT_DATA_KEY, body);
     },
     Code::kBadCount, "hole"},
    {"regular extent with data",
     [] {
       Buf body = ExtentBody(100);
       Put(body, 12, CRFS_EXTENT_REG, 1);
       Put(body, 14, 0, 2);
       return RawItem(CRFS_EXTENT_DATA_KEY, body);
     },
     Code::kLengthMismatch, "trailing"},
    {"extent reserved byte set",
     [] {
       Buf body = ExtentBody(100);
       Put(body, 13, 1, 1);
       return RawItem(CRFS_EXTENT_DATA_KEY, body);
     },
     Code::kBadValue, "reserved"},
    // ---- transactions
    {"fragment with no ranges",
     [] {
       Buf b = Enc(Msg(TransFrag{0, true, 0, 7, {testing::SampleRange()}}));
       Put(b, P + 6, 0, 2);
       return b;
     },
     Code::kBadCount, "nr_ranges 0"},
    {"fragment nr_ranges cannot fit (no allocation)",
     [] {
       Buf b = Enc(Msg(TransFrag{0, true, 0, 7, {testing::SampleRange()}}));
       Put(b, P + 6, CRFS_MAX_FRAG_RANGES, 2);
       return b;
     },
     Code::kBadCount, "cannot fit"},
    {"fragment nr_ranges past the limit",
     [] {
       Buf b = Enc(Msg(TransFrag{0, true, 0, 7, {testing::SampleRange()}}));
       Put(b, P + 6, 60000, 2);
       return b;
     },
     Code::kBadCount, "nr_ranges 60000"},
    {"fragment claims fewer ranges than present",
     [] {
       Buf b = Enc(Msg(TransFrag{0, true, 0, 7, {testing::SampleRange(), testing::SampleRange()}}));
       Put(b, P + 6, 1, 2);
       return b;
     },
     Code::kLengthMismatch, "trailing"},
    {"fragment last is 2",
     [] {
       Buf b = Enc(Msg(TransFrag{0, true, 0, 7, {testing::SampleRange()}}));
       Put(b, P + 4, 2, 1);
       return b;
     },
     Code::kBadValue, "last is 2"},
    {"fragment unknown flags",
     [] {
       Buf b = Enc(Msg(TransFrag{0, true, 0, 7, {testing::SampleRange()}}));
       Put(b, P + 5, 0x80, 1);
       return b;
     },
     Code::kBadValue, "unknown flags"},
    {"error inside the second range is located",
     [] {
       Buf b = Enc(Msg(TransFrag{0, true, 0, 7, {testing::SampleRange(), testing::SampleRange()}}));
       size_t second = P + sizeof(crfs_msg_trans_frag) + Get(b, P + sizeof(crfs_msg_trans_frag) + 38, 4);
       Put(b, second + 34, 0xffffffffu, 4);
       return b;
     },
     Code::kTooLarge, "range 1:"},
    {"trans reply nr_map lies",
     [] {
       Buf b = Enc(Msg(TransReply{1, CRFS_TRANS_R_APPLIED, {{CRFS_PROVISIONAL_FIRST, 300}}}));
       Put(b, P + 12, 2, 4);
       return b;
     },
     Code::kBadCount, "nr_map 2"},
    {"trans reply maps a real objectid",
     [] {
       return Enc(Msg(TransReply{1, CRFS_TRANS_R_APPLIED, {{300, 301}}}));
     },
     Code::kBadValue, "non-provisional"},
    // ---- data
    {"data with the wrong checksum count",
     [] {
       Data d;
       static_cast<DataPayload&>(d) = testing::SampleData();
       Buf b = Enc(Msg(d));
       Put(b, P + 20, 2, 2);
       return b;
     },
     Code::kBadCount, "2 checksums for 9000 bytes"},
    {"data of zero bytes",
     [] {
       Data d;
       static_cast<DataPayload&>(d) = testing::SampleData();
       Buf b = Enc(Msg(d));
       Put(b, P + 16, 0, 4);
       return b;
     },
     Code::kBadValue, "data len is zero"},
    {"data offset + len overflows",
     [] {
       Data d;
       static_cast<DataPayload&>(d) = testing::SampleData();
       Buf b = Enc(Msg(d));
       Put(b, P + 8, ~0ull - 10, 8);
       return b;
     },
     Code::kBadValue, "overflows"},
    {"read larger than the data limit",
     [] {
       return Enc(Msg(DataRead{257, 0, CRFS_MAX_DATA_BYTES + 1}));
     },
     Code::kBadValue, "read len 65537"},
};

class CodecNegative : public ::testing::TestWithParam<Case> {};

TEST_P(CodecNegative, GivesTheSpecificError) {
  const Case& c = GetParam();
  Buf bytes = c.make();
  size_t consumed = 12345;
  auto r = DecodeFrame(bytes, &consumed);
  ASSERT_FALSE(r.ok()) << c.name << ": decoded a bad frame";
  EXPECT_EQ(r.status().code(), c.code) << r.status().ToString();
  EXPECT_NE(r.status().message().find(c.needle), std::string::npos)
      << "error '" << r.status().ToString() << "' does not mention '" << c.needle << "'";
  EXPECT_EQ(consumed, 12345u) << "consumed set on failure";
}

INSTANTIATE_TEST_SUITE_P(Table, CodecNegative, ::testing::ValuesIn(kCases),
                         [](const ::testing::TestParamInfo<Case>& info) {
                           return crfs::testing::ParamName(info.param.name);
                         });

// Every strict prefix of every valid frame is refused.
TEST(CodecNegativeSweep, EveryTruncationIsRefused) {
  for (const Frame& f : testing::SampleFrames()) {
    Buf full = Enc(f);
    for (size_t len = 0; len < full.size(); len++) {
      size_t n;
      auto r = DecodeFrame(Bytes(full.data(), len), &n);
      ASSERT_FALSE(r.ok()) << MessageTypeName(MessageType(f.msg)) << " cut to " << len;
      ASSERT_EQ(r.status().code(), Code::kTruncated) << r.status().ToString();
    }
  }
}

// Shortening a payload and its header together (a peer that lies
// consistently) is refused for every message with a self-describing length.
TEST(CodecNegativeSweep, EveryConsistentShorteningIsRefused) {
  for (const Frame& f : testing::SampleFrames()) {
    if (std::holds_alternative<FinalReply>(f.msg)) continue;  // free text: any prefix is valid
    Buf full = Enc(f);
    for (size_t len = P; len < full.size(); len++) {
      Buf b(full.begin(), full.begin() + static_cast<long>(len));
      FixBytes(b);
      size_t n;
      auto r = DecodeFrame(b, &n);
      ASSERT_FALSE(r.ok()) << MessageTypeName(MessageType(f.msg)) << " shortened to " << len;
    }
  }
}

// Flipping any single byte either still decodes (to a frame that re-encodes
// to exactly those bytes) or gives an error: never anything else.
TEST(CodecNegativeSweep, SingleByteCorruptionIsCleanlyHandled) {
  for (const Frame& f : testing::SampleFrames()) {
    Buf full = Enc(f);
    for (size_t i = 0; i < full.size(); i += (full.size() > 4096 ? 7 : 1)) {
      Buf b = full;
      b[i] ^= 0xa5;
      size_t n;
      auto r = DecodeFrame(b, &n);
      if (!r.ok()) continue;
      auto again = EncodeFrame(*r);
      ASSERT_TRUE(again.ok());
      EXPECT_EQ(*again, Buf(b.begin(), b.begin() + static_cast<long>(n))) << "byte " << i;
    }
  }
}

}  // namespace
}  // namespace crfs::proto
