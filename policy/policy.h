// policy.h - the policy language (docs/policy.md is the normative text):
// what each tenant and client may do, decided per operation before crfsd
// journals a transaction, and per read.
//
// A policy is a JSON document: a version, global rules, per-tenant rules,
// default rules and limits. Rules are tried in order -- the global "rules"
// first, then the request's tenant's, then the "defaults" -- and the first
// allow or deny rule whose conditions all hold decides; "warn" rules that
// hold before it are collected for the audit record. No deciding rule:
// denied (default deny).
//
// Parsing is strict (ParsePolicy): unknown keys, wrong types, duplicate
// keys, values out of range and rules that can never match are errors;
// rules shadowed by an earlier rule are warnings. Each names the JSON
// pointer of the offending value and its line.
//
// A Policy is immutable once parsed: share it between threads through
// std::shared_ptr<const Policy>; a reload swaps the pointer, and whoever
// holds the old one keeps a valid policy until it lets go.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "policy/glob.h"
#include "proto/status.h"

namespace crfs::policy {

// Every kind of operation a rule can name. The planner's operations map to
// the first 16 (docs/policy.md "Operations"); reads are checked per request.
enum class OpKind : uint8_t {
  kCreate,
  kMkdir,
  kSymlink,
  kMknod,
  kLink,
  kUnlink,
  kRmdir,
  kRename,
  kExchange,
  kWrite,
  kTruncate,
  kChmod,
  kChown,
  kUtimes,
  kSetxattr,
  kRemovexattr,
  kRead,
  kReaddir,
  kOpen,
  kSnapshot,
};
constexpr size_t kOpKinds = 20;
const char* OpName(OpKind op);
std::optional<OpKind> OpFromName(std::string_view name);

enum class Effect : uint8_t { kAllow, kDeny, kWarn };
const char* EffectName(Effect e);

// File types a rule can name (the S_IFMT of the object).
enum FileType : uint8_t {
  kFile = 1 << 0,
  kDir = 1 << 1,
  kSymlinkType = 1 << 2,
  kFifo = 1 << 3,
  kSocket = 1 << 4,
  kCharDev = 1 << 5,
  kBlockDev = 1 << 6,
};
// The FileType of an S_IFMT mode; 0 for none.
uint8_t FileTypeOf(uint32_t mode);
// A FileType's name as rules spell it ("file", "dir", ...); "" for 0 or a
// set of several.
const char* FileTypeName(uint8_t type);

// Mode bits a rule can ask for.
enum ModeBit : uint8_t { kSetuid = 1 << 0, kSetgid = 1 << 1, kSticky = 1 << 2, kWorldWritable = 1 << 3 };

// Who asks: fixed for a session.
struct Subject {
  std::string_view tenant;
  std::string_view client;  // the SPIFFE id, spiffe://<domain>/tenant/<t>/client/<c>
  uint32_t uid = 0;         // tenant ids it acts as
  uint32_t gid = 0;
};

// What it asks for.
struct Action {
  OpKind op = OpKind::kRead;
  std::string_view path;   // tenant-relative: "/" is the tenant's root
  std::string_view path2;  // rename and exchange: the other end; link: the new name; else empty
  uint8_t type = 0;        // FileType of the object (0: not known)
  // The permission bits (07777) the object has after the operation, for
  // create, mkdir, mknod and chmod; nullopt for every other operation.
  std::optional<uint32_t> perms;
  // The file's size after the operation, at least (write: the end of the
  // data written; truncate: the new size); nullopt for other operations.
  std::optional<uint64_t> size;
  std::string_view xattr;  // setxattr, removexattr: the attribute's name
};

struct Range {
  uint64_t lo = 0, hi = 0;
  bool Contains(uint64_t v) const { return lo <= v && v <= hi; }
  bool Contains(const Range& r) const { return lo <= r.lo && r.hi <= hi; }
};

struct Rule {
  std::string id;
  Effect effect = Effect::kDeny;
  int err = 0;         // deny: the errno the client gets (EACCES unless the rule says)
  std::string reason;  // optional text for the client and the audit record
  uint32_t ops = 0;    // bit per OpKind; every bit when the rule names none
  std::vector<Glob> paths, paths2, names, xattrs, clients;
  uint8_t types = 0;  // FileType bits; 0: any type
  uint8_t modes = 0;  // ModeBit bits, any of which must be set; 0: no condition
  std::optional<Range> size;
  std::vector<Range> uids, gids;
  std::string where;  // its JSON pointer, "/tenants/acme/rules/2"
  int line = 0;       // and the line it starts on

  bool Matches(const Subject& s, const Action& a) const;
};

// A tenant's limits (docs/policy.md "Limits"); unset: no limit.
struct Limits {
  std::optional<uint64_t> max_file_size;            // EFBIG past it
  std::optional<uint64_t> max_transaction_ops;      // operations the planner derives; E2BIG past it
  std::optional<uint64_t> max_transaction_bytes;    // data and names a transaction carries; E2BIG past it
  std::optional<uint32_t> transactions_per_second;  // per tenant, a burst of as many; EAGAIN past it
};

struct Decision {
  Effect effect = Effect::kDeny;  // kAllow or kDeny
  const Rule* rule = nullptr;     // the deciding rule; nullptr: nothing matched (default deny)
  int err = 0;                    // deny: the errno for the client
  std::vector<const Rule*> warned;
  // "denied by policy rule no-setuid: ..." / "denied by the policy: no rule allows ..."
  std::string Explain(const Action& a) const;
};

// One error or warning of ParsePolicy.
struct Diagnostic {
  bool error = true;
  std::string where;  // JSON pointer ("" for the document)
  int line = 0;       // 1-based; 0 if not known
  std::string message;
  // "line 12: /tenants/acme/rules/2/effect: must be one of allow, deny, warn"
  std::string ToString() const;
};

class Policy {
 public:
  // Every diagnostic goes to *diagnostics (may be nullptr); the Status of a
  // failure is the first error.
  static Result<std::shared_ptr<const Policy>> Parse(std::string_view json_text, std::vector<Diagnostic>* diagnostics);
  static Result<std::shared_ptr<const Policy>> Load(const std::string& path, std::vector<Diagnostic>* diagnostics);

  Decision Evaluate(const Subject& s, const Action& a) const;
  // The limits of `tenant`: its own, each unset one taken from the global ones.
  const Limits& LimitsOf(std::string_view tenant) const;

  uint32_t version() const { return version_; }
  // SHA-256 of the text it was parsed from, lower-case hex: what logs and
  // audit records name a policy by.
  const std::string& sha256() const { return sha256_; }
  size_t rule_count() const;
  const std::vector<Rule>& global_rules() const { return global_; }
  const std::vector<Rule>& default_rules() const { return defaults_; }
  // Tenants with their own section.
  std::vector<std::string> tenants() const;
  const std::vector<Rule>* TenantRules(std::string_view tenant) const;

 private:
  friend class Parser;
  // Which rules of a list can match a request, by its op and then by the
  // first component of its path or by its client: a rule whose every path
  // pattern fixes its first component is listed under those components
  // only; else one whose every client pattern is a literal SPIFFE id under
  // those ids only; the rest under every request. Indices in rule order.
  struct RuleIndex {
    struct PerOp {
      std::vector<uint32_t> any;
      std::map<std::string, std::vector<uint32_t>, std::less<>> by_component;
      std::map<std::string, std::vector<uint32_t>, std::less<>> by_client;
    };
    PerOp ops[kOpKinds];
    void Build(const std::vector<Rule>& rules);
  };
  struct Tenant {
    std::vector<Rule> rules;
    Limits limits;
    RuleIndex index;
  };
  uint32_t version_ = 0;
  std::string sha256_;
  std::vector<Rule> global_;
  RuleIndex global_index_;
  std::vector<Rule> defaults_;  // tried after the tenant's rules
  RuleIndex defaults_index_;
  Limits limits_;
  std::map<std::string, Tenant, std::less<>> tenants_;
};

}  // namespace crfs::policy
