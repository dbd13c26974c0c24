// idmap.h - a tenant's uid/gid map, like a user namespace's.
//
// Tenant ids [0, count) map to host ids [base, base + count); uid and gid
// have their own base and share count. Ids on the wire are tenant ids; ids
// on disk are host ids. A host id outside the map shows to the tenant as the
// squash id (the overflow id, 65534, by default). A tenant id outside the
// map is refused (EPERM at the caller) or squashed, per configuration. With
// root_squash, tenant id 0 is treated as the squash id on the way in.
//
// Immutable after construction; thread-safe.
#pragma once

#include <cstdint>
#include <optional>

namespace crfs::server {

struct IdMapConfig {
  uint32_t uid_base = 0;
  uint32_t gid_base = 0;
  uint32_t count = 0;
  uint32_t squash_id = 65534;  // a tenant id
  bool root_squash = false;
  bool refuse_unmapped = true;
};

class IdMap {
 public:
  explicit IdMap(const IdMapConfig& c) : c_(c) {}

  // Host id for a tenant id, or nullopt if it must be refused.
  std::optional<uint32_t> UidToHost(uint32_t tenant_uid) const { return ToHost(tenant_uid, c_.uid_base); }
  std::optional<uint32_t> GidToHost(uint32_t tenant_gid) const { return ToHost(tenant_gid, c_.gid_base); }
  // Tenant id for a host id; never fails (squashes).
  uint32_t UidToTenant(uint32_t host_uid) const { return ToTenant(host_uid, c_.uid_base); }
  uint32_t GidToTenant(uint32_t host_gid) const { return ToTenant(host_gid, c_.gid_base); }

  // Is a host id inside the map (shown to the tenant as itself, not squashed)?
  bool HostUidMapped(uint32_t host_uid) const { return host_uid >= c_.uid_base && host_uid - c_.uid_base < c_.count; }
  bool HostGidMapped(uint32_t host_gid) const { return host_gid >= c_.gid_base && host_gid - c_.gid_base < c_.count; }

  const IdMapConfig& config() const { return c_; }

 private:
  std::optional<uint32_t> ToHost(uint32_t id, uint32_t base) const {
    if (c_.root_squash && id == 0) id = c_.squash_id;
    if (id < c_.count) return base + id;
    if (c_.refuse_unmapped || c_.squash_id >= c_.count) return std::nullopt;
    return base + c_.squash_id;
  }
  uint32_t ToTenant(uint32_t host, uint32_t base) const {
    if (host >= base && host - base < c_.count) return host - base;
    return c_.squash_id;
  }

  IdMapConfig c_;
};

}  // namespace crfs::server
