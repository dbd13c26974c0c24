// sample_frames.h - one valid frame of every message type (and every item
// body type inside them), with non-default values in every field, for the
// round-trip and negative tests.
#pragma once

#include <vector>

#include "proto/checksum.h"
#include "proto/messages.h"

namespace crfs::proto::testing {

inline InodeItem SampleInode() {
  InodeItem i;
  i.generation = 11;
  i.transid = 12;
  i.size = 0x123456789;
  i.nbytes = 4096;
  i.nlink = 3;
  i.uid = 1000;
  i.gid = 100;
  i.mode = 0100644;
  i.rdev = 0;
  i.flags = 0x10;
  i.sequence = 99;
  i.atime = {1, 2};
  i.ctime = {3, 4};
  i.mtime = {5, 999999999};
  i.otime = {7, 8};
  return i;
}

inline ExtentData SampleInlineExtent(size_t len) {
  ExtentData e;
  e.generation = 9;
  e.type = CRFS_EXTENT_INLINE;
  e.len = static_cast<uint32_t>(len);
  e.data.resize(len);
  for (size_t i = 0; i < len; i++) e.data[i] = static_cast<uint8_t>(i * 7);
  e.csums = DataBlockCrcs(e.data);
  return e;
}

// A range with one item of every body type (and multi-entry bodies).
inline ItemRange SampleRange() {
  ExtentData hole;
  hole.generation = 4;
  hole.type = CRFS_EXTENT_HOLE;
  hole.len = 1 << 20;
  return ItemRange{
      {257, 0, 0},
      {257, 0xff, ~0ull},
      {
          Item{{257, CRFS_INODE_ITEM_KEY, 0}, SampleInode()},
          Item{{257, CRFS_INODE_REF_KEY, 256}, InodeRefs{{{2, "file"}, {5, "hard-link"}}}},
          Item{{257, CRFS_XATTR_ITEM_KEY, BtrfsNameHash("user.color")},
               Xattrs{{{"user.color", "blue"}, {"user.empty", ""}}}},
          Item{{257, CRFS_DIR_ITEM_KEY, BtrfsNameHash("x")},
               DirEntries{{DirEntry{{300, CRFS_INODE_ITEM_KEY, 0}, 5, CRFS_FT_REG_FILE, "x"},
                           DirEntry{{301, CRFS_INODE_ITEM_KEY, 0}, 6, CRFS_FT_SYMLINK, "collides"}}}},
          Item{{257, CRFS_DIR_INDEX_KEY, 2},
               DirEntries{{DirEntry{{300, CRFS_INODE_ITEM_KEY, 0}, 5, CRFS_FT_REG_FILE, "x"}}}},
          Item{{257, CRFS_EXTENT_DATA_KEY, 0}, SampleInlineExtent(5000)},
          Item{{257, CRFS_EXTENT_DATA_KEY, 8192}, hole},
          Item{{257, CRFS_EXTENT_DATA_KEY, 8192 + (1 << 20)}, ExtentData{5, CRFS_EXTENT_REG, 1 << 30, {}, {}}},
      }};
}

inline DataPayload SampleData() {
  DataPayload d;
  d.objectid = 257;
  d.offset = 8192;
  d.data = SampleInlineExtent(9000).data;
  d.csums = DataBlockCrcs(d.data);
  return d;
}

inline std::vector<Frame> SampleFrames() {
  const Key a{256, CRFS_DIR_ITEM_KEY, 0}, b{256, CRFS_DIR_ITEM_KEY, ~0ull};
  ItemRange second{{CRFS_PROVISIONAL_FIRST, 0, 0},
                   {CRFS_PROVISIONAL_FIRST, 0xff, ~0ull},
                   {Item{{CRFS_PROVISIONAL_FIRST, CRFS_INODE_ITEM_KEY, 0}, SampleInode()}}};
  ItemRange empty{{300, 0, 0}, {300, 0xff, ~0ull}, {}};
  Data data;
  static_cast<DataPayload&>(data) = SampleData();
  DataWrite write;
  static_cast<DataPayload&>(write) = SampleData();
  return {
      Frame{1, 0, FinalReply{}},
      Frame{2, 2, FinalReply{"no such entry", 0x0000000100000007ull}},
      Frame{3, 0, ItemQuery{{256, 1, 0}, {256, 0, 0}, {256, 0xff, ~0ull}, 4028}},
      Frame{4, 0, SampleRange()},
      Frame{5, 0, Lock{a, b, CRFS_LOCK_WRITE}},
      Frame{6, 0, Grant{77, a, b, CRFS_LOCK_READ, 30000}},
      Frame{7, 0, TransFrag{3, true, CRFS_TRANS_F_SYNC, 0x0102030405060708ull, {SampleRange(), second, empty}}},
      Frame{0, 0, Revoke{77, CRFS_LOCK_READ}},
      Frame{8, 0, Release{77, CRFS_LOCK_NONE}},
      Frame{
          9, 0,
          Hello{1, 1, 0, 1 << 17, {1, 2, 3, 4, 5}, {0xc1, 0x1e, 0x47, 0x1d, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 0xff}}},
      Frame{10, 0, HelloReply{1, 0, 1 << 18, 30000, 0xabcdef, 256, 42}},
      Frame{11, 0, DataRead{257, 4096, 65536}},
      Frame{12, 0, data},
      Frame{13, 0, write},
      Frame{14, 0, Snapshot{"before-upgrade"}},
      Frame{15, 0, Ping{}},
      Frame{16, 0,
            TransReply{43, CRFS_TRANS_R_APPLIED, {{CRFS_PROVISIONAL_FIRST, 258}, {CRFS_PROVISIONAL_FIRST + 1, 3}}}},
      Frame{17, 0, Sync{}},
      Frame{0, 0, Durable{43}},
      Frame{19, 0, TreeQuery{256, 1 << 16}},
      Frame{20, 0, Open{257, CRFS_OPEN_READ | CRFS_OPEN_WRITE}},
      Frame{21, 0, Close{257}},
  };
}

}  // namespace crfs::proto::testing
