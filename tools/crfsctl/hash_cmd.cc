// crfsctl hash: btrfs name hashes, one "HASH<TAB>NAME" line per name.
#include <cstdio>

#include "proto/checksum.h"
#include "tools/crfsctl/commands.h"

namespace crfs::ctl {

int HashCommand(Args args) {
  if (args.empty()) {
    std::fputs("usage: crfsctl hash NAME...\n", stderr);
    return 2;
  }
  for (std::string_view name : args) {
    std::printf("%u\t%.*s\n", proto::BtrfsNameHash(name), static_cast<int>(name.size()), name.data());
  }
  return 0;
}

}  // namespace crfs::ctl
