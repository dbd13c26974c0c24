#include "proto/frame_stream.h"

namespace crfs::proto {

size_t FrameAssembler::Wanted() const {
  if (buf_.size() < kHeaderSize) return kHeaderSize - buf_.size();
  size_t total = kHeaderSize + (header_ ? header_->bytes : 0);
  return total > buf_.size() ? total - buf_.size() : 1;
}

Status FrameAssembler::Push(Bytes bytes) {
  CRFS_RETURN_IF_ERROR(broken_);
  if (bytes.size() > Wanted()) {
    return Status(Code::kInvalidArgument, "pushed more bytes than the frame wants");
  }
  if (buf_.size() < kHeaderSize) header_.reset();
  buf_.insert(buf_.end(), bytes.begin(), bytes.end());
  if (buf_.size() == kHeaderSize && !header_) {
    auto h = DecodeHeader(buf_, max_payload_);
    if (!h.ok()) {
      broken_ = h.status();
      return broken_;
    }
    header_ = *h;
    buf_.reserve(kHeaderSize + header_->bytes);
  }
  return Status::Ok();
}

Result<std::optional<Frame>> FrameAssembler::Pop() {
  if (!broken_.ok()) return broken_;
  if (!header_ || buf_.size() < kHeaderSize + header_->bytes) return std::optional<Frame>();
  auto f = DecodePayload(*header_, Bytes(buf_).subspan(kHeaderSize));
  if (!f.ok()) {
    broken_ = f.status();
    return broken_;
  }
  buf_.clear();
  frames_++;
  return std::optional<Frame>(std::move(*f));
}

}  // namespace crfs::proto
