// libFuzzer target: the audit log's record checker (audit/log.h CheckRecord),
// which crfsd runs over every line of an existing log at start and
// crfs-audit over every line it verifies -- bytes an attacker with access
// to the log's disk controls.
//
// Input: a line. Oracle: a line CheckRecord accepts re-encodes canonically
// to itself (what it accepts is what crfsd writes), and the same line is
// refused at any other index.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "audit/log.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 65536) return 0;
  const std::string_view line(reinterpret_cast<const char*>(data), size);
  const crfs::audit::Hash zero{};
  nlohmann::json parsed;
  if (!crfs::audit::CheckRecord(line, 0, zero, &parsed).empty()) return 0;
  if (parsed.dump(-1, ' ', true) != line) abort();
  if (crfs::audit::CheckRecord(line, 1, zero).empty()) abort();
  return 0;
}
