// storage_lock.h - one crfsd per storage root.
//
// crfsd takes an exclusive open-file-description lock (F_OFD_SETLK) on
// <storage_root>/crfsd.lock before it reads or writes any journal, and holds
// it until it exits (the kernel drops it with the last fd, also on SIGKILL).
// The file says who holds it: "pid N\nstarted UNIX_SECONDS\nboot BOOT_ID\n"
// (an OFD lock has no owning pid the kernel reports). The boot id tells the
// next crfsd whether the machine restarted in between (journal replay trusts
// less of the journal after a power cut: tenant_commit.cc). A second crfsd on the same root is
// refused with that holder named; read-only tools (crfsd --check-config,
// crfsctl) only Probe() it and never create the file.
//
// The lock file lives in the storage root's top-level subvolume, next to
// journal/ and tenants/, where no tenant can reach it.
//
// Ownership: a StorageLock owns its fd; the lock lasts as long as the
// object. Not thread-safe (a plain value, made once at start).
#pragma once

#include <sys/types.h>

#include <memory>
#include <optional>
#include <string>

#include "proto/status.h"

namespace crfs::server {

struct LockHolder {
  pid_t pid = 0;                 // 0: the file did not say
  int64_t started = 0;           // unix seconds, 0 if unknown
  std::string boot;              // the kernel's boot id when it started, "" if unknown
  std::string Describe() const;  // "crfsd pid 123 (running since 2026-12-02 01:02:03 UTC)"
};

class StorageLock {
 public:
  // The lock file's path for `storage_root`.
  static std::string PathFor(const std::string& storage_root);
  // Takes the lock or fails (kIo) with a message naming the holder.
  static Result<std::unique_ptr<StorageLock>> Acquire(const std::string& storage_root);
  // Who holds the lock now, without taking it or creating anything;
  // nullopt if nobody does. Errors other than "no lock file" are returned.
  static Result<std::optional<LockHolder>> Probe(const std::string& storage_root);

  // Who held the lock before this crfsd took it (what the file said).
  const LockHolder& previous() const { return previous_; }
  // This boot's id (/proc/sys/kernel/random/boot_id), "" if unreadable.
  static std::string CurrentBootId();

  ~StorageLock();
  StorageLock(const StorageLock&) = delete;
  StorageLock& operator=(const StorageLock&) = delete;

 private:
  explicit StorageLock(int fd) : fd_(fd) {}
  int fd_;
  LockHolder previous_;
};

}  // namespace crfs::server
