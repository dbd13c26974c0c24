#include "server/config_check.h"

#include <grp.h>
#include <linux/magic.h>
#include <netdb.h>
#include <pwd.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <map>

#include "server/journal.h"
#include "server/pki_check.h"
#include "server/storage_lock.h"
#include "server/tenant_store.h"
#include "server/tls_context.h"

namespace crfs::server {
namespace {

std::string Utc(int64_t t) {
  const time_t tt = static_cast<time_t>(t);
  struct tm tm {};
  char buf[32] = "?";
  if (gmtime_r(&tt, &tm)) strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M:%S UTC", &tm);
  return buf;
}

void Add(std::vector<Finding>* out, Finding::Severity s, std::string text) { out->push_back({s, std::move(text)}); }

void CheckCrl(const ServerConfig& c, int64_t now, std::vector<Finding>* out) {
  auto crl = InspectCrl(c.tls_crl, c.tls_ca);
  if (!crl.ok()) return Add(out, Finding::kError, crl.status().message());
  const std::string which = "CRL " + c.tls_crl + " (number " + (crl->number.empty() ? "none" : crl->number) + ", " +
                            std::to_string(crl->entries) + " revoked)";
  if (crl->next_update == 0) return Add(out, Finding::kWarning, which + " has no nextUpdate");
  if (crl->next_update <= now) {
    return Add(out, Finding::kError,
               which + " expired at " + Utc(crl->next_update) +
                   ": every client would be refused; republish it (crfs-pki crl DIR)");
  }
  if (crl->next_update - now <= kCrlWarnSeconds) {
    return Add(out, Finding::kWarning,
               which + " expires at " + Utc(crl->next_update) + ", within 7 days: republish it (crfs-pki crl DIR)");
  }
  Add(out, Finding::kNote, which + ", next update " + Utc(crl->next_update));
}

void CheckStorageRoot(const std::string& root, std::vector<Finding>* out) {
  struct stat st;
  if (stat(root.c_str(), &st) != 0) {
    return Add(
        out, Finding::kError,
        "storage_root " + root + ": " + strerror(errno) + (errno == ENOENT ? " (mount the btrfs there first)" : ""));
  }
  if (!S_ISDIR(st.st_mode)) return Add(out, Finding::kError, "storage_root " + root + " is not a directory");
  struct statfs fs;
  if (statfs(root.c_str(), &fs) != 0) {
    return Add(out, Finding::kError, "storage_root " + root + ": statfs: " + strerror(errno));
  }
  if (fs.f_type != BTRFS_SUPER_MAGIC) {
    char type[32];
    std::snprintf(type, sizeof(type), "0x%llx", static_cast<unsigned long long>(fs.f_type));
    return Add(out, Finding::kError,
               "storage_root " + root + " is not on btrfs (file system type " + type +
                   "): mount a btrfs there (the demo loop-mounts an image)");
  }
  if (!(fs.f_flags & ST_NODEV) || !(fs.f_flags & ST_NOSUID)) {
    Add(out, Finding::kError, "storage_root " + root + " must be mounted nodev,nosuid (mount -o remount,nodev,nosuid)");
  }
  if (!(fs.f_flags & ST_NOATIME)) {
    Add(out, Finding::kWarning, "storage_root " + root + " is not mounted noatime: reads will write metadata");
  }
}

// Host accounts whose ids fall inside a tenant's range own that tenant's
// files on the host (and may read them there).
void CheckHostAccounts(const ServerConfig& c, std::vector<Finding>* out) {
  std::map<std::string, std::vector<std::string>> users, groups;
  setpwent();
  while (struct passwd* pw = getpwent()) {
    for (const TenantConfig& t : c.tenants) {
      if (pw->pw_uid >= t.ids.uid_base && uint64_t{pw->pw_uid} < uint64_t{t.ids.uid_base} + t.ids.count) {
        users[t.name].push_back(std::string(pw->pw_name) + " (" + std::to_string(pw->pw_uid) + ")");
      }
    }
  }
  endpwent();
  setgrent();
  while (struct group* gr = getgrent()) {
    for (const TenantConfig& t : c.tenants) {
      if (gr->gr_gid >= t.ids.gid_base && uint64_t{gr->gr_gid} < uint64_t{t.ids.gid_base} + t.ids.count) {
        groups[t.name].push_back(std::string(gr->gr_name) + " (" + std::to_string(gr->gr_gid) + ")");
      }
    }
  }
  endgrent();
  auto report = [&](const std::map<std::string, std::vector<std::string>>& found, const char* what) {
    for (const auto& [tenant, names] : found) {
      std::string list;
      for (size_t i = 0; i < names.size() && i < 3; i++) list += (i ? ", " : "") + names[i];
      if (names.size() > 3) list += " and " + std::to_string(names.size() - 3) + " more";
      Add(out, Finding::kWarning,
          "tenants." + tenant + ".id_map: host " + what + " " + list + " inside the tenant's range: " +
              "they own that tenant's files on this host; move the range or the accounts");
    }
  };
  report(users, "user");
  report(groups, "group");
}

}  // namespace

std::vector<Finding> CheckServerConfig(const ServerConfig& c, int64_t now) {
  std::vector<Finding> out;
  struct addrinfo hints {};
  hints.ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV;
  hints.ai_socktype = SOCK_STREAM;
  struct addrinfo* ai = nullptr;
  if (int rc = getaddrinfo(c.listen_host.c_str(), std::to_string(c.listen_port).c_str(), &hints, &ai); rc != 0) {
    Add(&out, Finding::kError, "listen: " + c.listen_host + ": " + gai_strerror(rc) + " (a numeric address)");
  } else {
    freeaddrinfo(ai);
  }
  auto tls = TlsContext::Create(c.tls_ca, c.tls_crl, c.tls_cert, c.tls_key);
  if (!tls.ok()) Add(&out, Finding::kError, tls.status().message());
  CheckCrl(c, now, &out);
  if (!c.admin_group.empty() && !getgrnam(c.admin_group.c_str())) {
    Add(&out, Finding::kError, "admin.group: there is no group " + c.admin_group);
  }
  bool unknown = false;
  if (Status s = CheckCaTrustDomain(c.tls_ca, c.trust_domain, &unknown); !s.ok()) {
    Add(&out, Finding::kError, s.message());
  } else if (unknown) {
    Add(&out, Finding::kWarning,
        "trust_domain " + c.trust_domain + ": the CA in " + c.tls_ca +
            " does not say which trust domain it issues for");
  }
  CheckStorageRoot(c.storage_root, &out);
  CheckHostAccounts(c, &out);
  return out;
}

std::vector<Finding> CheckStorage(const ServerConfig& c) {
  std::vector<Finding> out;
  auto holder = StorageLock::Probe(c.storage_root);
  bool serving = false;
  if (!holder.ok()) {
    Add(&out, Finding::kWarning, holder.status().message());
  } else if (*holder) {
    serving = true;
    Add(&out, Finding::kNote,
        "storage root " + c.storage_root + " is being served by " + (*holder)->Describe() +
            "; checked read-only beside it (changes take effect when it restarts)");
  }
  for (const TenantConfig& t : c.tenants) {
    struct stat st;
    bool atime = false;
    auto fd = TenantStore::OpenSubvolume(c.storage_root, t, &st, &atime);
    if (!fd.ok()) {
      Add(&out, Finding::kError, fd.status().message());
      continue;
    }
    close(*fd);
    auto journal = InspectJournal(c.storage_root + "/journal", t.name);
    if (!journal.ok()) {
      Add(&out, Finding::kError, "tenant " + t.name + ": journal: " + journal.status().message());
    } else if (!journal->pending.empty() && !serving) {
      Add(&out, Finding::kNote,
          "tenant " + t.name + ": the journal holds " + std::to_string(journal->pending.size()) +
              " interrupted transaction(s) (first: generation " + std::to_string(journal->pending[0].generation) +
              ", " + std::to_string(journal->pending[0].ops.size()) + " ops); crfsd finishes or rolls back " +
              "each when it starts");
    }
  }
  return out;
}

}  // namespace crfs::server
