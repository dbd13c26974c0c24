#include "server/fs_credentials.h"

#include <cap-ng.h>
#include <linux/capability.h>
#include <sys/fsuid.h>

namespace crfs::server {
namespace {

constexpr unsigned kFileCaps[] = {CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_FOWNER, CAP_FSETID};

bool SetFileCaps(bool on) {
  capng_get_caps_process();
  for (unsigned c : kFileCaps) {
    if (on && !capng_have_capability(CAPNG_PERMITTED, c)) return false;
    if (capng_update(on ? CAPNG_ADD : CAPNG_DROP, CAPNG_EFFECTIVE, c) != 0) return false;
  }
  return capng_apply(CAPNG_SELECT_CAPS) == 0;
}

}  // namespace

FsCredentials::FsCredentials(uid_t uid, gid_t gid, bool tenant_root) {
  old_gid_ = static_cast<gid_t>(setfsgid(gid));
  old_uid_ = static_cast<uid_t>(setfsuid(uid));
  // setfs[ug]id report the previous value, not success: read back.
  ok_ = static_cast<uid_t>(setfsuid(static_cast<uid_t>(-1))) == uid &&
        static_cast<gid_t>(setfsgid(static_cast<gid_t>(-1))) == gid;
  if (ok_ && tenant_root) {
    raised_ = true;
    ok_ = SetFileCaps(true);
  }
}

FsCredentials::~FsCredentials() {
  setfsuid(old_uid_);
  setfsgid(old_gid_);
  // Back at fsuid 0 the kernel restores the file capabilities by itself;
  // for any other fsuid drop what was raised.
  if (raised_ && old_uid_ != 0) SetFileCaps(false);
}

ServerCredentials::ServerCredentials() {
  old_uid_ = static_cast<uid_t>(setfsuid(static_cast<uid_t>(-1)));
  old_gid_ = static_cast<gid_t>(setfsgid(static_cast<gid_t>(-1)));
  if (old_uid_ != 0) {
    capng_get_caps_process();
    had_caps_ = capng_have_capability(CAPNG_EFFECTIVE, CAP_DAC_OVERRIDE) != 0;
  }
  setfsuid(0);  // the kernel raises the file capabilities again
  setfsgid(0);
}

ServerCredentials::~ServerCredentials() {
  setfsgid(old_gid_);
  setfsuid(old_uid_);
  if (old_uid_ != 0 && had_caps_) SetFileCaps(true);
}

}  // namespace crfs::server
