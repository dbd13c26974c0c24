// config_check.h - what crfsd checks about a configuration besides its
// syntax (config.h): the files and the machine it names.
//
// Everything here is read-only: no file is opened for writing or created,
// nothing is bound, no lock is taken. That is what lets
// `crfsd --check-config` validate an edited configuration while crfsd
// serves the same storage root (as `nginx -t`, `sshd -t` do).
//
// Pure functions of the configuration, the files and the account
// databases they read; thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "server/config.h"

namespace crfs::server {

struct Finding {
  enum Severity { kError, kWarning, kNote };
  Severity severity;
  std::string text;
};

// What crfsd checks at every start: the TLS material loads, the CRL is
// signed by the CA and current (expired: error; expiring within 7 days:
// warning), the CA issues for trust_domain, storage_root is a directory on
// a btrfs mounted nodev,nosuid (noatime: warning), and no host account
// (passwd, group) owns ids inside a tenant's range. `now`: unix seconds.
std::vector<Finding> CheckServerConfig(const ServerConfig& c, int64_t now);

// What only --check-config adds, with crfsd perhaps running: who holds the
// storage root's lock, each tenant's subvolume, and what each journal holds
// (an interrupted transaction the next start will finish).
std::vector<Finding> CheckStorage(const ServerConfig& c);

inline constexpr int64_t kCrlWarnSeconds = 7 * 24 * 3600;

}  // namespace crfs::server
