// Transaction reassembly and the file-system-independent checks of
// docs/protocol.md §6.2: a good mkdir and a good rm -r pass; every rule has
// a transaction that breaks it and the errno it gets.
#include "server/transaction.h"

#include <gtest/gtest.h>

#include <cerrno>
#include <functional>

#include "proto/checksum.h"
#include "tests/unit/param_name.h"

namespace crfs::server {
namespace {

using proto::DirEntries;
using proto::DirEntry;
using proto::Item;
using proto::ItemRange;
using proto::Key;

constexpr uint64_t P0 = CRFS_PROVISIONAL_FIRST, P1 = CRFS_PROVISIONAL_FIRST + 1;
const IdMap kIds(IdMapConfig{100000, 100000, 65536, 65534, false, true});

proto::InodeItem Inode(uint32_t mode, uint32_t uid = 1000) {
  proto::InodeItem i;
  i.mode = mode;
  i.nlink = 1;
  i.uid = uid;
  i.gid = uid;
  return i;
}

Item Dent(uint64_t dir, uint8_t type, uint64_t offset, uint64_t loc, uint8_t ft, const std::string& name) {
  return Item{{dir, type, offset}, DirEntries{{DirEntry{{loc, CRFS_INODE_ITEM_KEY, 0}, 0, ft, name}}}};
}

ItemRange One(Item it) { return ItemRange{it.key, it.key, {std::move(it)}}; }

// mkdir some-dir in the root, as crfsctl example mkdir sends it.
Transaction Mkdir(const std::string& name = "some-dir") {
  const uint64_t h = proto::BtrfsNameHash(name);
  return Transaction{3,
                     0,
                     7,
                     {One(Dent(256, CRFS_DIR_ITEM_KEY, h, P0, CRFS_FT_DIR, name)),
                      One(Dent(256, CRFS_DIR_INDEX_KEY, P1, P0, CRFS_FT_DIR, name)),
                      ItemRange{{P0, 0, 0},
                                {P0, 0xff, ~0ull},
                                {Item{{P0, CRFS_INODE_ITEM_KEY, 0}, Inode(040755)},
                                 Item{{P0, CRFS_INODE_REF_KEY, 256}, proto::InodeRefs{{{P1, name}}}}}}}};
}

TEST(ValidateTransaction, MkdirPasses) {
  RequestError e = ValidateTransaction(Mkdir(), kIds);
  EXPECT_EQ(e.err, 0) << e.text;
}

TEST(ValidateTransaction, RemovingWholeDirectoriesPasses) {
  // rm -r of directories 300 and 301 and their entry in 256: empty
  // authoritative ranges.
  const uint64_t h = proto::BtrfsNameHash("tree");
  Transaction t{4,
                0,
                9,
                {ItemRange{{256, CRFS_DIR_ITEM_KEY, h}, {256, CRFS_DIR_ITEM_KEY, h}, {}},
                 ItemRange{{256, CRFS_DIR_INDEX_KEY, 5}, {256, CRFS_DIR_INDEX_KEY, 5}, {}},
                 ItemRange{{300, 0, 0}, {300, 0xff, ~0ull}, {}}, ItemRange{{301, 0, 0}, {301, 0xff, ~0ull}, {}}}};
  RequestError e = ValidateTransaction(t, kIds);
  EXPECT_EQ(e.err, 0) << e.text;
}

struct Bad {
  const char* name;
  std::function<void(Transaction&)> spoil;
  int err;
  const char* needle;
};

const Bad kBad[] = {
    {"range over two objectids", [](Transaction& t) { t.ranges[2].max.objectid = P0 + 5; }, EINVAL,
     "more than one objectid"},
    {"objectid below the tenant root",
     [](Transaction& t) {
       t.ranges.push_back(ItemRange{{5, 0, 0}, {5, 0xff, ~0ull}, {}});
     },
     ENOENT, "no such object in the tenant"},
    {"overlapping ranges",
     [](Transaction& t) {
       t.ranges.push_back(ItemRange{{P0, 1, 0}, {P0, 1, 0}, {}});
     },
     EINVAL, "ranges overlap"},
    {"dir item offset is not the hash",
     [](Transaction& t) { t.ranges[0] = One(Dent(256, CRFS_DIR_ITEM_KEY, 12345, P0, CRFS_FT_DIR, "some-dir")); },
     EINVAL, "not the name's hash"},
    {"name with a slash", [](Transaction& t) { t = Mkdir("a/b"); }, EINVAL, "invalid name"},
    {"name dot-dot", [](Transaction& t) { t = Mkdir(".."); }, EINVAL, "invalid name"},
    {"name with NUL", [](Transaction& t) { t = Mkdir(std::string("a\0b", 3)); }, EINVAL, "invalid name"},
    {"index without its dir item",
     [](Transaction& t) {
       std::get<DirEntries>(t.ranges[1].items[0].body).entries[0].name = "other";
       std::get<DirEntries>(t.ranges[1].items[0].body).entries[0].location.objectid = P0;
     },
     EINVAL, "no matching DIR_ITEM"},
    {"index and item disagree on the target",
     [](Transaction& t) { std::get<DirEntries>(t.ranges[1].items[0].body).entries[0].location.objectid = 400; }, EINVAL,
     "no matching DIR_ITEM"},
    {"directory hard link",
     [](Transaction& t) {
       const uint64_t h = proto::BtrfsNameHash("second-name");
       t.ranges.push_back(One(Dent(256, CRFS_DIR_ITEM_KEY, h, P0, CRFS_FT_DIR, "second-name")));
     },
     EPERM, "two names"},
    {"entry type is not the inode's",
     [](Transaction& t) { std::get<proto::InodeItem>(t.ranges[2].items[0].body).mode = 0100644; }, EINVAL,
     "does not match the inode's mode"},
    {"provisional object without an inode", [](Transaction& t) { t.ranges[2].items.erase(t.ranges[2].items.begin()); },
     EINVAL, "has no INODE_ITEM"},
    {"uid outside the id map",
     [](Transaction& t) { std::get<proto::InodeItem>(t.ranges[2].items[0].body).uid = 70000; }, EPERM,
     "uid 70000 is outside"},
    {"trusted xattr",
     [](Transaction& t) {
       const uint64_t h = proto::BtrfsNameHash("trusted.x");
       t.ranges[2].items.insert(t.ranges[2].items.begin() + 2,
                                Item{{P0, CRFS_XATTR_ITEM_KEY, h}, proto::Xattrs{{{"trusted.x", "v"}}}});
     },
     EPERM, "only user.* xattrs"},
    {"inline data with a bad crc32c",
     [](Transaction& t) {
       proto::ExtentData e;
       e.len = 3;
       e.data = {'a', 'b', 'c'};
       e.csums = {0};
       t.ranges[2].items.push_back(Item{{P0, CRFS_EXTENT_DATA_KEY, 0}, e});
     },
     EBADMSG, "does not match its crc32c"},
};

class ValidateTransactionBad : public ::testing::TestWithParam<Bad> {};

TEST_P(ValidateTransactionBad, IsRefusedWithItsErrno) {
  Transaction t = Mkdir();
  GetParam().spoil(t);
  RequestError e = ValidateTransaction(t, kIds);
  EXPECT_EQ(e.err, GetParam().err) << e.text;
  EXPECT_NE(e.text.find(GetParam().needle), std::string::npos) << e.text;
}

INSTANTIATE_TEST_SUITE_P(Table, ValidateTransactionBad, ::testing::ValuesIn(kBad),
                         [](const ::testing::TestParamInfo<Bad>& info) {
                           return crfs::testing::ParamName(info.param.name);
                         });

proto::TransFrag Frag(uint32_t nr, bool last, uint64_t base = 7) {
  return proto::TransFrag{nr, last, 0, base, {ItemRange{{300 + nr, 0, 0}, {300 + nr, 0xff, ~0ull}, {}}}};
}

TEST(TransactionAssembler, JoinsFragmentsInOrder) {
  TransactionAssembler a;
  Transaction t;
  RequestError e;
  EXPECT_EQ(a.Add(9, Frag(0, false), 100, &t, &e), TransactionAssembler::Outcome::kNeedMore);
  EXPECT_EQ(a.Add(9, Frag(1, false), 100, &t, &e), TransactionAssembler::Outcome::kNeedMore);
  EXPECT_EQ(a.buffered_bytes(), 200u);
  ASSERT_EQ(a.Add(9, Frag(2, true), 100, &t, &e), TransactionAssembler::Outcome::kComplete);
  EXPECT_EQ(t.id, 9u);
  EXPECT_EQ(t.base_generation, 7u);
  EXPECT_EQ(t.ranges.size(), 3u);
  EXPECT_EQ(a.open(), 0u);
  EXPECT_EQ(a.buffered_bytes(), 0u);
}

TEST(TransactionAssembler, RefusesOutOfOrderAndInconsistentFragments) {
  TransactionAssembler a;
  Transaction t;
  RequestError e;
  EXPECT_EQ(a.Add(1, Frag(1, false), 10, &t, &e), TransactionAssembler::Outcome::kRefused);
  EXPECT_EQ(e.err, EINVAL);
  ASSERT_EQ(a.Add(2, Frag(0, false), 10, &t, &e), TransactionAssembler::Outcome::kNeedMore);
  EXPECT_EQ(a.Add(2, Frag(2, false), 10, &t, &e), TransactionAssembler::Outcome::kRefused);
  EXPECT_NE(e.text.find("out of order"), std::string::npos);
  EXPECT_EQ(a.open(), 0u) << "a refused transaction is forgotten";
  ASSERT_EQ(a.Add(3, Frag(0, false, 7), 10, &t, &e), TransactionAssembler::Outcome::kNeedMore);
  EXPECT_EQ(a.Add(3, Frag(1, true, 8), 10, &t, &e), TransactionAssembler::Outcome::kRefused);
  EXPECT_NE(e.text.find("base_generation"), std::string::npos);
}

TEST(TransactionAssembler, BoundsWhatOneSessionBuffers) {
  TransactionAssembler a;
  Transaction t;
  RequestError e;
  for (uint64_t id = 1; id <= TransactionAssembler::kMaxOpen; id++) {
    ASSERT_EQ(a.Add(id, Frag(0, false), 10, &t, &e), TransactionAssembler::Outcome::kNeedMore);
  }
  EXPECT_EQ(a.Add(100, Frag(0, false), 10, &t, &e), TransactionAssembler::Outcome::kRefused);
  EXPECT_EQ(e.err, EAGAIN);
  EXPECT_EQ(a.Add(1, Frag(1, false), TransactionAssembler::kMaxBytes, &t, &e), TransactionAssembler::Outcome::kRefused);
  EXPECT_EQ(e.err, E2BIG);
  EXPECT_EQ(a.buffered_bytes(), (TransactionAssembler::kMaxOpen - 1) * 10);
}

}  // namespace
}  // namespace crfs::server
