// request_error.h - how a request fails: a Linux errno for the FINAL_REPLY
// plus a detail text for the client (and the log). err == 0 is success.
//
// Value type; thread-safe.
#pragma once

#include <cerrno>
#include <cstring>
#include <string>

namespace crfs::server {

struct RequestError {
  int err = 0;
  std::string text;
};

// Sets *err and returns false (for `return Fail(...)` in bool functions).
inline bool Fail(RequestError* err, int e, std::string text) {
  err->err = e;
  err->text = std::move(text);
  return false;
}
// Fail with the current errno: "what: strerror(errno)".
inline bool Errno(RequestError* err, const std::string& what) {
  const int e = errno;
  return Fail(err, e, what + ": " + std::strerror(e));
}

}  // namespace crfs::server
