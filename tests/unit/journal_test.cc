// The intent journal's format (server/journal.h): ops round-trip, the
// record sequence decides what is pending, and a torn or corrupt tail is
// cut at the last good record, never past it.
#include "server/journal.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>

namespace crfs::server {
namespace {

Op SampleOp(Op::Kind kind, uint64_t obj) {
  Op op;
  op.kind = kind;
  op.dir = 256;
  op.name = "name\x01with bytes";
  op.obj = obj;
  op.dir2 = 300;
  op.name2 = "other";
  op.obj2 = 7;
  op.mode = 0100644;
  op.uid = 100000;
  op.gid = 100001;
  op.offset = 1ull << 40;
  op.length = 99;
  op.data = std::string("\0data", 5);
  op.xname = "user.x";
  op.atime = {1, 2};
  op.mtime = {3, 4};
  return op;
}

class JournalFile : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/crfs-journal-test.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::vector<uint8_t> Bytes() {
    std::ifstream f(dir_ + "/j/acme", std::ios::binary);
    return {std::istreambuf_iterator<char>(f), {}};
  }
  std::string dir_;
};

TEST(JournalOps, EveryKindRoundTrips) {
  for (int k = Op::kCreate; k <= Op::kSetTimes; k++) {
    const Op op = SampleOp(static_cast<Op::Kind>(k), 1000 + k);
    proto::Writer w(1 << 16);
    EncodeOp(op, &w);
    ASSERT_TRUE(w.status().ok());
    proto::Reader r(w.bytes());
    Op back;
    ASSERT_TRUE(DecodeOp(&r, &back).ok());
    EXPECT_TRUE(r.empty());
    EXPECT_EQ(back, op);
    // Every truncation is an error, never a crash or a different op.
    for (size_t n = 0; n < w.bytes().size(); n++) {
      proto::Reader short_r(proto::Bytes(w.bytes().data(), n));
      Op partial;
      EXPECT_FALSE(DecodeOp(&short_r, &partial).ok()) << n;
    }
  }
}

TEST_F(JournalFile, PendingTransactionAndItsProgressSurviveReopen) {
  JournalContents c;
  auto j = Journal::Open(dir_ + "/j", "acme", &c);
  ASSERT_TRUE(j.ok()) << j.status().ToString();
  EXPECT_FALSE(c.pending);
  ASSERT_TRUE((*j)->Restart(1).ok());
  const uint64_t g1 = (1ull << 32) + 1, g2 = g1 + 1;
  std::vector<Op> ops{SampleOp(Op::kCreate, CRFS_PROVISIONAL_FIRST), SampleOp(Op::kWrite, CRFS_PROVISIONAL_FIRST),
                      SampleOp(Op::kUnlink, 300)};
  ASSERT_TRUE((*j)->Begin(g1, 100000, 100000, true, ops).ok());
  ASSERT_TRUE((*j)->Done(g1, 0, 555).ok());
  ASSERT_TRUE((*j)->Done(g1, 1, 0).ok());
  ASSERT_TRUE((*j)->Done(g1, 2, 0).ok());
  ASSERT_TRUE((*j)->End(g1).ok());
  ASSERT_TRUE((*j)->Begin(g2, 101000, 101001, false, ops).ok());
  ASSERT_TRUE((*j)->Done(g2, 0, 777).ok());
  j->reset();

  JournalContents again;
  auto j2 = Journal::Open(dir_ + "/j", "acme", &again);
  ASSERT_TRUE(j2.ok());
  EXPECT_EQ(again.epoch, 1u);
  EXPECT_EQ(again.last_generation, g2);
  ASSERT_TRUE(again.pending);
  EXPECT_EQ(again.pending->generation, g2);
  EXPECT_EQ(again.pending->next_op, 1u);
  EXPECT_EQ(again.pending->made.at(CRFS_PROVISIONAL_FIRST), 777u);
  EXPECT_EQ(again.pending->ops, ops);
  EXPECT_EQ(again.pending->uid, 101000u);
  EXPECT_EQ(again.pending->gid, 101001u);
  EXPECT_FALSE(again.pending->tenant_root);

  // Every torn tail parses as a prefix: never more progress than was written.
  const auto bytes = Bytes();
  for (size_t n = 0; n <= bytes.size(); n++) {
    JournalContents p = ParseJournal(proto::Bytes(bytes.data(), n));
    EXPECT_LE(p.valid_bytes, n);
    if (p.pending && p.pending->generation == g2) {
      EXPECT_LE(p.pending->next_op, 1u);
    }
    if (n == bytes.size()) {
      EXPECT_EQ(p.valid_bytes, n);
    }
  }
  // A flipped bit stops the parse at that record.
  for (size_t i = 0; i < bytes.size(); i += 7) {
    auto bad = bytes;
    bad[i] ^= 0x10;
    JournalContents p = ParseJournal(bad);
    EXPECT_LE(p.valid_bytes, bytes.size());
    if (p.pending && p.pending->generation == g2) {
      EXPECT_LE(p.pending->next_op, 1u);
    }
  }
  // Restart leaves only the new epoch.
  ASSERT_TRUE((*j2)->Restart(2).ok());
  JournalContents fresh = ParseJournal(Bytes());
  EXPECT_EQ(fresh.epoch, 2u);
  EXPECT_FALSE(fresh.pending);
}

}  // namespace
}  // namespace crfs::server
