// libFuzzer target: the transaction planner (server/commit_plan.h) on what
// a client can send. The input is a stream of frames; every TRANS_FRAG goes
// through a session's TransactionAssembler, each completed transaction
// through ValidateTransaction and, if valid, through PlanTransaction against
// a fake tenant tree (tests/unit/fake_tree.h), rebased on the tree's current
// generation so that staleness does not hide the planner. Oracle: no crash
// (an uncaught exception from .at() or a bad variant access would abort
// crfsd), leak, over-read or hang; a refusal carries an errno and a
// reason; an accepted plan's ops are well-formed (known kinds, names on
// namespace ops, creations of provisional ids only, no more than the
// transaction could ask for).
#include <cstdint>
#include <cstdlib>

#include "server/commit_plan.h"
#include "server/transaction.h"
#include "tests/fuzz/trans_frames.h"
#include "tests/unit/fake_tree.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace crfs;
  const server::IdMap& ids = fuzz::TenantIds();
  constexpr uint64_t kFloor = 5ull << 32, kGen = kFloor + 10;
  server::TransactionAssembler assembler;
  fuzz::ForEachTransFrag(data, size, [&](uint64_t id, proto::TransFrag& frag, size_t n) {
    frag.base_generation = kGen;
    server::Transaction t;
    server::RequestError err;
    if (assembler.Add(id, frag, n, &t, &err) != server::TransactionAssembler::Outcome::kComplete) return;
    if (server::ValidateTransaction(t, ids).err != 0) return;
    server::testing::FakeTree tree;
    server::Plan plan;
    err = server::PlanTransaction(t, ids, kFloor, kGen, &tree, &plan);
    if (err.err != 0) {
      if (err.text.empty()) abort();
      return;
    }
    size_t items = 0;
    for (const auto& r : t.ranges) items += r.items.size() + 1;
    if (plan.ops.size() > 4 * items + 64 * t.ranges.size() + 64) abort();
    for (const auto& op : plan.ops) {
      if (op.kind < server::Op::kCreate || op.kind > server::Op::kSetTimes) abort();
      const bool names = op.kind == server::Op::kCreate || op.kind == server::Op::kLink ||
                         op.kind == server::Op::kRename || op.kind == server::Op::kExchange ||
                         op.kind == server::Op::kUnlink;
      if (names && (op.name.empty() || op.name.find('/') != std::string::npos)) abort();
      if (op.kind == server::Op::kCreate && op.obj < CRFS_PROVISIONAL_FIRST) abort();
    }
  });
  return 0;
}
