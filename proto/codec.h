// codec.h - encode and decode CRFS frames, messages, item ranges and items.
//
// Decoding takes untrusted bytes through proto::Reader and returns either a
// fully checked value (proto/messages.h) or a Status that names the field and
// the rule it broke. Every length is checked against the bytes that contain
// it before use, every count against the bytes it counts before anything is
// allocated for it, and unknown types, reserved bits and slack bytes are
// refused. docs/protocol.md, "Validation by the decoder", is the list.
//
// Encoding refuses values the wire cannot represent (names over 255 bytes,
// counts past a limit, a frame past CRFS_MAX_PAYLOAD) with kInvalidArgument
// or kTooLarge; it does not re-check semantic rules such as key order, which
// the receiver's decoder enforces.
//
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <vector>

#include "proto/messages.h"
#include "proto/status.h"
#include "proto/wire_reader.h"

namespace crfs::proto {

inline constexpr size_t kHeaderSize = sizeof(struct crfs_header);

// Decodes the fixed header at the front of `buf` (which may hold more).
// Refuses unknown types, nonzero flags/reserved, a payload larger than
// `max_payload`, id 0 on anything but REVOKE/DURABLE, and info != 0 on
// anything but FINAL_REPLY.
Result<Header> DecodeHeader(Bytes buf, uint32_t max_payload = CRFS_MAX_PAYLOAD);

// Decodes the payload of a frame whose header has been decoded.
// Precondition: payload.size() == header.bytes.
Result<Frame> DecodePayload(const Header& header, Bytes payload);

// Decodes one whole frame from the front of `buf`; on success *consumed is
// the frame's length (header + payload).
Result<Frame> DecodeFrame(Bytes buf, size_t* consumed, uint32_t max_payload = CRFS_MAX_PAYLOAD);

Result<std::vector<uint8_t>> EncodeFrame(const Frame& frame);

// Item bodies, for callers that handle items outside frames.
Result<ItemBody> DecodeItemBody(uint8_t key_type, Bytes body);
Result<std::vector<uint8_t>> EncodeItemBody(uint8_t key_type, const ItemBody& body);

// Names of protocol constants, for logs and the decoder tool; "?" if unknown.
const char* MessageTypeName(uint16_t type);  // "CRFS_MSG_ITEM_QUERY"
const char* FileTypeName(uint8_t type);      // "CRFS_FT_DIR"

}  // namespace crfs::proto
