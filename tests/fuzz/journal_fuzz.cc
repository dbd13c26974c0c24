// libFuzzer target: the intent journal parser (server/journal.h), which
// reads what a crash may have torn or a disk may have corrupted. Oracle: no
// crash, leak, over-read or hang; the parse never vouches for more bytes
// than it was given; a pending transaction's progress never passes its op
// count; and parsing only the prefix it vouched for gives the same answer
// (kept transaction answers included).
#include <cstdint>
#include <cstdlib>

#include "server/journal.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace crfs;
  const proto::Bytes in(data, size);
  const server::JournalContents c = server::ParseJournal(in);
  if (c.valid_bytes > size) abort();
  for (const auto& p : c.pending) {
    if (p.next_op > p.ops.size() || p.undo.size() != p.ops.size()) abort();
  }
  const server::JournalContents again = server::ParseJournal(in.first(c.valid_bytes));
  if (again.valid_bytes != c.valid_bytes || again.epoch != c.epoch || again.last_generation != c.last_generation ||
      again.pending.size() != c.pending.size() || again.answers != c.answers) {
    abort();
  }
  for (size_t i = 0; i < c.pending.size(); i++) {
    const auto &a = again.pending[i], &b = c.pending[i];
    if (a.ops != b.ops || a.next_op != b.next_op || a.answer != b.answer || a.created != b.created ||
        a.undo != b.undo || a.aborted != b.aborted) {
      abort();
    }
  }
  // An end marker never makes more pending than its absence would leave
  // unended, plus the ended ones it does not cover.
  const server::JournalContents marked = server::ParseJournal(in, c.last_generation);
  if (!marked.pending.empty()) abort();
  return 0;
}
