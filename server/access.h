// access.h - the kernel's permission rules for one user of a tenant, with a
// user namespace's semantics for the tenant's root (SECURITY.md §3.5).
//
// crfsd acts for a tenant user with that user's mapped fsuid and fsgid and
// no supplementary groups (fs_credentials.h; crfsd drops its own groups at
// start). The tenant's root (tenant uid 0, not root-squashed) holds
// CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER and
// CAP_FSETID over an object only if the object's owner uid *and* gid are
// both inside the tenant's map: the kernel's capable_wrt_inode_uidgid() in
// a user namespace whose uid_map and gid_map are the tenant's. Over any
// other object (owned by host root, by another tenant's range, by an id
// outside every map) it is the ordinary user uid_base:gid_base, and only the
// mode bits (and ACLs) decide.
//
// Contract: the methods that ask the kernel (Permitted) must run while
// FsCredentials(uid, gid, /*tenant_root=*/false) is in effect on the calling
// thread, so that faccessat(AT_EACCESS) answers for the unprivileged user:
// privilege is added here, per object, never by the effective capabilities.
// Immutable; cheap to copy; holds no fds.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include "server/idmap.h"

namespace crfs::server {

class Access {
 public:
  // `uid`/`gid`: the host ids the user acts with; `tenant_root`: it is the
  // tenant's root (and not squashed).
  Access(const IdMap& ids, uid_t uid, gid_t gid, bool tenant_root)
      : ids_(ids), uid_(uid), gid_(gid), tenant_root_(tenant_root) {}

  uid_t uid() const { return uid_; }
  gid_t gid() const { return gid_; }
  bool tenant_root() const { return tenant_root_; }

  // The tenant's root over an object whose owner uid and gid are mapped.
  bool Privileged(const struct stat& st) const {
    return tenant_root_ && ids_.HostUidMapped(st.st_uid) && ids_.HostGidMapped(st.st_gid);
  }
  // inode_owner_or_capable(): chmod, setting times, removal in a sticky
  // directory, link of any file.
  bool OwnerOrCapable(const struct stat& st) const { return st.st_uid == uid_ || Privileged(st); }
  // generic_permission(): may the user access object `fd` (any fd, O_PATH
  // too) whose stat is `st` with `mask` (R_OK | W_OK | X_OK)? Privileged:
  // everything on a directory, read and write on anything else, execute
  // where some execute bit is set; otherwise the kernel decides.
  bool Permitted(int fd, const struct stat& st, int mask) const;
  // chown_ok() and chgrp_ok(): may the user give the object owner `to_uid`
  // and group `to_gid` (host ids)? The owner may only keep its uid and pick
  // its own group; the tenant's root may give a privileged object any
  // mapped ids.
  bool MayChown(const struct stat& st, uid_t to_uid, gid_t to_gid) const;
  // may_linkat() with fs.protected_hardlinks: the owner (or the privileged
  // root), or anyone who may read and write a regular file that is neither
  // setuid nor setgid-executable.
  bool MayLink(int fd, const struct stat& st) const;

 private:
  IdMap ids_;
  uid_t uid_;
  gid_t gid_;
  bool tenant_root_;
};

}  // namespace crfs::server
