// crfsctl csum FILE: the crc32c of each CRFS_DATA_BLOCK_SIZE block of a
// file, as the protocol carries them (and as btrfs stores data checksums),
// one "OFFSET 0xCRC" line per block.
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "proto/checksum.h"
#include "proto/crfs_proto.h"
#include "tools/crfsctl/commands.h"

namespace crfs::ctl {

int CsumCommand(Args args) {
  if (args.size() != 1) {
    std::fputs("usage: crfsctl csum FILE\n", stderr);
    return 2;
  }
  const std::string path(args[0]);
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) {
    std::fprintf(stderr, "crfsctl csum: %s: %s\n", path.c_str(), std::strerror(errno));
    return 1;
  }
  std::vector<uint8_t> block(CRFS_DATA_BLOCK_SIZE);
  uint64_t off = 0;
  size_t n;
  while ((n = std::fread(block.data(), 1, block.size(), f)) > 0) {
    std::printf("%llu 0x%08x\n", static_cast<unsigned long long>(off), proto::DataCrc32c(std::span(block.data(), n)));
    off += n;
  }
  const bool failed = std::ferror(f);
  std::fclose(f);
  if (failed) {
    std::fprintf(stderr, "crfsctl csum: %s: read error\n", path.c_str());
    return 1;
  }
  return 0;
}

}  // namespace crfs::ctl
