// fd.h - a file descriptor closed at scope exit.
//
// Owns fd (-1: none). Not copyable. Not thread-safe (a plain value).
#pragma once

#include <unistd.h>

namespace crfs::server {

struct Fd {
  int fd = -1;
  Fd() = default;
  explicit Fd(int f) : fd(f) {}
  ~Fd() {
    if (fd >= 0) close(fd);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
};

}  // namespace crfs::server
