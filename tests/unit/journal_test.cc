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

StoredAnswer SampleAnswer(uint64_t txn) {
  StoredAnswer a;
  a.who.client = "alice";
  for (size_t i = 0; i < a.who.id.size(); i++) a.who.id[i] = static_cast<uint8_t>(i + 1);
  a.txn = txn;
  a.digest.fill(0xab);
  a.err = 0;
  a.text = "detail";
  a.reply.generation = (5ull << 32) | 9;
  a.reply.flags = CRFS_TRANS_R_APPLIED;
  a.reply.map = {{CRFS_PROVISIONAL_FIRST, 300}, {CRFS_PROVISIONAL_FIRST + 1, 12}};
  return a;
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

// BEGIN carries the transaction's audit decision record (journal.h,
// AuditedRecord): a start finds it for pending and for ended transactions
// (rolled back ones with their errno).
TEST_F(JournalFile, BeginCarriesTheAuditRecordOfPendingAndEndedTransactions) {
  JournalContents c;
  auto j = Journal::Open(dir_ + "/j", "acme", &c);
  ASSERT_TRUE(j.ok()) << j.status().ToString();
  ASSERT_TRUE((*j)->Restart(1, AnswerCache{}).ok());
  const uint64_t g1 = (1ull << 32) + 1, g2 = g1 + 1, g3 = g2 + 1;
  Plan plan;
  plan.ops = {SampleOp(Op::kUnlink, 300)};
  const std::vector<Undo> undo(1);
  AuditedRecord r1{17, {}, R"({"ev":"transaction","i":17})"}, r3{40, {}, std::string("{\"x\":\"\0\n\"}", 10)};
  r1.leaf.fill(0x11);
  r3.leaf.fill(0x33);
  ASSERT_TRUE((*j)->Begin(g1, 1, 1, false, plan, nullptr, undo, {}, &r1).ok());
  ASSERT_TRUE((*j)->Done(g1, 0, 0).ok());
  ASSERT_TRUE((*j)->End(g1, nullptr).ok());
  ASSERT_TRUE((*j)->Begin(g2, 1, 1, false, plan, nullptr, undo, {}).ok());  // no audit log: none
  ASSERT_TRUE((*j)->Abort(g2, 0, ENOSPC, {}).ok());
  ASSERT_TRUE((*j)->End(g2, nullptr).ok());
  ASSERT_TRUE((*j)->Begin(g3, 1, 1, false, plan, nullptr, undo, {}, &r3).ok());
  ASSERT_TRUE((*j)->Done(g3, 0, 0, true).ok());
  JournalContents got = ParseJournal(Bytes());
  ASSERT_EQ(got.pending.size(), 1u);
  ASSERT_TRUE(got.pending[0].record);
  EXPECT_EQ(*got.pending[0].record, r3);
  ASSERT_EQ(got.ended_records.size(), 1u) << "the ended transaction without a record is not listed";
  EXPECT_EQ(got.ended_records[0].generation, g1);
  EXPECT_EQ(got.ended_records[0].record, r1);
  EXPECT_FALSE(got.ended_records[0].aborted);

  // A rolled-back one says so; and one cut off at any byte never yields a
  // record other than the one written.
  ASSERT_TRUE((*j)->Abort(g3, 0, EIO, {}).ok());
  ASSERT_TRUE((*j)->End(g3, nullptr).ok());
  const auto bytes = Bytes();
  got = ParseJournal(bytes);
  ASSERT_EQ(got.ended_records.size(), 2u);
  EXPECT_TRUE(got.ended_records[1].aborted);
  EXPECT_EQ(got.ended_records[1].failed_errno, EIO);
  for (size_t n = 0; n < bytes.size(); n++) {
    JournalContents p = ParseJournal(proto::Bytes(bytes.data(), n));
    for (const auto& e : p.ended_records) EXPECT_EQ(e.record, e.generation == g1 ? r1 : r3) << n;
    for (const auto& q : p.pending) {
      const std::optional<AuditedRecord> want =
          q.generation == g2 ? std::nullopt : std::optional<AuditedRecord>(q.generation == g1 ? r1 : r3);
      EXPECT_EQ(q.record, want) << n;
    }
  }
}

TEST_F(JournalFile, PendingTransactionAndItsProgressSurviveReopen) {
  JournalContents c;
  auto j = Journal::Open(dir_ + "/j", "acme", &c);
  ASSERT_TRUE(j.ok()) << j.status().ToString();
  EXPECT_TRUE(c.pending.empty());
  ASSERT_TRUE((*j)->Restart(1, AnswerCache{}).ok());
  const uint64_t g1 = (1ull << 32) + 1, g2 = g1 + 1;
  Plan plan;
  plan.ops = {SampleOp(Op::kCreate, CRFS_PROVISIONAL_FIRST), SampleOp(Op::kWrite, CRFS_PROVISIONAL_FIRST),
              SampleOp(Op::kUnlink, 300)};
  plan.created = {CRFS_PROVISIONAL_FIRST};
  plan.new_indexes[CRFS_PROVISIONAL_FIRST + 1] = {256, "name\x01with bytes"};
  const std::vector<Op>& ops = plan.ops;
  StoredAnswer first = SampleAnswer(7);
  std::vector<Undo> undo(plan.ops.size());
  undo[1].flags = Undo::kClone | Undo::kAttrs | Undo::kXattr;
  undo[1].mode = 0640;
  undo[1].uid = 100001;
  undo[1].gid = 100002;
  undo[1].atime = {10, 11};
  undo[1].mtime = {12, 13};
  undo[1].had_xattr = true;
  undo[1].xattr = std::string("old\0value", 9);
  undo[2].flags = Undo::kTrash;
  const std::vector<DirTimes> dir_times{{256, {1, 2}, {3, 4}}, {300, {5, 6}, {7, 8}}};
  ASSERT_TRUE((*j)->Begin(g1, 100000, 100000, true, plan, nullptr, undo, dir_times).ok());
  ASSERT_TRUE((*j)->Done(g1, 0, 555).ok());
  ASSERT_TRUE((*j)->Done(g1, 1, 0).ok());
  ASSERT_TRUE((*j)->Done(g1, 2, 0).ok());
  ASSERT_TRUE((*j)->End(g1, &first).ok());
  StoredAnswer second = SampleAnswer(8);
  second.reply = {};
  ASSERT_TRUE((*j)->Begin(g2, 101000, 101001, false, plan, &second, undo, dir_times).ok());
  ASSERT_TRUE((*j)->Done(g2, 0, 777).ok());
  j->reset();

  JournalContents again;
  auto j2 = Journal::Open(dir_ + "/j", "acme", &again);
  ASSERT_TRUE(j2.ok());
  EXPECT_EQ(again.epoch, 1u);
  EXPECT_EQ(again.last_generation, g2);
  ASSERT_EQ(again.pending.size(), 1u);
  EXPECT_EQ(again.pending.back().generation, g2);
  EXPECT_EQ(again.pending.back().next_op, 1u);
  EXPECT_EQ(again.pending.back().made.at(CRFS_PROVISIONAL_FIRST), 777u);
  EXPECT_EQ(again.pending.back().ops, ops);
  EXPECT_EQ(again.pending.back().uid, 101000u);
  EXPECT_EQ(again.pending.back().gid, 101001u);
  EXPECT_FALSE(again.pending.back().tenant_root);
  // Whose it is and what its reply maps, to answer it after the restart.
  ASSERT_TRUE(again.pending.back().answer);
  EXPECT_EQ(*again.pending.back().answer, second);
  EXPECT_EQ(again.pending.back().created, plan.created);
  EXPECT_EQ(again.pending.back().new_indexes, plan.new_indexes);
  ASSERT_EQ(again.answers.size(), 1u);
  EXPECT_EQ(again.answers[0], first);
  // How to take each op back.
  EXPECT_EQ(again.pending.back().undo, undo);
  EXPECT_EQ(again.pending.back().dir_times, dir_times);
  EXPECT_FALSE(again.pending.back().aborted);

  // Every torn tail parses as a prefix: never more progress than was written.
  const auto bytes = Bytes();
  for (size_t n = 0; n <= bytes.size(); n++) {
    JournalContents p = ParseJournal(proto::Bytes(bytes.data(), n));
    EXPECT_LE(p.valid_bytes, n);
    if (!p.pending.empty() && p.pending.back().generation == g2) {
      EXPECT_LE(p.pending.back().next_op, 1u);
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
    if (!p.pending.empty() && p.pending.back().generation == g2) {
      EXPECT_LE(p.pending.back().next_op, 1u);
    }
  }
  // An ABORT turns the pending transaction into one to roll back, with
  // every object it made; nothing may follow it but END.
  {
    auto before = Bytes();
    ASSERT_TRUE((*j2)->Abort(g2, 2, ENOSPC, {{CRFS_PROVISIONAL_FIRST, 777}, {CRFS_PROVISIONAL_FIRST + 5, 778}}).ok());
    JournalContents aborted = ParseJournal(Bytes());
    ASSERT_EQ(aborted.pending.size(), 1u);
    EXPECT_TRUE(aborted.pending[0].aborted);
    EXPECT_EQ(aborted.pending[0].failed_op, 2u);
    EXPECT_EQ(aborted.pending[0].failed_errno, ENOSPC);
    EXPECT_EQ(aborted.pending[0].made.at(CRFS_PROVISIONAL_FIRST + 5), 778u);
    EXPECT_EQ(aborted.valid_bytes, Bytes().size());
    ASSERT_TRUE((*j2)->Done(g2, 1, 0).ok());
    ASSERT_TRUE((*j2)->End(g2, nullptr).ok());  // flushes the DONE before it
    JournalContents after = ParseJournal(Bytes());
    EXPECT_EQ(after.pending.size(), 1u) << "a DONE after ABORT is refused, and what follows it";
    EXPECT_LT(after.valid_bytes, Bytes().size());
    EXPECT_GT(after.valid_bytes, before.size());
  }
  // Restart leaves only the new epoch and the kept answers.
  AnswerCache cache;
  cache.Remember(first);
  cache.Remember(second);
  ASSERT_TRUE((*j2)->Restart(2, cache).ok());
  JournalContents fresh = ParseJournal(Bytes());
  EXPECT_EQ(fresh.epoch, 2u);
  EXPECT_TRUE(fresh.pending.empty());
  ASSERT_EQ(fresh.answers.size(), 2u);
  EXPECT_EQ(fresh.answers[0], first);
  EXPECT_EQ(fresh.answers[1], second);
}

TEST_F(JournalFile, TheEndMarkerDecidesWhatIsPendingAfterAPowerCut) {
  JournalContents c;
  auto j = Journal::Open(dir_ + "/j", "acme", &c);
  ASSERT_TRUE(j.ok());
  ASSERT_TRUE((*j)->Restart(3, AnswerCache{}).ok());
  const uint64_t g0 = 3ull << 32, g1 = g0 + 1, g2 = g0 + 2;
  Plan plan;
  plan.ops = {SampleOp(Op::kCreate, CRFS_PROVISIONAL_FIRST)};
  const std::vector<Undo> undo(1);
  ASSERT_TRUE((*j)->Begin(g1, 1, 1, true, plan, nullptr, undo, {}).ok());
  ASSERT_TRUE((*j)->End(g1, nullptr).ok());
  ASSERT_TRUE((*j)->SetEnded(g1).ok());
  ASSERT_TRUE((*j)->Begin(g2, 1, 1, true, plan, nullptr, undo, {}).ok());
  ASSERT_TRUE((*j)->End(g2, nullptr).ok());
  const auto bytes = Bytes();
  // END records alone (no marker): nothing pending.
  EXPECT_TRUE(ParseJournal(bytes).pending.empty());
  // The marker says g1 is complete; g2's END may be on disk ahead of its
  // operations (a later fdatasync took it along), so g2 is redone.
  auto at_g1 = ParseJournal(bytes, g1);
  ASSERT_EQ(at_g1.pending.size(), 1u);
  EXPECT_EQ(at_g1.pending[0].generation, g2);
  // A marker older than both: both, oldest first.
  auto at_g0 = ParseJournal(bytes, g0);
  ASSERT_EQ(at_g0.pending.size(), 2u);
  EXPECT_EQ(at_g0.pending[0].generation, g1);
  EXPECT_EQ(at_g0.pending[1].generation, g2);
  // What Open reads back: the marker file's value.
  j->reset();
  JournalContents reopened;
  auto j2 = Journal::Open(dir_ + "/j", "acme", &reopened);
  ASSERT_TRUE(j2.ok());
  ASSERT_EQ(reopened.ended, std::optional<uint64_t>(g1));
  ASSERT_EQ(reopened.pending.size(), 1u);
  EXPECT_EQ(reopened.pending[0].generation, g2);
  auto inspected = InspectJournal(dir_ + "/j", "acme");
  ASSERT_TRUE(inspected.ok());
  EXPECT_EQ(inspected->pending.size(), 1u);
}

TEST(Answers, RoundTripAndEveryTruncationFails) {
  const StoredAnswer a = SampleAnswer(42);
  proto::Writer w(1 << 16);
  EncodeAnswer(a, &w);
  ASSERT_TRUE(w.status().ok());
  proto::Reader r(w.bytes());
  StoredAnswer back;
  ASSERT_TRUE(DecodeAnswer(&r, &back).ok());
  EXPECT_TRUE(r.empty());
  EXPECT_EQ(back, a);
  for (size_t n = 0; n < w.bytes().size(); n++) {
    proto::Reader short_r(proto::Bytes(w.bytes().data(), n));
    StoredAnswer partial;
    EXPECT_FALSE(DecodeAnswer(&short_r, &partial).ok()) << n;
  }
}

TEST(Answers, CacheIsKeyedByClientAndBounded) {
  AnswerCache cache;
  StoredAnswer a = SampleAnswer(1);
  cache.Remember(a);
  ASSERT_NE(cache.Find(a.who, 1), nullptr);
  ClientKey other_cert = a.who;
  other_cert.client = "mallory";  // the same client id under another certificate
  EXPECT_EQ(cache.Find(other_cert, 1), nullptr);
  ClientKey other_instance = a.who;
  other_instance.id[0] ^= 1;
  EXPECT_EQ(cache.Find(other_instance, 1), nullptr);
  // Per client instance: the oldest go past kPerClient; another instance keeps its own.
  StoredAnswer b = SampleAnswer(1);
  b.who = other_instance;
  cache.Remember(b);
  for (uint64_t txn = 2; txn <= AnswerCache::kPerClient + 1; txn++) cache.Remember(SampleAnswer(txn));
  EXPECT_EQ(cache.Find(a.who, 1), nullptr);
  EXPECT_NE(cache.Find(a.who, 2), nullptr);
  EXPECT_NE(cache.Find(other_instance, 1), nullptr);
  EXPECT_EQ(cache.size(), AnswerCache::kPerClient + 1);
}

}  // namespace
}  // namespace crfs::server
