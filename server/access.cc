#include "server/access.h"

#include <fcntl.h>
#include <unistd.h>

namespace crfs::server {

bool Access::Permitted(int fd, const struct stat& st, int mask) const {
  if (Privileged(st)) {
    // CAP_DAC_OVERRIDE: execute only where someone may execute.
    if (S_ISDIR(st.st_mode) || !(mask & X_OK) || (st.st_mode & (S_IXUSR | S_IXGRP | S_IXOTH))) return true;
  }
  return faccessat(fd, "", mask, AT_EACCESS | AT_EMPTY_PATH) == 0;
}

bool Access::MayChown(const struct stat& st, uid_t to_uid, gid_t to_gid) const {
  if (Privileged(st)) return ids_.HostUidMapped(to_uid) && ids_.HostGidMapped(to_gid);
  // No supplementary groups: the owner's only group is its own gid.
  return st.st_uid == uid_ && to_uid == st.st_uid && (to_gid == st.st_gid || to_gid == gid_);
}

bool Access::MayLink(int fd, const struct stat& st) const {
  if (OwnerOrCapable(st)) return true;
  if (!S_ISREG(st.st_mode) || (st.st_mode & S_ISUID)) return false;
  if ((st.st_mode & (S_ISGID | S_IXGRP)) == (S_ISGID | S_IXGRP)) return false;
  return Permitted(fd, st, R_OK | W_OK);
}

}  // namespace crfs::server
