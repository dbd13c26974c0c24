// libFuzzer target: the policy's glob matcher (policy/glob.h), differential.
//
// Input: a pattern, a NUL, a text. Any pattern must compile or be refused
// without a crash, and matching must finish (it is linear: no backtracking
// blow-up) -- both for the raw input. Oracle: for patterns in the subset
// where the two languages agree (the characters a, b, /, '*' and '?', no
// "**"), Glob::Matches equals fnmatch(3) with FNM_PATHNAME; and a pattern
// without wildcards matches exactly itself.
#include <fnmatch.h>

#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "policy/glob.h"

using crfs::policy::Glob;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 4096) return 0;
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  const size_t nul = in.find('\0');
  const std::string pattern(in.substr(0, nul));
  const std::string text = nul == std::string_view::npos ? std::string() : std::string(in.substr(nul + 1));
  auto g = Glob::Compile(pattern);
  if (!g.ok()) return 0;
  const bool matched = g->Matches(text);
  // A literal pattern matches exactly its text (escapes removed: "\\*b" is "*b").
  if (g->literal() && matched != (text == g->prefix())) abort();
  if (matched && text.compare(0, g->prefix().size(), g->prefix()) != 0) abort();
  if (text.find('\0') != std::string::npos) return 0;
  bool simple = pattern.find("**") == std::string::npos;
  for (char c : pattern) simple = simple && (c == 'a' || c == 'b' || c == '/' || c == '*' || c == '?');
  if (simple && matched != (fnmatch(pattern.c_str(), text.c_str(), FNM_PATHNAME) == 0)) abort();
  return 0;
}
