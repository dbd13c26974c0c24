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
  if (c.pending && c.pending->next_op > c.pending->ops.size()) abort();
  const server::JournalContents again = server::ParseJournal(in.first(c.valid_bytes));
  if (again.valid_bytes != c.valid_bytes || again.epoch != c.epoch || again.last_generation != c.last_generation ||
      again.pending.has_value() != c.pending.has_value() || again.answers != c.answers) {
    abort();
  }
  if (c.pending && (again.pending->ops != c.pending->ops || again.pending->next_op != c.pending->next_op ||
                    again.pending->answer != c.pending->answer || again.pending->created != c.pending->created)) {
    abort();
  }
  return 0;
}
