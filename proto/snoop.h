// snoop.h - print decoded frames the way the 2008 CRFS snoop output looked:
//
//   header id 1 info 0 bytes 55 type 2 [CRFS_MSG_ITEM_QUERY]
//     query key (256.i.0) min (0.0.0) max (~0.~0.~0) bytes 4028
//
// Keys print as (objectid.type.offset): item types as letters (i inode,
// r inode ref, x xattr, d dir item, D dir index, e extent data), all-ones
// fields as ~0, name-hash offsets in hex, and provisional objectids and dir
// indexes (>= CRFS_PROVISIONAL_FIRST) as p<n>. Names and data are quoted
// with non-printable bytes escaped as \xNN, so output is always one line per
// field whatever the peer sent. docs/protocol.md shows full examples.
//
// Pure functions; thread-safe.
#pragma once

#include <string>
#include <string_view>

#include "proto/messages.h"

namespace crfs::proto {

std::string FormatKey(const Key& key);

// The header line plus indented body lines, each ending in '\n'.
std::string FormatFrame(const Frame& frame, uint32_t payload_bytes);

// Just the header line (used when a payload fails to decode).
std::string FormatHeader(const Header& header);

// `text` with every byte that is not printable ASCII (control bytes, DEL,
// bytes >= 0x80: so never invalid UTF-8) and the backslash written as
// \xNN, cut to at most `max` bytes (ending in "..." when cut). For text
// that carries peer-sent names to a peer or a log: FINAL_REPLY detail.
std::string EscapeText(std::string_view text, size_t max);

}  // namespace crfs::proto
