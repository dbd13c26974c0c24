// crfsctl example mkdir: write a capture of a short example session made
// with the codec. The values are what crfsd would send for a fresh tenant
// subvolume holding one file, hello.txt; the session reads the root
// directory, creates some-dir in one transaction, reads it back, reads the
// file, and replays the mkdir from its stale view (refused: ESTALE). It exists to show
// the protocol and to feed `crfsctl decode`, before a server exists.
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "proto/checksum.h"
#include "proto/codec.h"
#include "tools/crfsctl/commands.h"

namespace crfs::ctl {
namespace {

using namespace crfs::proto;

constexpr uint64_t kRoot = CRFS_ROOT_OBJECTID;
constexpr uint64_t kHello = 257;
constexpr uint64_t kNewDir = 258;
constexpr uint64_t kP0 = CRFS_PROVISIONAL_FIRST;      // provisional objectid
constexpr uint64_t kP1 = CRFS_PROVISIONAL_FIRST + 1;  // provisional dir index
constexpr Timespec kNow{1795000000, 0};

InodeItem Inode(uint64_t size, uint32_t nlink, uint32_t mode, uint64_t gen) {
  InodeItem i;
  i.generation = gen;
  i.transid = gen;
  i.size = size;
  i.nbytes = (mode & 0170000) == 0100000 ? 4096 : 0;
  i.nlink = nlink;
  i.mode = mode;
  i.atime = i.ctime = i.mtime = i.otime = kNow;
  return i;
}

Item DirItem(uint64_t dir, uint8_t key_type, uint64_t offset, uint64_t target, uint8_t ft, const std::string& name) {
  return Item{{dir, key_type, offset}, DirEntries{{DirEntry{{target, CRFS_INODE_ITEM_KEY, 0}, 7, ft, name}}}};
}

std::vector<Frame> MkdirSession() {
  const std::string hello = "hello.txt";
  const std::string dir = "some-dir";
  const std::string text = "hello world\n";
  const uint32_t hash_hello = BtrfsNameHash(hello);
  const uint32_t hash_dir = BtrfsNameHash(dir);
  std::vector<uint8_t> data(text.begin(), text.end());

  std::vector<Frame> f;
  f.push_back({1, 0, Hello{}});
  f.push_back({1, 0, HelloReply{CRFS_PROTO_VERSION, 0, CRFS_MAX_PAYLOAD, 30000, 0x5eed, kRoot, 7}});
  f.push_back({1, 0, FinalReply{"", 7}});

  // Read the root directory: every item of objectid 256.
  f.push_back({2, 0, ItemQuery{{kRoot, 0, 0}, {kRoot, 0, 0}, {kRoot, 0xff, ~0ull}, 4028}});
  f.push_back({2, 0,
               ItemRange{{kRoot, 0, 0},
                         {kRoot, 0xff, ~0ull},
                         {Item{{kRoot, CRFS_INODE_ITEM_KEY, 0}, Inode(2 * hello.size(), 1, 040755, 5)},
                          Item{{kRoot, CRFS_INODE_REF_KEY, kRoot}, InodeRefs{{{0, ".."}}}},
                          DirItem(kRoot, CRFS_DIR_ITEM_KEY, hash_hello, kHello, CRFS_FT_REG_FILE, hello),
                          DirItem(kRoot, CRFS_DIR_INDEX_KEY, 2, kHello, CRFS_FT_REG_FILE, hello)}}});
  f.push_back({2, 0, FinalReply{"", 7}});  // read at generation 7

  // mkdir some-dir: three authoritative ranges in one fragment.
  InodeItem new_dir = Inode(0, 1, 040755, 0);
  TransFrag mkdir{0,
                  true,
                  0,
                  7,  // the generation the client read the root directory at
                  {ItemRange{{kRoot, CRFS_DIR_ITEM_KEY, hash_dir},
                             {kRoot, CRFS_DIR_ITEM_KEY, hash_dir},
                             {DirItem(kRoot, CRFS_DIR_ITEM_KEY, hash_dir, kP0, CRFS_FT_DIR, dir)}},
                   ItemRange{{kRoot, CRFS_DIR_INDEX_KEY, kP1},
                             {kRoot, CRFS_DIR_INDEX_KEY, kP1},
                             {DirItem(kRoot, CRFS_DIR_INDEX_KEY, kP1, kP0, CRFS_FT_DIR, dir)}},
                   ItemRange{{kP0, 0, 0},
                             {kP0, 0xff, ~0ull},
                             {Item{{kP0, CRFS_INODE_ITEM_KEY, 0}, new_dir},
                              Item{{kP0, CRFS_INODE_REF_KEY, kRoot}, InodeRefs{{{kP1, dir}}}}}}}};
  f.push_back({3, 0, mkdir});
  f.push_back({3, 0, TransReply{8, CRFS_TRANS_R_APPLIED, {{kP0, kNewDir}, {kP1, 3}}}});
  f.push_back({3, 0, FinalReply{"", 8}});

  // Read the new directory back.
  f.push_back({4, 0, ItemQuery{{kNewDir, 0, 0}, {kNewDir, 0, 0}, {kNewDir, 0xff, ~0ull}, 4028}});
  f.push_back({4, 0,
               ItemRange{{kNewDir, 0, 0},
                         {kNewDir, 0xff, ~0ull},
                         {Item{{kNewDir, CRFS_INODE_ITEM_KEY, 0}, Inode(0, 1, 040755, 8)},
                          Item{{kNewDir, CRFS_INODE_REF_KEY, kRoot}, InodeRefs{{{3, dir}}}}}}});
  f.push_back({4, 0, FinalReply{"", 8}});

  // Read hello.txt's data, checksummed per block.
  f.push_back({5, 0, DataRead{kHello, 0, 4096}});
  Data d;
  d.objectid = kHello;
  d.csums = DataBlockCrcs(data);
  d.data = data;
  f.push_back({5, 0, d});
  f.push_back({5, 0, FinalReply{"", 8}});

  // The same mkdir again, still based on generation 7: the directory has
  // changed since (generation 8), so the server refuses it and nothing changes.
  f.push_back({6, 0, mkdir});
  f.push_back({6, ESTALE, FinalReply{"range (256.d.0x8513b709): directory 256 changed after generation 7", 8}});
  return f;
}

}  // namespace

int ExampleCommand(Args args) {
  std::string out_path = "-";
  if (args.empty() || args[0] != "mkdir" || (args.size() != 1 && args.size() != 3) ||
      (args.size() == 3 && args[1] != "-o")) {
    std::fputs("usage: crfsctl example mkdir [-o FILE]\n", stderr);
    return 2;
  }
  if (args.size() == 3) out_path = std::string(args[2]);

  std::vector<uint8_t> capture;
  for (const Frame& frame : MkdirSession()) {
    auto bytes = EncodeFrame(frame);
    if (!bytes.ok()) {
      std::fprintf(stderr, "crfsctl example: encode failed: %s\n", bytes.status().ToString().c_str());
      return 1;
    }
    capture.insert(capture.end(), bytes->begin(), bytes->end());
  }
  std::FILE* f = out_path == "-" ? stdout : std::fopen(out_path.c_str(), "wb");
  if (!f) {
    std::fprintf(stderr, "crfsctl example: %s: %s\n", out_path.c_str(), std::strerror(errno));
    return 1;
  }
  bool ok = std::fwrite(capture.data(), 1, capture.size(), f) == capture.size();
  ok = (f == stdout ? std::fflush(f) == 0 : std::fclose(f) == 0) && ok;
  if (!ok) {
    std::fprintf(stderr, "crfsctl example: %s: write failed\n", out_path.c_str());
    return 1;
  }
  return 0;
}

}  // namespace crfs::ctl
