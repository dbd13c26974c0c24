// fs_credentials.h - run file-system calls as a tenant's user.
//
// FsCredentials switches the calling thread's fsuid and fsgid to host ids
// for its lifetime, so the kernel checks permissions and assigns owners as
// that user, not as crfsd. Changing fsuid away from 0 drops the file
// capabilities (CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_FOWNER, CAP_FSETID) from
// the effective set; for a tenant's root (`tenant_root`) they are raised
// again, so it acts as root inside its own tree, and only there (crfsd
// reaches no file outside the tenant: tenant_store.h). The destructor
// restores crfsd's own ids and capabilities.
//
// ok() is false if the switch did not take (crfsd lacks CAP_SETUID/SETGID,
// or the capabilities could not be raised); callers then refuse the request.
//
// Not thread-safe in the sense that matters: it changes the calling thread's
// credentials, which the single event loop thread owns.
#pragma once

#include <sys/types.h>

namespace crfs::server {

class FsCredentials {
 public:
  FsCredentials(uid_t uid, gid_t gid, bool tenant_root);
  ~FsCredentials();
  FsCredentials(const FsCredentials&) = delete;
  FsCredentials& operator=(const FsCredentials&) = delete;

  bool ok() const { return ok_; }

 private:
  uid_t old_uid_;
  gid_t old_gid_;
  bool raised_ = false;
  bool ok_ = false;
};

// For the span of one internal step (learning an object's names from btrfs,
// which needs CAP_DAC_READ_SEARCH): crfsd's own fsuid and fsgid (0) and with
// them its file capabilities, whatever FsCredentials is in effect on this
// thread; the destructor restores that, raised capabilities included.
class ServerCredentials {
 public:
  ServerCredentials();
  ~ServerCredentials();
  ServerCredentials(const ServerCredentials&) = delete;
  ServerCredentials& operator=(const ServerCredentials&) = delete;

 private:
  uid_t old_uid_;
  gid_t old_gid_;
  bool had_caps_ = false;
};

}  // namespace crfs::server
