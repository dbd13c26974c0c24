// frame_stream.h - cut a byte stream (a TLS session) into frames.
//
// FrameAssembler takes bytes as they arrive and hands out whole, decoded
// frames. It decodes each header as soon as its 24 bytes are present and
// refuses an oversized or malformed one before buffering its payload, so a
// peer cannot make it hold more than one header plus `max_payload` bytes.
// After the first error the stream is unusable (framing is lost) and every
// later call returns that error.
//
// Not thread-safe; one per session and direction.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "proto/codec.h"

namespace crfs::proto {

class FrameAssembler {
 public:
  explicit FrameAssembler(uint32_t max_payload = CRFS_MAX_PAYLOAD) : max_payload_(max_payload) {}

  // How many more bytes the current frame needs (at least 1): callers read
  // at most this much, so no byte of the next frame is consumed early.
  size_t Wanted() const;

  // Appends bytes (at most Wanted()); OK unless the stream is broken.
  Status Push(Bytes bytes);

  // The next whole frame, if one is complete. A frame whose header was fine
  // but whose payload does not decode breaks the stream and is returned as
  // that error.
  Result<std::optional<Frame>> Pop();

  // The header of the frame being assembled or last popped, if decoded
  // (for error reports: which request failed).
  const std::optional<Header>& header() const { return header_; }
  uint64_t frames() const { return frames_; }
  // The limit for the headers decoded from now on (a session's negotiated
  // max_payload, after HELLO).
  void set_max_payload(uint32_t max_payload) { max_payload_ = max_payload; }

 private:
  uint32_t max_payload_;
  std::vector<uint8_t> buf_;
  std::optional<Header> header_;
  Status broken_;
  uint64_t frames_ = 0;
};

}  // namespace crfs::proto
