/* SPDX-License-Identifier: (GPL-2.0 OR MIT) */
/*
 * crfs_proto.h - the CRFS item protocol: every on-the-wire struct and limit.
 *
 * This header is the single source of truth for the wire format. It is
 * included by the kernel client (kmod/, kernel C) and by the C++ codec
 * (proto/codec.h). docs/protocol.md is its normative prose.
 *
 * Layout rules:
 *  - Every multi-byte integer is little-endian (__le16/__le32/__le64).
 *  - Every struct is packed: there is no padding anywhere on the wire, so a
 *    struct's size is the exact byte count it occupies (see the size checks
 *    at the bottom of this file).
 *  - Variable-length data (names, values, item arrays, checksums, file data)
 *    follows the fixed struct that announces its length; trailing data is
 *    described in comments, never as flexible array members, so that the
 *    header is valid C and C++.
 *  - Nothing here may be read straight off the wire by casting a buffer:
 *    C++ decodes through proto/wire_reader.h, the module through its C twin.
 */
#ifndef CRFS_PROTO_H
#define CRFS_PROTO_H

#include <linux/types.h>

#define CRFS_PACKED __attribute__((packed))

/* ------------------------------------------------------------------------ */
/* Versioning and limits                                                     */
/* ------------------------------------------------------------------------ */

enum crfs_limits {
	CRFS_PROTO_MAGIC = 0x53465243, /* "CRFS" read as a little-endian u32 */
	CRFS_PROTO_VERSION = 1,
	/* Largest payload of one frame (after the header). Checked before any
	 * allocation; a frame announcing more ends the session. */
	CRFS_MAX_PAYLOAD = 1 << 20,
	/* Smallest max_payload a peer may announce in HELLO/HELLO_REPLY: room
	 * for a range holding the largest item, and for a full DATA frame. */
	CRFS_MIN_PAYLOAD = 1 << 17,
	/* Longest name of a directory entry, inode ref or xattr (as Linux). */
	CRFS_MAX_NAME = 255,
	/* Most items one ITEM_RANGE may carry. */
	CRFS_MAX_RANGE_ITEMS = 16384,
	/* Most ranges one TRANS_FRAG or ITEM_RANGE reply set may carry. */
	CRFS_MAX_FRAG_RANGES = 1024,
	/* Largest body of one item (an inline extent with its checksums). */
	CRFS_MAX_ITEM_BYTES = (64 << 10) + 4096,
	/* Most bytes of file data in one extent item or data message. */
	CRFS_MAX_DATA_BYTES = 64 << 10,
	/* File data is checksummed per block of this size (crc32c each). */
	CRFS_DATA_BLOCK_SIZE = 4096,
	/* Largest xattr value (Linux XATTR_SIZE_MAX). */
	CRFS_MAX_XATTR_VALUE = 65536,
	/* Largest capability token carried in HELLO. */
	CRFS_MAX_CAPABILITY = 8192,
	/* Longest human-readable detail in a FINAL_REPLY. */
	CRFS_MAX_ERROR_TEXT = 1024,
	/* Longest snapshot name. */
	CRFS_MAX_SNAPSHOT_NAME = 255,
	/* Most provisional-to-real mappings in one TRANS_REPLY: as many as fit
	 * one frame of CRFS_MAX_PAYLOAD ((2^20 - 16) / 16); a session with a
	 * smaller max_payload holds (max_payload - 16) / 16. */
	CRFS_MAX_TRANS_MAP = 65535,
};

/* ------------------------------------------------------------------------ */
/* Keys                                                                      */
/* ------------------------------------------------------------------------ */

/*
 * A btrfs key. Keys sort by (objectid, type, offset) as unsigned integers.
 * objectid is the btrfs inode number inside the tenant's subvolume; the
 * subvolume's root directory is CRFS_ROOT_OBJECTID.
 */
struct crfs_key {
	__le64 objectid;
	__u8 type;
	__le64 offset;
} CRFS_PACKED;

/* Item types: today's btrfs numbers (include/uapi/linux/btrfs_tree.h). */
enum crfs_item_type {
	CRFS_INODE_ITEM_KEY = 1,
	CRFS_INODE_REF_KEY = 12,
	CRFS_XATTR_ITEM_KEY = 24,
	CRFS_DIR_ITEM_KEY = 84,
	CRFS_DIR_INDEX_KEY = 96,
	CRFS_EXTENT_DATA_KEY = 108,
};

#define CRFS_ROOT_OBJECTID 256ULL
/*
 * Objectids (and DIR_INDEX offsets) at or above this value inside a
 * transaction are provisional: chosen by the client for objects the
 * transaction creates, and mapped to real values by the TRANS_REPLY.
 * btrfs allocates objectids one by one from 256, so real ones stay far below
 * this; a server must refuse to expose an inode number at or above it.
 */
#define CRFS_PROVISIONAL_FIRST (1ULL << 63)
/* Directory index numbering starts at 2 in btrfs (0 and 1 are . and ..). */
#define CRFS_FIRST_DIR_INDEX 2ULL

/* ------------------------------------------------------------------------ */
/* Frames                                                                    */
/* ------------------------------------------------------------------------ */

/*
 * Every frame is a header followed by exactly `bytes` bytes of payload.
 * A request carries a client-chosen id (never 0); every reply carries the
 * id of its request and the last reply to a request is a FINAL_REPLY whose
 * `info` is the status (0 or a positive Linux errno). Frames with id 0 are
 * unsolicited messages from the server (REVOKE, DURABLE).
 * `flags` and `reserved` must be zero in version 1.
 */
struct crfs_header {
	__le64 id;
	__le32 info;
	__le32 bytes;
	__le16 type;
	__le16 flags;
	__le32 reserved;
} CRFS_PACKED;

enum crfs_msg_type {
	CRFS_MSG_FINAL_REPLY = 1,  /* s->c: crfs_msg_final_reply + optional error text */
	CRFS_MSG_ITEM_QUERY = 2,   /* c->s: struct crfs_msg_item_query */
	CRFS_MSG_ITEM_RANGE = 3,   /* s->c: one struct crfs_item_range */
	CRFS_MSG_LOCK = 4,         /* c->s: struct crfs_msg_lock */
	CRFS_MSG_GRANT = 5,        /* s->c: struct crfs_msg_grant */
	CRFS_MSG_TRANS_FRAG = 6,   /* c->s: struct crfs_msg_trans_frag + ranges */
	CRFS_MSG_REVOKE = 7,       /* s->c, id 0: struct crfs_msg_revoke */
	CRFS_MSG_RELEASE = 8,      /* c->s: struct crfs_msg_release */
	CRFS_MSG_HELLO = 9,        /* c->s: struct crfs_msg_hello + capability */
	CRFS_MSG_HELLO_REPLY = 10, /* s->c: struct crfs_msg_hello_reply */
	CRFS_MSG_DATA_READ = 11,   /* c->s: struct crfs_msg_data_read */
	CRFS_MSG_DATA = 12,        /* s->c: struct crfs_msg_data + csums + data */
	CRFS_MSG_DATA_WRITE = 13,  /* c->s: struct crfs_msg_data + csums + data */
	CRFS_MSG_SNAPSHOT = 14,    /* c->s: struct crfs_msg_snapshot + name */
	CRFS_MSG_PING = 15,        /* c->s: empty payload */
	CRFS_MSG_TRANS_REPLY = 16, /* s->c: struct crfs_msg_trans_reply + map */
	CRFS_MSG_SYNC = 17,        /* c->s: empty payload */
	CRFS_MSG_DURABLE = 18,     /* s->c: struct crfs_msg_durable */
	CRFS_MSG_TREE_QUERY = 19,  /* c->s: struct crfs_msg_tree_query */
	CRFS_MSG_OPEN = 20,        /* c->s: struct crfs_msg_open */
	CRFS_MSG_CLOSE = 21,       /* c->s: struct crfs_msg_close */
	CRFS_MSG_TYPE_MAX = 21,
};

/* FINAL_REPLY: the tenant's generation when the request was answered (0
 * before HELLO), then optional human-readable detail (UTF-8, no NUL, at most
 * CRFS_MAX_ERROR_TEXT bytes). Everything a query's replies showed was
 * current at that generation, so a client bases a transaction on it
 * (crfs_msg_trans_frag.base_generation). */
struct crfs_msg_final_reply {
	__le64 tenant_gen;
} CRFS_PACKED;

/* ------------------------------------------------------------------------ */
/* Item ranges                                                               */
/* ------------------------------------------------------------------------ */

/*
 * Describes one item of a range: its key, and where its body lies. `offset`
 * counts from the first byte of the enclosing struct crfs_item_range.
 */
struct crfs_item {
	struct crfs_key key;
	__le32 offset;
	__le32 size;
} CRFS_PACKED;

/*
 * A sorted run of items whose keys all lie in [min, max]. Followed by
 * nr_items struct crfs_item, then the item bodies. `bytes` is the length of
 * the whole range, this struct included, so ranges can be laid end to end.
 * Bodies lie after the item array, inside `bytes`, and do not overlap.
 * In a transaction the range is authoritative: after commit the items in
 * [min, max] are exactly the ones listed.
 */
struct crfs_item_range {
	struct crfs_key min;
	struct crfs_key max;
	__le32 nr_items;
	__le32 bytes;
} CRFS_PACKED;

/* ITEM_QUERY: items in [min, max] starting at `key`, at most `bytes` of
 * ITEM_RANGE payload per reply frame. Replies: ITEM_RANGE* FINAL_REPLY. */
struct crfs_msg_item_query {
	struct crfs_key key;
	struct crfs_key min;
	struct crfs_key max;
	__le32 bytes;
} CRFS_PACKED;

/* ------------------------------------------------------------------------ */
/* Item bodies                                                               */
/* ------------------------------------------------------------------------ */

struct crfs_timespec {
	__le64 sec;
	__le32 nsec;
} CRFS_PACKED;

/* INODE_ITEM body, key (ino, INODE_ITEM, 0). ids are tenant ids. */
struct crfs_inode_item {
	__le64 generation; /* transid that created the inode */
	__le64 transid;    /* transid of the last change */
	__le64 size;
	__le64 nbytes;
	__le32 nlink;
	__le32 uid;
	__le32 gid;
	__le32 mode; /* S_IFMT type bits and permission bits, as Linux */
	__le64 rdev;
	__le64 flags;
	__le64 sequence;
	struct crfs_timespec atime;
	struct crfs_timespec ctime;
	struct crfs_timespec mtime;
	struct crfs_timespec otime;
} CRFS_PACKED;

/* File types of directory entries (btrfs BTRFS_FT_*). */
enum crfs_file_type {
	CRFS_FT_UNKNOWN = 0,
	CRFS_FT_REG_FILE = 1,
	CRFS_FT_DIR = 2,
	CRFS_FT_CHRDEV = 3,
	CRFS_FT_BLKDEV = 4,
	CRFS_FT_FIFO = 5,
	CRFS_FT_SOCK = 6,
	CRFS_FT_SYMLINK = 7,
	CRFS_FT_MAX = 8,
};

/*
 * DIR_ITEM body, key (dir, DIR_ITEM, btrfs_name_hash(name)): one or more
 * entries back to back (names whose hashes collide share one item).
 * DIR_INDEX body, key (dir, DIR_INDEX, index): exactly one entry.
 * Each entry is this struct followed by name_len bytes of name.
 */
struct crfs_dir_item {
	struct crfs_key location; /* (ino, INODE_ITEM, 0) of the target */
	__le64 transid;
	__le16 name_len;
	__u8 type; /* enum crfs_file_type */
} CRFS_PACKED;

/*
 * INODE_REF body, key (ino, INODE_REF, parent dir): one or more entries back
 * to back, each this struct followed by name_len bytes of name.
 */
struct crfs_inode_ref {
	__le64 index; /* the DIR_INDEX offset of the entry in the parent */
	__le16 name_len;
} CRFS_PACKED;

/*
 * XATTR_ITEM body, key (ino, XATTR_ITEM, btrfs_name_hash(name)): one or more
 * entries back to back, each this struct, the name, then the value.
 */
struct crfs_xattr_item {
	__le16 name_len;
	__le32 value_len;
} CRFS_PACKED;

enum crfs_extent_type {
	CRFS_EXTENT_INLINE = 0, /* the item carries `len` bytes of data */
	CRFS_EXTENT_HOLE = 1,   /* `len` bytes that read as zeros, no data */
	CRFS_EXTENT_REG = 2,    /* `len` bytes of data kept by the server: read
				 * them with DATA_READ; no data, no checksums */
};

/*
 * EXTENT_DATA body, key (ino, EXTENT_DATA, file offset). For INLINE extents
 * the struct is followed by nr_csums __le32 crc32c values, one per
 * CRFS_DATA_BLOCK_SIZE block of data (the last may be short), then `len`
 * bytes of data. HOLE and REG extents have nr_csums 0 and no data. A symlink's
 * target is the inline extent at offset 0 of the symlink inode.
 */
struct crfs_extent_data {
	__le64 generation;
	__le32 len;
	__u8 type; /* enum crfs_extent_type */
	__u8 reserved;
	__le16 nr_csums;
} CRFS_PACKED;

/* ------------------------------------------------------------------------ */
/* Messages                                                                  */
/* ------------------------------------------------------------------------ */

/* TRANS_FRAG: a fragment of a transaction; the header id names the
 * transaction. Followed by nr_ranges struct crfs_item_range laid end to
 * end, filling the payload exactly. The fragment with `last` set commits.
 * base_generation is the tenant generation the client's view of the ranges
 * comes from: the server refuses the transaction (ESTALE) if anything the
 * ranges cover changed after it. 0 means "I hold WRITE grants covering
 * every range" instead. All fragments of a transaction carry the same. */
struct crfs_msg_trans_frag {
	__le32 frag_nr; /* 0, 1, 2, ... within the transaction */
	__u8 last;      /* 0 or 1 */
	__u8 flags;     /* CRFS_TRANS_F_* */
	__le16 nr_ranges;
	__le64 base_generation;
} CRFS_PACKED;

/* Reply only after the transaction is durable, not merely applied. */
#define CRFS_TRANS_F_SYNC 0x01
#define CRFS_TRANS_F_ALL CRFS_TRANS_F_SYNC

/* TRANS_REPLY: sent before the FINAL_REPLY of a committed transaction.
 * Followed by nr_map struct crfs_trans_map_entry. */
struct crfs_msg_trans_reply {
	__le64 tenant_gen; /* the tenant generation after commit */
	__le32 flags;      /* CRFS_TRANS_R_* */
	__le32 nr_map;
} CRFS_PACKED;

#define CRFS_TRANS_R_APPLIED 0x01
#define CRFS_TRANS_R_DURABLE 0x02
#define CRFS_TRANS_R_ALL (CRFS_TRANS_R_APPLIED | CRFS_TRANS_R_DURABLE)

struct crfs_trans_map_entry {
	__le64 provisional;
	__le64 real;
} CRFS_PACKED;

/* DURABLE: everything committed up to `tenant_gen` is on stable storage.
 * Unsolicited (id 0), or a reply to SYNC. */
struct crfs_msg_durable {
	__le64 tenant_gen;
} CRFS_PACKED;

/* TREE_QUERY: the entries (DIR_INDEX items) of directory `objectid` and of
 * every directory below it, breadth first, as ITEM_RANGEs of one directory
 * each, at most `bytes` of ITEM_RANGE payload per reply frame. A directory
 * whose last range ends before (dir, DIR_INDEX, ~0) was cut short; one whose
 * entries are missing was not reached: the client continues with
 * ITEM_QUERY or another TREE_QUERY. Replies: ITEM_RANGE* FINAL_REPLY. */
struct crfs_msg_tree_query {
	__le64 objectid;
	__le32 bytes;
	__le32 reserved; /* 0 */
} CRFS_PACKED;

/* OPEN: the session holds object `objectid` (a regular file or directory)
 * open until CLOSE or the session's end. While it does, removing the
 * object's last name (by any session) does not destroy it: crfsd keeps it,
 * and sessions that hold it can still query it, read it (CRFS_OPEN_READ)
 * and change it (CRFS_OPEN_WRITE) by objectid; others get ENOENT. Holding
 * is not counted: OPEN of an object the session holds adds the access
 * asked for. Replies: FINAL_REPLY. */
struct crfs_msg_open {
	__le64 objectid;
	__le32 flags;    /* CRFS_OPEN_*, at least one */
	__le32 reserved; /* 0 */
} CRFS_PACKED;

#define CRFS_OPEN_READ 0x01
#define CRFS_OPEN_WRITE 0x02
#define CRFS_OPEN_ALL (CRFS_OPEN_READ | CRFS_OPEN_WRITE)

/* CLOSE: the session no longer holds `objectid` open; an object without
 * names that nobody holds any more is destroyed. Replies: FINAL_REPLY (EBADF
 * if the session did not hold it). */
struct crfs_msg_close {
	__le64 objectid;
} CRFS_PACKED;

/* HELLO: the first request of every session. Followed by cap_len bytes of
 * capability token (opaque to this layer; authd/ defines it).
 * client_id: 16 random bytes naming this client instance across its
 * sessions (reconnects, server restarts), so that a transaction it resends
 * is answered once (protocol.md section 6.4); all zero: none. */
struct crfs_msg_hello {
	__le32 magic; /* CRFS_PROTO_MAGIC */
	__le16 version_min;
	__le16 version_max;
	__le32 features; /* CRFS_FEATURE_*; none defined in version 1 */
	__le32 max_payload;
	__le32 cap_len;
	__u8 client_id[16];
} CRFS_PACKED;

struct crfs_msg_hello_reply {
	__le16 version; /* chosen from [version_min, version_max] */
	__le16 reserved;
	__le32 features;
	__le32 max_payload; /* the smaller of both sides' limits */
	__le32 lease_ms;    /* grants expire unless renewed within this */
	__le64 session_id;
	__le64 root_objectid;
	__le64 tenant_gen; /* the tenant generation now */
	__le32 uid; /* who this session acts as in its tenant (tenant ids): */
	__le32 gid; /* what it creates is owned by them */
} CRFS_PACKED;

enum crfs_lock_mode {
	CRFS_LOCK_NONE = 0,
	CRFS_LOCK_READ = 1,
	CRFS_LOCK_WRITE = 2,
};

/* LOCK: ask for a grant to cache [min, max]. Replies: GRANT FINAL_REPLY. */
struct crfs_msg_lock {
	struct crfs_key min;
	struct crfs_key max;
	__u8 mode; /* CRFS_LOCK_READ or CRFS_LOCK_WRITE */
} CRFS_PACKED;

struct crfs_msg_grant {
	__le64 grant_id;
	struct crfs_key min;
	struct crfs_key max;
	__u8 mode;
	__le32 lease_ms;
} CRFS_PACKED;

/* REVOKE: the server wants the grant back, or downgraded to `mode`. The
 * client writes back, then answers with RELEASE. */
struct crfs_msg_revoke {
	__le64 grant_id;
	__u8 mode; /* the mode the client may keep: NONE or READ */
} CRFS_PACKED;

struct crfs_msg_release {
	__le64 grant_id;
	__u8 mode; /* the mode the client keeps after this release */
} CRFS_PACKED;

/* DATA_READ: read file data by objectid. Replies: DATA* FINAL_REPLY. */
struct crfs_msg_data_read {
	__le64 objectid;
	__le64 offset;
	__le32 len; /* 1..CRFS_MAX_DATA_BYTES */
	__le32 flags;
} CRFS_PACKED;

/* DATA and DATA_WRITE: followed by nr_csums __le32 crc32c (one per
 * CRFS_DATA_BLOCK_SIZE block of data, the last may be short), then `len`
 * bytes of data. */
struct crfs_msg_data {
	__le64 objectid;
	__le64 offset;
	__le32 len;
	__le16 nr_csums;
	__le16 flags;
} CRFS_PACKED;

/* SNAPSHOT: a read-only snapshot of the tenant subvolume. Followed by
 * name_len bytes of name. */
struct crfs_msg_snapshot {
	__le16 name_len;
	__le16 flags;
} CRFS_PACKED;

/* ------------------------------------------------------------------------ */
/* Size checks: the wire layout is fixed; these never change within a version */
/* ------------------------------------------------------------------------ */

#ifdef __cplusplus
#define CRFS_STATIC_ASSERT(e, m) static_assert(e, m)
#else
#define CRFS_STATIC_ASSERT(e, m) _Static_assert(e, m)
#endif

CRFS_STATIC_ASSERT(sizeof(struct crfs_key) == 17, "crfs_key");
CRFS_STATIC_ASSERT(sizeof(struct crfs_msg_final_reply) == 8, "final_reply");
CRFS_STATIC_ASSERT(sizeof(struct crfs_header) == 24, "crfs_header");
CRFS_STATIC_ASSERT(sizeof(struct crfs_item) == 25, "crfs_item");
CRFS_STATIC_ASSERT(sizeof(struct crfs_item_range) == 42, "crfs_item_range");
CRFS_STATIC_ASSERT(sizeof(struct crfs_msg_item_query) == 55, "item_query");
CRFS_STATIC_ASSERT(sizeof(struct crfs_timespec) == 12, "crfs_timespec");
CRFS_STATIC_ASSERT(sizeof(struct crfs_inode_item) == 120, "inode_item");
CRFS_STATIC_ASSERT(sizeof(struct crfs_dir_item) == 28, "dir_item");
CRFS_STATIC_ASSERT(sizeof(struct crfs_inode_ref) == 10, "inode_ref");
CRFS_STATIC_ASSERT(sizeof(struct crfs_xattr_item) == 6, "xattr_item");
CRFS_STATIC_ASSERT(sizeof(struct crfs_extent_data) == 16, "extent_data");
CRFS_STATIC_ASSERT(sizeof(struct crfs_msg_trans_frag) == 16, "trans_frag");
CRFS_STATIC_ASSERT(sizeof(struct crfs_msg_trans_reply) == 16, "trans_reply");
CRFS_STATIC_ASSERT(sizeof(struct crfs_trans_map_entry) == 16, "map_entry");
CRFS_STATIC_ASSERT(sizeof(struct crfs_msg_durable) == 8, "durable");
CRFS_STATIC_ASSERT(sizeof(struct crfs_msg_tree_query) == 16, "tree_query");
CRFS_STATIC_ASSERT(sizeof(struct crfs_msg_open) == 16, "open");
CRFS_STATIC_ASSERT(sizeof(struct crfs_msg_close) == 8, "close");
CRFS_STATIC_ASSERT(sizeof(struct crfs_msg_hello) == 36, "hello");
CRFS_STATIC_ASSERT(sizeof(struct crfs_msg_hello_reply) == 48, "hello_reply");
CRFS_STATIC_ASSERT(sizeof(struct crfs_msg_lock) == 35, "lock");
CRFS_STATIC_ASSERT(sizeof(struct crfs_msg_grant) == 47, "grant");
CRFS_STATIC_ASSERT(sizeof(struct crfs_msg_revoke) == 9, "revoke");
CRFS_STATIC_ASSERT(sizeof(struct crfs_msg_release) == 9, "release");
CRFS_STATIC_ASSERT(sizeof(struct crfs_msg_data_read) == 24, "data_read");
CRFS_STATIC_ASSERT(sizeof(struct crfs_msg_data) == 24, "data");
CRFS_STATIC_ASSERT(sizeof(struct crfs_msg_snapshot) == 4, "snapshot");

#endif /* CRFS_PROTO_H */
