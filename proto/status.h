// status.h - error values for all crfs modules.
//
// A Status is a closed error code plus a human-readable message naming what
// was wrong (which field, which limit). Result<T> is a T or a Status. Both
// are [[nodiscard]]: an ignored error is a compile error under -Werror.
// No crfs module throws across its boundary; they return these instead.
//
// Thread-safety: value types, no shared state.
#pragma once

#include <cassert>
#include <string>
#include <utility>
#include <variant>

namespace crfs {

enum class Code {
  kOk = 0,
  kTruncated,        // input ends before a field it announces
  kTooLarge,         // a length or count exceeds a protocol limit
  kLengthMismatch,   // lengths that must agree do not (slack or overlap)
  kUnknownType,      // unknown message, item or extent type
  kBadCount,         // a count disagrees with the data it counts
  kBadValue,         // a field holds a value the protocol forbids
  kOutOfOrder,       // keys unsorted, duplicated, or outside their range
  kChecksum,         // a crc32c does not match its data
  kInvalidArgument,  // a caller (not the peer) passed something invalid
  kIo,               // an operating-system call failed
  kRemote,           // the peer answered a request with an error (errno)
};

// Returns a short stable name such as "truncated"; never null.
const char* CodeName(Code code);

class [[nodiscard]] Status {
 public:
  Status() = default;  // OK
  Status(Code code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return Status(); }
  // The peer refused with Linux errno `err`: Code::kRemote, and the errno
  // kept for callers that hand it on (the FUSE client answers with it).
  static Status Remote(int err, std::string message) {
    Status s(Code::kRemote, std::move(message));
    s.errno_ = err;
    return s;
  }

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }
  // kRemote made by Remote(): the peer's errno; else 0.
  int remote_errno() const { return errno_; }
  // "truncated: need 17 bytes for range min, 3 left" or "ok".
  std::string ToString() const;

 private:
  Code code_ = Code::kOk;
  std::string message_;
  int errno_ = 0;
};

// A T or a non-OK Status.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}        // NOLINT(google-explicit-constructor)
  Result(Status status) : v_(std::move(status)) {  // NOLINT(google-explicit-constructor)
    assert(!std::get<Status>(v_).ok() && "Result needs a value or an error");
  }

  bool ok() const { return std::holds_alternative<T>(v_); }
  explicit operator bool() const { return ok(); }

  // Precondition for value()/operator*: ok().
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  // OK when a value is held.
  Status status() const { return ok() ? Status::Ok() : std::get<Status>(v_); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace crfs

// The one control-flow macro: return a non-OK Status to the caller.
#define CRFS_RETURN_IF_ERROR(expr)               \
  do {                                           \
    ::crfs::Status crfs_status_ = (expr);        \
    if (!crfs_status_.ok()) return crfs_status_; \
  } while (0)
