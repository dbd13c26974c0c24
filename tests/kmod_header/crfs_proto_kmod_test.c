// SPDX-License-Identifier: (GPL-2.0 OR MIT)
/*
 * Compile-time test: proto/crfs_proto.h is valid kernel C, its layout is the
 * one the C++ codec writes, and its numbers are the kernel's btrfs numbers.
 * Built out of tree against Debian's linux-headers by run_kmod_header_test.sh;
 * never loaded (it has nothing to do at run time).
 */
#include <linux/build_bug.h>
#include <linux/btrfs_tree.h>
#include <linux/module.h>
#include <linux/stddef.h>

#include "crfs_proto.h"

static_assert(CRFS_INODE_ITEM_KEY == BTRFS_INODE_ITEM_KEY);
static_assert(CRFS_INODE_REF_KEY == BTRFS_INODE_REF_KEY);
static_assert(CRFS_XATTR_ITEM_KEY == BTRFS_XATTR_ITEM_KEY);
static_assert(CRFS_DIR_ITEM_KEY == BTRFS_DIR_ITEM_KEY);
static_assert(CRFS_DIR_INDEX_KEY == BTRFS_DIR_INDEX_KEY);
static_assert(CRFS_EXTENT_DATA_KEY == BTRFS_EXTENT_DATA_KEY);
static_assert(CRFS_ROOT_OBJECTID == BTRFS_FIRST_FREE_OBJECTID);
static_assert(CRFS_FT_DIR == BTRFS_FT_DIR && CRFS_FT_SYMLINK == BTRFS_FT_SYMLINK);
static_assert(CRFS_FT_MAX == BTRFS_FT_XATTR);
/* Our key is btrfs's on-disk key, byte for byte. */
static_assert(sizeof(struct crfs_key) == sizeof(struct btrfs_disk_key));
static_assert(offsetof(struct crfs_key, type) == offsetof(struct btrfs_disk_key, type));

/* Field offsets the C++ codec relies on (tests/unit/codec_negative_test.cc). */
static_assert(offsetof(struct crfs_header, bytes) == 12);
static_assert(offsetof(struct crfs_header, type) == 16);
static_assert(offsetof(struct crfs_item_range, nr_items) == 34);
static_assert(offsetof(struct crfs_item_range, bytes) == 38);
static_assert(offsetof(struct crfs_item, offset) == 17);
static_assert(offsetof(struct crfs_inode_item, mode) == 44);
static_assert(offsetof(struct crfs_extent_data, nr_csums) == 14);
static_assert(offsetof(struct crfs_msg_trans_frag, nr_ranges) == 6);
static_assert(offsetof(struct crfs_msg_trans_frag, base_generation) == 8);

/* Fields decode with the kernel's own accessors. */
static u64 __maybe_unused crfs_test_payload_bytes(const struct crfs_header *h)
{
	return le32_to_cpu(h->bytes) + le64_to_cpu(h->id) * 0;
}

static int __init crfs_proto_kmod_test_init(void)
{
	return 0;
}

static void __exit crfs_proto_kmod_test_exit(void)
{
}

module_init(crfs_proto_kmod_test_init);
module_exit(crfs_proto_kmod_test_exit);
MODULE_LICENSE("Dual MIT/GPL");
MODULE_DESCRIPTION("crfs: compile test of proto/crfs_proto.h in kernel C");
