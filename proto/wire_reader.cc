#include "proto/wire_reader.h"

namespace crfs::proto {

Status Reader::Need(size_t n, const char* what) const {
  if (n <= remaining()) return Status::Ok();
  return Status(Code::kTruncated, "need " + std::to_string(n) + " bytes for " + what + " at offset " +
                                      std::to_string(pos_) + ", " + std::to_string(remaining()) + " left");
}

uint64_t Reader::GetLe(size_t n) {
  uint64_t v = 0;
  for (size_t i = 0; i < n; i++) v |= uint64_t{buf_[pos_ + i]} << (8 * i);
  pos_ += n;
  return v;
}

Status Reader::U8(uint8_t* out, const char* what) {
  CRFS_RETURN_IF_ERROR(Need(1, what));
  *out = static_cast<uint8_t>(GetLe(1));
  return Status::Ok();
}

Status Reader::Le16(uint16_t* out, const char* what) {
  CRFS_RETURN_IF_ERROR(Need(2, what));
  *out = static_cast<uint16_t>(GetLe(2));
  return Status::Ok();
}

Status Reader::Le32(uint32_t* out, const char* what) {
  CRFS_RETURN_IF_ERROR(Need(4, what));
  *out = static_cast<uint32_t>(GetLe(4));
  return Status::Ok();
}

Status Reader::Le64(uint64_t* out, const char* what) {
  CRFS_RETURN_IF_ERROR(Need(8, what));
  *out = GetLe(8);
  return Status::Ok();
}

Status Reader::Take(size_t n, Bytes* out, const char* what) {
  CRFS_RETURN_IF_ERROR(Need(n, what));
  *out = buf_.subspan(pos_, n);
  pos_ += n;
  return Status::Ok();
}

Status Reader::TakeString(size_t n, std::string* out, const char* what) {
  Bytes b;
  CRFS_RETURN_IF_ERROR(Take(n, &b, what));
  out->assign(reinterpret_cast<const char*>(b.data()), b.size());
  return Status::Ok();
}

Status Reader::Sub(size_t n, Reader* out, const char* what) {
  Bytes b;
  CRFS_RETURN_IF_ERROR(Take(n, &b, what));
  *out = Reader(b);
  return Status::Ok();
}

Status Reader::ExpectEnd(const char* what) const {
  if (empty()) return Status::Ok();
  return Status(Code::kLengthMismatch, std::to_string(remaining()) + " unexpected trailing bytes after " + what);
}

bool Writer::Room(size_t n) {
  if (overflow_ || n > max_ - buf_.size()) {
    overflow_ = true;
    return false;
  }
  return true;
}

void Writer::PutLe(uint64_t v, size_t n) {
  if (!Room(n)) return;
  for (size_t i = 0; i < n; i++) buf_.push_back(static_cast<uint8_t>(v >> (8 * i)));
}

void Writer::Put(Bytes b) {
  if (!Room(b.size())) return;
  buf_.insert(buf_.end(), b.begin(), b.end());
}

void Writer::Put(const std::string& s) { Put(Bytes(reinterpret_cast<const uint8_t*>(s.data()), s.size())); }

void Writer::PatchLe32(size_t pos, uint32_t v) {
  if (overflow_ || pos + 4 > buf_.size()) {
    overflow_ = true;
    return;
  }
  for (size_t i = 0; i < 4; i++) buf_[pos + i] = static_cast<uint8_t>(v >> (8 * i));
}

Status Writer::status() const {
  if (!overflow_) return Status::Ok();
  return Status(Code::kTooLarge, "encoding exceeds " + std::to_string(max_) + " bytes");
}

}  // namespace crfs::proto
