// libFuzzer target: transactions as a client sends them. The input is a
// stream of frames; every TRANS_FRAG among them goes through one session's
// TransactionAssembler and each completed transaction through
// ValidateTransaction. Oracle: no crash, leak, over-read or hang, the
// assembler's byte count returns to zero once nothing is open, and a
// refusal always carries an errno and a reason.
#include <cstdint>
#include <cstdlib>

#include "server/transaction.h"
#include "tests/fuzz/trans_frames.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace crfs;
  server::TransactionAssembler assembler;
  fuzz::ForEachTransFrag(data, size, [&](uint64_t id, const proto::TransFrag& frag, size_t n) {
    server::Transaction t;
    server::RequestError err;
    switch (assembler.Add(id, frag, n, &t, &err)) {
      case server::TransactionAssembler::Outcome::kNeedMore: break;
      case server::TransactionAssembler::Outcome::kRefused:
        if (err.err == 0 || err.text.empty()) abort();
        break;
      case server::TransactionAssembler::Outcome::kComplete: {
        server::RequestError v = server::ValidateTransaction(t, fuzz::TenantIds());
        if (v.err != 0 && v.text.empty()) abort();
        break;
      }
    }
    if (assembler.open() == 0 && assembler.buffered_bytes() != 0) abort();
  });
  return 0;
}
