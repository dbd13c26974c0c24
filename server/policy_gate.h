// policy_gate.h - what crfsd hands the policy engine (policy/policy.h) for
// one request, and the per-session cache of read decisions.
//
// Every transaction is decided op by op in TenantStore::Commit, after the
// planner and the permission check and before the intent journal sees it
// (tenant_policy.cc); reads (ITEM_QUERY, TREE_QUERY, DATA_READ, OPEN) are
// decided per object by the session before the store answers. A read
// decision depends on the policy, the requester (fixed for a session) and
// the object's paths: the session caches it by objectid until the policy
// is swapped or a path of the tenant changes (TenantStore::paths_epoch()),
// so a stream of reads of one file costs one evaluation.
//
// Owned by one thread: PolicyCheck is copied into the commit job (the
// policy is shared and immutable); ReadDecisions belongs to its session.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>

#include "audit/log.h"
#include "policy/policy.h"
#include "server/request_error.h"

namespace crfs::server {

// Who asks, under which policy, and where its decisions are recorded.
struct PolicyCheck {
  std::shared_ptr<const policy::Policy> policy;  // never null in crfsd
  std::string tenant;
  std::string client;  // SPIFFE id
  uint32_t uid = 0, gid = 0;
  // The audit log (docs/audit.md), shared by every tenant's worker and the
  // event loop (AuditLog is thread-safe); null only in unit tests.
  audit::AuditLog* audit = nullptr;
  uint64_t session = 0;
  std::string cert;  // SHA-256 of the client certificate, hex

  policy::Subject subject() const { return policy::Subject{tenant, client, uid, gid}; }
};

class ReadDecisions {
 public:
  static constexpr size_t kMaxEntries = 1 << 16;

  // The cached decision for (ino, op), valid for `policy` at `epoch`. The
  // cache keeps the policy it was filled under alive, so a new policy is
  // never taken for the old one.
  const RequestError* Find(const std::shared_ptr<const policy::Policy>& policy, uint64_t epoch, uint64_t ino,
                           policy::OpKind op) {
    if (policy != policy_ || epoch != epoch_) {
      decisions_.clear();
      policy_ = policy;
      epoch_ = epoch;
      return nullptr;
    }
    auto it = decisions_.find(Key{ino, op});
    return it == decisions_.end() ? nullptr : &it->second;
  }
  void Remember(uint64_t ino, policy::OpKind op, const RequestError& e) {
    if (decisions_.size() >= kMaxEntries) decisions_.clear();
    decisions_[Key{ino, op}] = e;
  }

 private:
  struct Key {
    uint64_t ino;
    policy::OpKind op;
    bool operator==(const Key&) const = default;
  };
  struct Hash {
    size_t operator()(const Key& k) const { return std::hash<uint64_t>()(k.ino * 31 + static_cast<uint64_t>(k.op)); }
  };
  std::shared_ptr<const policy::Policy> policy_;
  uint64_t epoch_ = 0;
  std::unordered_map<Key, RequestError, Hash> decisions_;
};

}  // namespace crfs::server
