#include "proto/status.h"

namespace crfs {

const char* CodeName(Code code) {
  switch (code) {
    case Code::kOk: return "ok";
    case Code::kTruncated: return "truncated";
    case Code::kTooLarge: return "too large";
    case Code::kLengthMismatch: return "length mismatch";
    case Code::kUnknownType: return "unknown type";
    case Code::kBadCount: return "bad count";
    case Code::kBadValue: return "bad value";
    case Code::kOutOfOrder: return "out of order";
    case Code::kChecksum: return "checksum mismatch";
    case Code::kInvalidArgument: return "invalid argument";
    case Code::kIo: return "i/o error";
    case Code::kRemote: return "server error";
  }
  return "unknown code";
}

std::string Status::ToString() const {
  if (ok()) return "ok";
  return std::string(CodeName(code_)) + ": " + message_;
}

}  // namespace crfs
