// libFuzzer target: the signed-note, checkpoint and verifier-key parsers
// (audit/note.h), which read what an auditor is handed (a checkpoint, a
// vkey) and what is on the log's disk.
//
// Input: a selector byte, then the text. Oracles: a checkpoint that parses
// prints back to the same text (the format is strict: one spelling per
// value); a verifier key that parses prints back to itself; Open of any
// note either refuses it or returns a prefix of it.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "audit/note.h"

namespace {

const crfs::audit::Verifier& Peter() {
  // golang.org/x/mod/sumdb/note's example key.
  static const crfs::audit::Verifier v =
      *crfs::audit::Verifier::Parse("PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW");
  return v;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1 || size > 65536) return 0;
  const std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);
  switch (data[0] % 3) {
    case 0: {
      auto c = crfs::audit::Checkpoint::Parse(text);
      if (c.ok() && c->Text() != text) abort();
      break;
    }
    case 1: {
      auto v = crfs::audit::Verifier::Parse(text);
      if (v.ok() && v->vkey() != text) abort();
      break;
    }
    case 2: {
      auto opened = Peter().Open(text);
      if (opened.ok() && text.substr(0, opened->size()) != *opened) abort();
      break;
    }
  }
  return 0;
}
