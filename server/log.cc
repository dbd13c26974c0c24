#include "server/log.h"

#include <time.h>
#include <unistd.h>

#include <cstdarg>
#include <cstdio>
#include <mutex>

namespace crfs::server {
namespace {

std::mutex mu;
time_t window = 0;
int lines_in_window = 0;
unsigned long dropped = 0;

const char* Prefix(LogLevel l) {
  switch (l) {
    case LogLevel::kInfo: return "<6>";
    case LogLevel::kWarning: return "<4>";
    case LogLevel::kError: return "<3>";
  }
  return "";
}

void Emit(LogLevel level, const char* fmt, va_list ap) {
  char line[1024];
  vsnprintf(line, sizeof(line), fmt, ap);
  // The <N> priority prefix is for journald; a terminal gets plain lines.
  static const bool tty = isatty(STDERR_FILENO);
  std::fprintf(stderr, "%scrfsd: %s\n", tty ? "" : Prefix(level), line);
}

}  // namespace

void Log(LogLevel level, const char* fmt, ...) {
  std::lock_guard<std::mutex> lock(mu);
  va_list ap;
  va_start(ap, fmt);
  Emit(level, fmt, ap);
  va_end(ap);
}

void LogPeer(LogLevel level, const char* fmt, ...) {
  std::lock_guard<std::mutex> lock(mu);
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  if (now.tv_sec != window) {
    if (dropped)
      std::fprintf(stderr, "%scrfsd: %lu peer log lines suppressed (rate limit)\n", isatty(STDERR_FILENO) ? "" : "<4>",
                   dropped);
    window = now.tv_sec;
    lines_in_window = 0;
    dropped = 0;
  }
  if (++lines_in_window > kPeerLinesPerSecond) {
    dropped++;
    return;
  }
  va_list ap;
  va_start(ap, fmt);
  Emit(level, fmt, ap);
  va_end(ap);
}

}  // namespace crfs::server
