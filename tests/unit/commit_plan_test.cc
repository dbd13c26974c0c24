// The transaction planner (server/commit_plan.h) against a fake tree: what
// each kind of transaction turns into, in what order, and every refusal
// that needs the current tree, with its errno.
#include "server/commit_plan.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cerrno>
#include <map>

#include "proto/checksum.h"
#include "tests/unit/fake_tree.h"

namespace crfs::server {
namespace {

using proto::DirEntries;
using proto::DirEntry;
using proto::Item;
using proto::ItemRange;
using proto::Key;
using testing::FakeTree;

constexpr uint64_t P0 = CRFS_PROVISIONAL_FIRST, P1 = P0 + 1, P2 = P0 + 2, P3 = P0 + 3;
constexpr uint64_t kFloor = 5ull << 32, kGen = kFloor + 10;
const IdMap kIds(IdMapConfig{100000, 100000, 65536, 65534, false, true});

ItemRange Whole(uint64_t obj, std::vector<Item> items = {}) {
  return ItemRange{{obj, 0, 0}, {obj, 0xff, ~0ull}, items};
}

proto::InodeItem NewInode(uint32_t mode, uint32_t nlink = 1, uint64_t size = 0) {
  proto::InodeItem i;
  i.mode = mode;
  i.nlink = nlink;
  i.size = size;
  return i;
}

struct Outcome {
  RequestError err;
  Plan plan;
};

Outcome PlanOf(FakeTree& tree, std::vector<ItemRange> ranges, uint64_t base = kGen) {
  Transaction t{1, 0, base, std::move(ranges)};
  Outcome o;
  o.err = ValidateTransaction(t, kIds);
  if (o.err.err == 0) o.err = PlanTransaction(t, kIds, kFloor, kGen, &tree, &o.plan);
  return o;
}

std::vector<ItemRange> Cat(std::vector<std::vector<ItemRange>> parts) {
  std::vector<ItemRange> v;
  for (auto& p : parts) v.insert(v.end(), p.begin(), p.end());
  return v;
}

size_t IndexOf(const Plan& p, Op::Kind kind, uint64_t obj) {
  for (size_t i = 0; i < p.ops.size(); i++) {
    if (p.ops[i].kind == kind && p.ops[i].obj == obj) return i;
  }
  return ~size_t{0};
}

#define EXPECT_REFUSED(outcome, errno_value, text_part)                       \
  do {                                                                        \
    const Outcome& o_ = (outcome);                                            \
    EXPECT_EQ(o_.err.err, errno_value) << o_.err.text;                        \
    EXPECT_NE(o_.err.text.find(text_part), std::string::npos) << o_.err.text; \
  } while (0)

TEST(PlanTransaction, MkdirCreatesOneDirectoryAndMapsIndex) {
  FakeTree tree;
  auto o = PlanOf(tree, Cat({tree.Entry(257, "new", P0, CRFS_FT_DIR, P1),
                             {Whole(P0, {Item{{P0, CRFS_INODE_ITEM_KEY, 0}, NewInode(S_IFDIR | 0750)}})}}));
  ASSERT_EQ(o.err.err, 0) << o.err.text;
  ASSERT_EQ(o.plan.ops.size(), 2u);  // created owner-only, then given its mode
  const Op& op = o.plan.ops[0];
  EXPECT_EQ(o.plan.ops[1].kind, Op::kChmod);
  EXPECT_EQ(o.plan.ops[1].mode, 0750u);
  EXPECT_EQ(op.kind, Op::kCreate);
  EXPECT_EQ(op.dir, 257u);
  EXPECT_EQ(op.name, "new");
  EXPECT_EQ(op.mode, static_cast<uint32_t>(S_IFDIR | 0750));
  EXPECT_EQ(op.uid, 100000u);
  EXPECT_EQ(o.plan.created, std::vector<uint64_t>{P0});
  EXPECT_EQ(o.plan.new_indexes.at(P1), std::make_pair(uint64_t{257}, std::string("new")));
  EXPECT_TRUE(o.plan.changed.count(257));
}

TEST(PlanTransaction, RmRfIsChildrenFirstAndKeepsOtherNames) {
  FakeTree tree;
  auto o = PlanOf(tree, Cat({tree.Entry(256, "a", 0, 0, 0), {Whole(257), Whole(259)}}));
  ASSERT_EQ(o.err.err, 0) << o.err.text;
  const size_t g = IndexOf(o.plan, Op::kUnlink, 260), b = IndexOf(o.plan, Op::kUnlink, 259),
               a = IndexOf(o.plan, Op::kUnlink, 257), f = IndexOf(o.plan, Op::kUnlink, 258),
               h2 = IndexOf(o.plan, Op::kUnlink, 261);
  ASSERT_LT(g, o.plan.ops.size());
  EXPECT_LT(g, b);
  EXPECT_LT(b, a);
  EXPECT_LT(f, a);
  EXPECT_LT(h2, a);
  EXPECT_EQ(o.plan.ops.size(), 5u);  // /h keeps its other name: unlinked once, as /a/h2
}

TEST(PlanTransaction, RemovingANonEmptyDirectoryIsEnotempty) {
  FakeTree tree;
  EXPECT_REFUSED(PlanOf(tree, tree.Entry(257, "b", 0, 0, 0)), ENOTEMPTY, "entries stay");
  // The subtree's directories are listed, but /a/b's entries are not covered.
  EXPECT_REFUSED(PlanOf(tree, Cat({tree.Entry(256, "a", 0, 0, 0), {Whole(257)}})), ENOTEMPTY, "entries stay");
}

TEST(PlanTransaction, StaleBasesAreRefused) {
  FakeTree tree;
  auto mkdir = [&] {
    return Cat({tree.Entry(257, "new", P0, CRFS_FT_DIR, P1),
                {Whole(P0, {Item{{P0, CRFS_INODE_ITEM_KEY, 0}, NewInode(S_IFDIR | 0750)}})}});
  };
  EXPECT_REFUSED(PlanOf(tree, mkdir(), 0), ESTALE, "write grants");
  EXPECT_REFUSED(PlanOf(tree, mkdir(), kFloor - 1), ESTALE, "outside");
  EXPECT_REFUSED(PlanOf(tree, mkdir(), kGen + 1), ESTALE, "outside");
  tree.changed[257] = kGen;
  EXPECT_REFUSED(PlanOf(tree, mkdir(), kGen - 1), ESTALE, "changed at generation");
  EXPECT_EQ(PlanOf(tree, mkdir(), kGen).err.err, 0);
  // An object whose names change is checked too, not only the directories.
  tree.changed[258] = kGen;
  EXPECT_REFUSED(
      PlanOf(tree, Cat({tree.Entry(257, "f", 0, 0, 0), tree.Entry(256, "f", 258, CRFS_FT_REG_FILE, P0)}), kGen - 1),
      ESTALE, "changed at generation");
}

TEST(PlanTransaction, UnknownObjectsAreEnoent) {
  FakeTree tree;
  EXPECT_REFUSED(PlanOf(tree, {Whole(999)}), ENOENT, "no such object");
  EXPECT_REFUSED(PlanOf(tree, tree.Entry(256, "ghost", 999, CRFS_FT_REG_FILE, P0)), ENOENT, "no such object");
}

TEST(PlanTransaction, DirectoryIntoItsOwnSubtreeIsEinval) {
  FakeTree tree;
  EXPECT_REFUSED(PlanOf(tree, Cat({tree.Entry(256, "a", 0, 0, 0), tree.Entry(259, "a", 257, CRFS_FT_DIR, P0)})), EINVAL,
                 "own subtree");
}

TEST(PlanTransaction, DirItemWithoutItsIndexIsEinval) {
  FakeTree tree;
  auto r = tree.Entry(256, "x", 258, CRFS_FT_REG_FILE, P0);
  r.pop_back();  // no DIR_INDEX for the new entry
  EXPECT_REFUSED(PlanOf(tree, r), EINVAL, "disagree");
  auto rm = tree.Entry(257, "f", 0, 0, 0);
  rm.pop_back();  // the old DIR_INDEX stays
  EXPECT_REFUSED(PlanOf(tree, rm), EINVAL, "disagree");
}

TEST(PlanTransaction, ExistingIndexEntriesAreTheServers) {
  FakeTree tree;
  // Renaming f to f2 by rewriting f's DIR_INDEX item in place (instead of
  // removing it and adding a provisional one): the index is btrfs's.
  auto r = tree.Entry(257, "f2", 258, CRFS_FT_REG_FILE, P0);
  r.pop_back();
  const Key k{257, CRFS_DIR_INDEX_KEY, tree.objs[257].entries["f"].second};
  r.push_back(ItemRange{k, k, {Item{k, DirEntries{{DirEntry{{258, 1, 0}, 0, CRFS_FT_REG_FILE, "f2"}}}}}});
  auto f = tree.Entry(257, "f", 0, 0, 0);
  r.push_back(f[0]);
  EXPECT_REFUSED(PlanOf(tree, r), EINVAL, "not the server's entry");
}

TEST(PlanTransaction, MadeUpDerivedFieldsAreEinval) {
  FakeTree tree;
  const Key k{258, CRFS_INODE_ITEM_KEY, 0};
  auto with = [&](auto change) {
    proto::InodeItem in = tree.objs[258].inode;
    change(in);
    return std::vector<ItemRange>{ItemRange{k, k, {Item{k, in}}}};
  };
  EXPECT_REFUSED(PlanOf(tree, with([](auto& i) { i.nlink = 5; })), EINVAL, "nlink 5, the server computes 1");
  EXPECT_REFUSED(PlanOf(tree, with([](auto& i) { i.ctime.sec++; })), EINVAL, "ctime is the server's");
  EXPECT_REFUSED(PlanOf(tree, with([](auto& i) { i.nbytes = 1 << 20; })), EINVAL, "nbytes is the server's");
  EXPECT_REFUSED(PlanOf(tree, with([](auto& i) { i.mode = S_IFDIR | 0755; })), EINVAL, "file type cannot change");
  const Key d{257, CRFS_INODE_ITEM_KEY, 0};
  proto::InodeItem dir = tree.objs[257].inode;
  dir.size += 2;
  EXPECT_REFUSED(PlanOf(tree, {ItemRange{d, d, {Item{d, dir}}}}), EINVAL, "directory size");
  // New objects: nlink must be the names the transaction gives.
  EXPECT_REFUSED(PlanOf(tree, Cat({tree.Entry(256, "n", P0, CRFS_FT_REG_FILE, P1),
                                   {Whole(P0, {Item{{P0, CRFS_INODE_ITEM_KEY, 0}, NewInode(S_IFREG | 0644, 2)}})}})),
                 EINVAL, "nlink 2");
}

TEST(PlanTransaction, SetattrBecomesOps) {
  FakeTree tree;
  const Key k{258, CRFS_INODE_ITEM_KEY, 0};
  proto::InodeItem in = tree.objs[258].inode;
  in.mode = S_IFREG | 0600;
  in.uid = 1000;
  in.size = 10;
  in.mtime = {5, 0};
  auto o = PlanOf(tree, {ItemRange{k, k, {Item{k, in}}}});
  ASSERT_EQ(o.err.err, 0) << o.err.text;
  ASSERT_LT(IndexOf(o.plan, Op::kTruncate, 258), o.plan.ops.size());
  EXPECT_EQ(o.plan.ops[IndexOf(o.plan, Op::kTruncate, 258)].offset, 10u);
  EXPECT_EQ(o.plan.ops[IndexOf(o.plan, Op::kChown, 258)].uid, 101000u);
  EXPECT_EQ(o.plan.ops[IndexOf(o.plan, Op::kChmod, 258)].mode, 0600u);
  EXPECT_EQ(o.plan.ops[IndexOf(o.plan, Op::kSetTimes, 258)].mtime, (proto::Timespec{5, 0}));
}

TEST(PlanTransaction, XattrsAndDataBecomeOps) {
  FakeTree tree;
  const Key x{258, CRFS_XATTR_ITEM_KEY, proto::BtrfsNameHash("user.color")};
  auto o = PlanOf(tree, {ItemRange{x, x, {}}});
  ASSERT_EQ(o.err.err, 0) << o.err.text;
  EXPECT_EQ(o.plan.ops.at(0).kind, Op::kRemoveXattr);
  proto::ExtentData e{0, CRFS_EXTENT_INLINE, 3, {}, {'a', 'b', 'c'}};
  e.csums = proto::DataBlockCrcs(e.data);
  const Key d{258, CRFS_EXTENT_DATA_KEY, 200};
  o = PlanOf(tree, {ItemRange{d, {258, CRFS_EXTENT_DATA_KEY, 202}, {Item{d, e}}}});
  ASSERT_EQ(o.err.err, 0) << o.err.text;
  EXPECT_EQ(o.plan.ops.at(0).kind, Op::kWrite);
  EXPECT_EQ(o.plan.ops.at(0).offset, 200u);
  // Items must tile the range; REG extents are the server's.
  EXPECT_REFUSED(PlanOf(tree, {ItemRange{d, {258, CRFS_EXTENT_DATA_KEY, 210}, {Item{d, e}}}}), EINVAL,
                 "do not end at the range's end");
  const Key d0{258, CRFS_EXTENT_DATA_KEY, 0};
  EXPECT_REFUSED(PlanOf(tree, {ItemRange{d0, d0, {Item{d0, proto::ExtentData{0, CRFS_EXTENT_REG, 1, {}, {}}}}}}),
                 EINVAL, "REG extents are the server's");
  // A symlink's target cannot change; a directory has no data.
  const Key s{262, CRFS_EXTENT_DATA_KEY, 0};
  EXPECT_REFUSED(PlanOf(tree, {ItemRange{s, s, {}}}), EINVAL, "symlink's target");
}

TEST(PlanTransaction, NamelessObjectsTakeWritesButNoNames) {
  // 270: a file whose last name went while a session held it open (the
  // store shows it to that session only): nlink 0, no INODE_REF.
  FakeTree tree;
  tree.objs[270].inode = NewInode(S_IFREG | 0644, 0, 5);
  const Key k{270, CRFS_INODE_ITEM_KEY, 0};
  const Key d{270, CRFS_EXTENT_DATA_KEY, 5};
  proto::ExtentData e{0, CRFS_EXTENT_INLINE, 3, {}, {'a', 'b', 'c'}};
  e.csums = proto::DataBlockCrcs(e.data);
  proto::InodeItem in = tree.objs[270].inode;
  in.size = 8;
  auto o = PlanOf(tree, {ItemRange{k, k, {Item{k, in}}}, ItemRange{d, {270, CRFS_EXTENT_DATA_KEY, 7}, {Item{d, e}}}});
  ASSERT_EQ(o.err.err, 0) << o.err.text;
  ASSERT_LT(IndexOf(o.plan, Op::kWrite, 270), o.plan.ops.size());
  EXPECT_EQ(o.plan.ops[IndexOf(o.plan, Op::kWrite, 270)].offset, 5u);
  EXPECT_EQ(IndexOf(o.plan, Op::kUnlink, 270), ~size_t{0});
  // No name back (link(2) of an unlinked file fails too).
  EXPECT_REFUSED(PlanOf(tree, tree.Entry(256, "back", 270, CRFS_FT_REG_FILE, P0)), ENOENT, "has no name");
  // Its INODE_ITEM is not the client's to drop, and its link count is 0.
  EXPECT_REFUSED(PlanOf(tree, {ItemRange{k, k, {}}}), EINVAL, "CLOSE ends");
  in.nlink = 1;
  EXPECT_REFUSED(PlanOf(tree, {ItemRange{k, k, {Item{k, in}}}}), EINVAL, "nlink 1, the server computes 0");
  // A removed directory held open gets no entries.
  tree.objs[271].inode = NewInode(S_IFDIR | 0755, 0);
  EXPECT_REFUSED(PlanOf(tree, Cat({tree.Entry(271, "x", P0, CRFS_FT_REG_FILE, P1),
                                   {Whole(P0, {Item{{P0, CRFS_INODE_ITEM_KEY, 0}, NewInode(S_IFREG | 0644)}})}})),
                 ENOENT, "has no name");
}

TEST(PlanTransaction, NamesHiddenFromListingsAreTaken) {
  // 'snap' in / is a nested subvolume: not listed, but not free either.
  FakeTree tree;
  tree.hidden.insert({256, "snap"});
  EXPECT_REFUSED(PlanOf(tree, Cat({tree.Entry(256, "snap", P0, CRFS_FT_DIR, P1),
                                   {Whole(P0, {Item{{P0, CRFS_INODE_ITEM_KEY, 0}, NewInode(S_IFDIR | 0755)}})}})),
                 EEXIST, "not the tenant's");
  EXPECT_REFUSED(PlanOf(tree, Cat({tree.Entry(256, "h", 0, 0, 0), tree.Entry(256, "snap", 261, CRFS_FT_REG_FILE, P0)})),
                 EEXIST, "not the tenant's");
  // Other names are free as before.
  auto o = PlanOf(tree, Cat({tree.Entry(256, "free", P0, CRFS_FT_DIR, P1),
                             {Whole(P0, {Item{{P0, CRFS_INODE_ITEM_KEY, 0}, NewInode(S_IFDIR | 0755)}})}}));
  EXPECT_EQ(o.err.err, 0) << o.err.text;
}

TEST(PlanTransaction, RenamesSwapsAndCycles) {
  FakeTree tree;
  // Replace: /a/f over /h (which keeps its other name /a/h2).
  auto o = PlanOf(tree, Cat({tree.Entry(257, "f", 0, 0, 0), tree.Entry(256, "h", 258, CRFS_FT_REG_FILE, P0)}));
  ASSERT_EQ(o.err.err, 0) << o.err.text;
  EXPECT_LT(IndexOf(o.plan, Op::kUnlink, 261), IndexOf(o.plan, Op::kRename, 258));
  // Swap /a/f and /h: one RENAME_EXCHANGE.
  o = PlanOf(tree,
             Cat({tree.Entry(257, "f", 261, CRFS_FT_REG_FILE, P0), tree.Entry(256, "h", 258, CRFS_FT_REG_FILE, P1)}));
  ASSERT_EQ(o.err.err, 0) << o.err.text;
  ASSERT_EQ(o.plan.ops.size(), 1u);
  EXPECT_EQ(o.plan.ops[0].kind, Op::kExchange);
  // Three names rotating (/a/f <- g's, /a/b/g <- h's, /h <- f's): two exchanges, each with its
  // precondition holding in the state the ones before leave, no temporary names.
  o = PlanOf(tree,
             Cat({tree.Entry(257, "f", 260, CRFS_FT_REG_FILE, P0), tree.Entry(259, "g", 261, CRFS_FT_REG_FILE, P1),
                  tree.Entry(256, "h", 258, CRFS_FT_REG_FILE, P2)}));
  ASSERT_EQ(o.err.err, 0) << o.err.text;
  ASSERT_EQ(o.plan.ops.size(), 2u);
  std::map<std::pair<uint64_t, std::string>, uint64_t> at = {{{257, "f"}, 258}, {{259, "g"}, 260}, {{256, "h"}, 261}};
  for (const Op& op : o.plan.ops) {
    ASSERT_EQ(op.kind, Op::kExchange);
    const std::pair<uint64_t, std::string> a{op.dir, op.name}, b{op.dir2, op.name2};
    ASSERT_EQ(at[a], op.obj);
    ASSERT_EQ(at[b], op.obj2);
    std::swap(at[a], at[b]);
  }
  EXPECT_EQ(at, (std::map<std::pair<uint64_t, std::string>, uint64_t>{
                    {{257, "f"}, 260}, {{259, "g"}, 261}, {{256, "h"}, 258}}));
  (void)P3;
}

TEST(PlanTransaction, StructuralRefusals) {
  FakeTree tree;
  // A second name for a directory.
  EXPECT_REFUSED(PlanOf(tree, tree.Entry(256, "a2", 257, CRFS_FT_DIR, P0)), EPERM, "one name");
  // The root has no name to change.
  EXPECT_REFUSED(PlanOf(tree, tree.Entry(257, "root", 256, CRFS_FT_DIR, P0)), EPERM, "root");
  // An entry whose type is not its object's.
  EXPECT_REFUSED(PlanOf(tree, tree.Entry(256, "x", 258, CRFS_FT_SYMLINK, P0)), EINVAL, "type");
  // Devices, fifos and sockets are not created.
  EXPECT_REFUSED(PlanOf(tree, Cat({tree.Entry(256, "p", P0, CRFS_FT_FIFO, P1),
                                   {Whole(P0, {Item{{P0, CRFS_INODE_ITEM_KEY, 0}, NewInode(S_IFIFO | 0644)}})}})),
                 EPERM, "only regular files");
  // INODE_REF items are derived.
  const Key r{258, CRFS_INODE_REF_KEY, 257};
  EXPECT_REFUSED(PlanOf(tree, {ItemRange{r, r, {Item{r, proto::InodeRefs{{{2, "other"}}}}}}}), EINVAL, "INODE_REF");
  // Dropping the INODE_ITEM of an object that keeps its name.
  const Key i{258, CRFS_INODE_ITEM_KEY, 0};
  EXPECT_REFUSED(PlanOf(tree, {ItemRange{i, i, {}}}), EINVAL, "keeps a name");
  // Entries in a file.
  EXPECT_REFUSED(PlanOf(tree, tree.Entry(258, "x", 261, CRFS_FT_REG_FILE, P0)), ENOTDIR, "not a directory");
}

}  // namespace
}  // namespace crfs::server
