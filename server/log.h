// log.h - crfsd's log: one line per event on stderr, with a <N> syslog
// priority prefix that journald understands (left off on a terminal). Lines triggered by a remote peer go through
// LogPeer, which is rate-limited so a client cannot flood the log; what it
// drops is counted and reported.
//
// Thread-safe (one mutex).
#pragma once

namespace crfs::server {

enum class LogLevel { kInfo, kWarning, kError };

void Log(LogLevel level, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
// At most kPeerLinesPerSecond lines per second in total.
void LogPeer(LogLevel level, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

inline constexpr int kPeerLinesPerSecond = 50;

}  // namespace crfs::server
