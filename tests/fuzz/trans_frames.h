// trans_frames.h - what the transaction fuzz targets share: the tenant's id
// map, and the walk over the TRANS_FRAGs of a stream of frames.
#pragma once

#include <cstddef>
#include <cstdint>
#include <variant>

#include "proto/codec.h"
#include "server/idmap.h"

namespace crfs::fuzz {

// The id map of the fuzzed tenant (tenant ids 0..65535 at host 100000).
inline const server::IdMap& TenantIds() {
  static const server::IdMap ids(server::IdMapConfig{100000, 100000, 65536, 65534, false, true});
  return ids;
}

// Calls fn(request id, fragment, frame bytes) for each TRANS_FRAG of `data`,
// a stream of frames, up to the first frame that does not decode.
template <typename Fn>
void ForEachTransFrag(const uint8_t* data, size_t size, Fn&& fn) {
  proto::Bytes rest(data, size);
  while (!rest.empty()) {
    size_t n = 0;
    auto frame = proto::DecodeFrame(rest, &n);
    if (!frame.ok()) return;
    rest = rest.subspan(n);
    if (auto* frag = std::get_if<proto::TransFrag>(&frame->msg)) fn(frame->id, *frag, n);
  }
}

}  // namespace crfs::fuzz
