#include "server/storage_lock.h"

#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace crfs::server {
namespace {

// The holder as the lock file says it; {} if it says nothing readable.
LockHolder ReadHolder(int fd) {
  char buf[128] = {};
  const ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
  LockHolder h;
  if (n <= 0) return h;
  long long pid = 0, started = 0;
  char boot[64] = "";
  if (std::sscanf(buf, "pid %lld\nstarted %lld\nboot %63s", &pid, &started, boot) >= 1 && pid > 0 &&
      pid < (1ll << 31)) {
    h.pid = static_cast<pid_t>(pid);
    h.started = started;
    h.boot = boot;
  }
  return h;
}

struct flock WholeFile(short type) {
  struct flock l {};
  l.l_type = type;
  l.l_whence = SEEK_SET;
  l.l_start = 0;
  l.l_len = 0;  // to the end, whatever it grows to
  return l;
}

}  // namespace

std::string LockHolder::Describe() const {
  std::string s = pid > 0 ? "crfsd pid " + std::to_string(pid) : "a crfsd (pid unknown)";
  if (started > 0) {
    const time_t t = static_cast<time_t>(started);
    struct tm tm {};
    char when[32];
    if (gmtime_r(&t, &tm) && strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S UTC", &tm) > 0) {
      s += std::string(" (running since ") + when + ")";
    }
  }
  return s;
}

std::string StorageLock::PathFor(const std::string& storage_root) { return storage_root + "/crfsd.lock"; }

Result<std::unique_ptr<StorageLock>> StorageLock::Acquire(const std::string& storage_root) {
  const std::string path = PathFor(storage_root);
  int fd = open(path.c_str(), O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) return Status(Code::kIo, "lock " + path + ": " + strerror(errno));
  std::unique_ptr<StorageLock> lock(new StorageLock(fd));
  struct flock l = WholeFile(F_WRLCK);
  if (fcntl(fd, F_OFD_SETLK, &l) != 0) {
    if (errno == EAGAIN || errno == EACCES) {
      return Status(Code::kIo, "storage root " + storage_root + " is in use by " + ReadHolder(fd).Describe() +
                                   " (lock " + path + "); one crfsd serves a storage root");
    }
    return Status(Code::kIo, "lock " + path + ": " + strerror(errno));
  }
  lock->previous_ = ReadHolder(fd);
  char buf[160];
  const int n = std::snprintf(buf, sizeof(buf), "pid %lld\nstarted %lld\nboot %s\n", static_cast<long long>(getpid()),
                              static_cast<long long>(time(nullptr)), CurrentBootId().c_str());
  if (ftruncate(fd, 0) != 0 || pwrite(fd, buf, static_cast<size_t>(n), 0) != n) {
    return Status(Code::kIo, "lock " + path + ": writing the holder: " + strerror(errno));
  }
  return lock;
}

Result<std::optional<LockHolder>> StorageLock::Probe(const std::string& storage_root) {
  const std::string path = PathFor(storage_root);
  int fd = open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return std::optional<LockHolder>();
    return Status(Code::kIo, "lock " + path + ": " + strerror(errno));
  }
  struct flock l = WholeFile(F_WRLCK);
  const int r = fcntl(fd, F_OFD_GETLK, &l);
  const int e = errno;
  std::optional<LockHolder> holder;
  if (r == 0 && l.l_type != F_UNLCK) holder = ReadHolder(fd);
  close(fd);
  if (r != 0) return Status(Code::kIo, "lock " + path + ": " + strerror(e));
  return holder;
}

std::string StorageLock::CurrentBootId() {
  char buf[64] = "";
  int fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return "";
  const ssize_t n = read(fd, buf, sizeof(buf) - 1);
  close(fd);
  std::string id(buf, n > 0 ? static_cast<size_t>(n) : 0);
  while (!id.empty() && (id.back() == '\n' || id.back() == ' ')) id.pop_back();
  return id.find_first_of(" \n") == std::string::npos ? id : "";
}

StorageLock::~StorageLock() { close(fd_); }

}  // namespace crfs::server
