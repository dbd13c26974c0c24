// libFuzzer target: transactions as a client sends them. The input is a
// stream of frames; every TRANS_FRAG among them goes through one session's
// TransactionAssembler and each completed transaction through
// ValidateTransaction. Oracle: no crash, leak, over-read or hang, the
// assembler's byte count returns to zero once nothing is open, and a
// refusal always carries an errno and a reason.
#include <cstdint>
#include <cstdlib>

#include "proto/codec.h"
#include "server/transaction.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace crfs;
  static const server::IdMap ids(server::IdMapConfig{100000, 100000, 65536, 65534, false, true});
  server::TransactionAssembler assembler;
  proto::Bytes rest(data, size);
  while (!rest.empty()) {
    size_t n = 0;
    auto frame = proto::DecodeFrame(rest, &n);
    if (!frame.ok()) break;
    rest = rest.subspan(n);
    auto* frag = std::get_if<proto::TransFrag>(&frame->msg);
    if (!frag) continue;
    server::Transaction t;
    server::RequestError err;
    switch (assembler.Add(frame->id, *frag, n, &t, &err)) {
      case server::TransactionAssembler::Outcome::kNeedMore: break;
      case server::TransactionAssembler::Outcome::kRefused:
        if (err.err == 0 || err.text.empty()) abort();
        break;
      case server::TransactionAssembler::Outcome::kComplete: {
        server::RequestError v = server::ValidateTransaction(t, ids);
        if (v.err != 0 && v.text.empty()) abort();
        break;
      }
    }
    if (assembler.open() == 0 && assembler.buffered_bytes() != 0) abort();
  }
  return 0;
}
