// crfsctl tenant add|list --config FILE [NAME]: tenant storage.
//
// `add` creates the btrfs subvolume <storage_root>/tenants/NAME (with
// libbtrfsutil) for a tenant the configuration declares, owned by the
// tenant's root as the id map places it on the host (uid_base:gid_base),
// mode 0755. It refuses a name the configuration does not know and never
// touches an existing subvolume; it is safe while crfsd runs (and says
// so). `list` shows the tenants and whether their
// storage exists.
#include <btrfsutil.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

#include "server/config.h"
#include "server/storage_lock.h"
#include "tools/crfsctl/commands.h"

namespace crfs::ctl {
namespace {

int Usage() {
  std::fputs("usage: crfsctl tenant add --config FILE NAME\n       crfsctl tenant list --config FILE\n", stderr);
  return 2;
}

int Add(const server::ServerConfig& c, const std::string& name) {
  const server::TenantConfig* t = c.FindTenant(name);
  if (!t) {
    std::fprintf(stderr, "crfsctl: tenant '%s' is not in the configuration; add it there first\n", name.c_str());
    return 1;
  }
  const std::string dir = c.storage_root + "/tenants";
  if (mkdir(dir.c_str(), 0711) != 0 && errno != EEXIST) {
    std::fprintf(stderr, "crfsctl: %s: %s\n", dir.c_str(), std::strerror(errno));
    return 1;
  }
  const std::string path = dir + "/" + name;
  enum btrfs_util_error e = btrfs_util_create_subvolume(path.c_str(), 0, nullptr, nullptr);
  if (e != BTRFS_UTIL_OK) {
    std::fprintf(stderr, "crfsctl: create subvolume %s: %s (%s)\n", path.c_str(), btrfs_util_strerror(e),
                 std::strerror(errno));
    return 1;
  }
  int fd = open(path.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0 || fchown(fd, t->ids.uid_base, t->ids.gid_base) != 0 || fchmod(fd, 0755) != 0) {
    std::fprintf(stderr, "crfsctl: %s: %s\n", path.c_str(), std::strerror(errno));
    if (fd >= 0) close(fd);
    return 1;
  }
  close(fd);
  std::printf("tenant %s: subvolume %s, owner %u:%u (tenant root)\n", name.c_str(), path.c_str(), t->ids.uid_base,
              t->ids.gid_base);
  // Adding storage is safe beside a running crfsd (it reads its tenants
  // at start); say when the new tenant will be served.
  if (auto holder = server::StorageLock::Probe(c.storage_root); holder.ok() && *holder) {
    std::printf("note: %s serves %s; it serves tenant %s after its next start\n", (*holder)->Describe().c_str(),
                c.storage_root.c_str(), name.c_str());
  }
  return 0;
}

}  // namespace

int TenantCommand(Args args) {
  std::string config_path, name, verb;
  for (size_t i = 0; i < args.size(); i++) {
    if (args[i] == "--config" && i + 1 < args.size()) {
      config_path = std::string(args[++i]);
    } else if (verb.empty()) {
      verb = std::string(args[i]);
    } else if (name.empty()) {
      name = std::string(args[i]);
    } else {
      return Usage();
    }
  }
  if (config_path.empty() || (verb == "add") == name.empty() || (verb != "add" && verb != "list")) return Usage();
  auto config = server::LoadConfig(config_path);
  if (!config.ok()) {
    std::fprintf(stderr, "crfsctl: %s\n", config.status().message().c_str());
    return 1;
  }
  if (verb == "add") return Add(*config, name);
  for (const auto& t : config->tenants) {
    const std::string path = config->storage_root + "/tenants/" + t.name;
    bool exists = btrfs_util_is_subvolume(path.c_str()) == BTRFS_UTIL_OK;
    std::printf("%-20s uids %u..%u  %s\n", t.name.c_str(), t.ids.uid_base, t.ids.uid_base + t.ids.count - 1,
                exists ? path.c_str() : "(no storage: crfsctl tenant add)");
  }
  return 0;
}

}  // namespace crfs::ctl
