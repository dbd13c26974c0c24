// libFuzzer target: a stream of frames, as crfsd reads it off a session.
// Oracle: decoding never crashes or over-reads (ASan/UBSan), and whatever
// decodes re-encodes to exactly the bytes it came from (the encoding is
// canonical) and prints without failing.
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "proto/codec.h"
#include "proto/snoop.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace crfs::proto;
  Bytes rest(data, size);
  while (!rest.empty()) {
    size_t n = 0;
    auto frame = DecodeFrame(rest, &n);
    if (!frame.ok()) break;
    auto again = EncodeFrame(*frame);
    if (!again.ok() || again->size() != n || std::memcmp(again->data(), rest.data(), n) != 0) abort();
    (void)FormatFrame(*frame, static_cast<uint32_t>(n - kHeaderSize));
    rest = rest.subspan(n);
  }
  return 0;
}
