// request_error.h - how a request fails: a Linux errno for the FINAL_REPLY
// plus a detail text for the client (and the log). err == 0 is success.
//
// Value type; thread-safe.
#pragma once

#include <string>

namespace crfs::server {

struct RequestError {
  int err = 0;
  std::string text;
};

}  // namespace crfs::server
