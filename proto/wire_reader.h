// wire_reader.h - the one bounds-checked reader (and its writer) for every
// untrusted byte crfs parses.
//
// Reader walks a borrowed span front to back. Every getter checks that the
// bytes it needs are present before touching them, consumes them on success
// and returns a Status naming the field on failure (the reader is then left
// where it was). Integers are little-endian. Nothing outside this file reads
// wire bytes by pointer arithmetic or memcpy.
//
// Writer appends little-endian integers and byte runs to an owned buffer
// that may not grow beyond a fixed maximum; exceeding it latches an error
// reported by status(), so encoders check once at the end.
//
// Ownership: a Reader borrows its bytes; the caller keeps them alive for the
// Reader's lifetime and for every span it hands out. Not thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "proto/status.h"

namespace crfs::proto {

using Bytes = std::span<const uint8_t>;

class Reader {
 public:
  explicit Reader(Bytes buf) : buf_(buf) {}

  size_t remaining() const { return buf_.size() - pos_; }
  size_t position() const { return pos_; }
  bool empty() const { return remaining() == 0; }

  // Each reads one little-endian integer; `what` names it in errors.
  Status U8(uint8_t* out, const char* what);
  Status Le16(uint16_t* out, const char* what);
  Status Le32(uint32_t* out, const char* what);
  Status Le64(uint64_t* out, const char* what);

  // Borrows the next n bytes.
  Status Take(size_t n, Bytes* out, const char* what);
  // Copies the next n bytes into a string (names; may hold any byte).
  Status TakeString(size_t n, std::string* out, const char* what);
  // Hands the next n bytes to `out` as a reader of their own (nested
  // structures: the sub-reader cannot read past them).
  Status Sub(size_t n, Reader* out, const char* what);

  // OK when every byte has been consumed; kLengthMismatch otherwise.
  Status ExpectEnd(const char* what) const;

 private:
  Status Need(size_t n, const char* what) const;
  uint64_t GetLe(size_t n);

  Bytes buf_;
  size_t pos_ = 0;
};

class Writer {
 public:
  explicit Writer(size_t max_size) : max_(max_size) {}

  void U8(uint8_t v) { PutLe(v, 1); }
  void Le16(uint16_t v) { PutLe(v, 2); }
  void Le32(uint32_t v) { PutLe(v, 4); }
  void Le64(uint64_t v) { PutLe(v, 8); }
  void Put(Bytes b);
  void Put(const std::string& s);
  // Overwrites 4 bytes at `pos` (a length field written before its data).
  void PatchLe32(size_t pos, uint32_t v);

  size_t size() const { return buf_.size(); }
  // kTooLarge if any write would have passed the maximum.
  Status status() const;
  // Precondition: status().ok().
  std::vector<uint8_t> Take() && { return std::move(buf_); }
  const std::vector<uint8_t>& bytes() const { return buf_; }

 private:
  bool Room(size_t n);
  void PutLe(uint64_t v, size_t n);

  std::vector<uint8_t> buf_;
  size_t max_;
  bool overflow_ = false;
};

}  // namespace crfs::proto
