// tenant_policy.cc - TenantStore's policy gate: a planned transaction and a
// read, decided by the policy (policy/policy.h, docs/policy.md) with the
// tenant-relative paths of the objects they touch (tenant_store.h,
// policy_gate.h).
#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <map>

#include "server/audit_trail.h"
#include "server/fd.h"
#include "server/log.h"
#include "server/policy_gate.h"
#include "server/tenant_store.h"

namespace crfs::server {
namespace {

using policy::Action;
using policy::OpKind;

uint8_t TypeOfFt(uint8_t ft) {
  switch (ft) {
    case CRFS_FT_REG_FILE: return policy::kFile;
    case CRFS_FT_DIR: return policy::kDir;
    case CRFS_FT_SYMLINK: return policy::kSymlinkType;
    case CRFS_FT_FIFO: return policy::kFifo;
    case CRFS_FT_SOCK: return policy::kSocket;
    case CRFS_FT_CHRDEV: return policy::kCharDev;
    case CRFS_FT_BLKDEV: return policy::kBlockDev;
    default: return 0;
  }
}

std::string Join(const std::string& dir, const std::string& name) { return dir == "/" ? "/" + name : dir + "/" + name; }

}  // namespace

// Paths of objects as a plan changes them: the tree's names, with what the
// plan's earlier ops did laid over them (a rename moves a subtree; a create
// gives a provisional id a path).
class TenantStore::PlanPaths {
 public:
  explicit PlanPaths(TenantStore* store) : store_(store) {}

  // The path of directory `dir` ("" if it has none the store can find).
  std::string Dir(uint64_t dir) {
    if (dir == CRFS_ROOT_OBJECTID) return "/";
    if (auto o = over_.find(dir); o != over_.end()) return o->second;
    if (auto c = dirs_.find(dir); c != dirs_.end()) return c->second;
    std::vector<const std::string*> names;
    std::vector<uint64_t> chain;
    uint64_t d = dir;
    std::string base;
    for (int depth = 0; depth < 4096; depth++) {
      if (d == CRFS_ROOT_OBJECTID) {
        base = "/";
        break;
      }
      if (auto o = over_.find(d); o != over_.end()) {
        base = o->second;
        break;
      }
      RequestError ignored;
      const Entry* e = store_->Known(d, &ignored);
      if (!e) return "";
      chain.push_back(d);
      names.push_back(&e->name);
      d = e->parent;
    }
    if (base.empty()) return "";
    std::string path = base;
    for (size_t i = names.size(); i-- > 0;) path = Join(path, *names[i]);
    dirs_[dir] = path;
    return path;
  }

  // Every path of object `ino` (one for a directory; none for an object
  // without names). *type: its FileType as the tree lists it.
  std::vector<std::string> All(uint64_t ino, uint8_t* type) {
    *type = 0;
    if (ino == CRFS_ROOT_OBJECTID) {
      *type = policy::kDir;
      return {"/"};
    }
    if (auto t = types_.find(ino); t != types_.end()) *type = t->second;
    if (auto o = over_.find(ino); o != over_.end()) return {o->second};
    RequestError ignored;
    const Entry* e = store_->Known(ino, &ignored);
    if (!e) return {};
    if (e->type != CRFS_FT_DIR) {
      // A hard-linked file may have names nobody looked up yet: a rule on
      // any of its paths must see them all, so learn them when the link
      // count says some are missing (one fstat per object and decision).
      Fd fd(store_->OpenObject(ino, O_PATH, &ignored));
      struct stat st;
      if (fd.fd >= 0 && fstat(fd.fd, &st) == 0 && st.st_nlink > 1 + e->more.size()) {
        (void)store_->LearnNames(ino, &ignored);
        e = store_->Known(ino, &ignored);
        if (!e) return {};
      }
    }
    if (!*type) *type = TypeOfFt(e->type);
    std::vector<std::pair<uint64_t, std::string>> names{{e->parent, e->name}};
    for (const Name& n : e->more) names.emplace_back(n.parent, n.name);
    std::vector<std::string> out;
    for (const auto& [parent, name] : names) {
      std::string dir = Dir(parent);
      if (!dir.empty()) out.push_back(Join(dir, name));
    }
    return out;
  }

  // The path of `name` in directory `dir`; false if the directory's path
  // cannot be found (the op is then refused: a rule is never decided on a
  // guessed path).
  bool In(uint64_t dir, const std::string& name, std::string* out) {
    const std::string d = Dir(dir);
    if (d.empty()) return false;
    *out = Join(d, name);
    return true;
  }

  void Created(uint64_t obj, const std::string& path, uint8_t type) {
    over_[obj] = path;
    types_[obj] = type;
    dirs_.clear();
  }
  void Moved(uint64_t obj, const std::string& to) {
    over_[obj] = to;
    dirs_.clear();  // paths below it changed
  }

 private:
  TenantStore* store_;
  std::map<uint64_t, std::string> over_;
  std::map<uint64_t, uint8_t> types_;
  std::map<uint64_t, std::string> dirs_;
};

bool TenantStore::PolicyPermitsPlan(const Plan& plan, const PolicyCheck& check, TransactionAudit* audit,
                                    RequestError* err) {
  const policy::Policy& pol = *check.policy;
  const policy::Subject subject = check.subject();
  const policy::Limits& limits = pol.LimitsOf(name_);
  // Limits first: they need no paths.
  if (limits.max_transaction_ops && plan.ops.size() > *limits.max_transaction_ops) {
    if (audit) audit->DeniedBy("limits", "limits.max_transaction_ops");
    return Fail(err, E2BIG,
                "denied by policy limit max_transaction_ops: " + std::to_string(plan.ops.size()) +
                    " operations, at most " + std::to_string(*limits.max_transaction_ops) + ": split it");
  }
  if (limits.max_transaction_bytes) {
    uint64_t bytes = 0;
    for (const Op& op : plan.ops) bytes += op.data.size() + op.name.size() + op.name2.size() + op.xname.size();
    if (bytes > *limits.max_transaction_bytes) {
      if (audit) audit->DeniedBy("limits", "limits.max_transaction_bytes");
      return Fail(err, E2BIG,
                  "denied by policy limit max_transaction_bytes: " + std::to_string(bytes) + " bytes, at most " +
                      std::to_string(*limits.max_transaction_bytes) + ": split it");
    }
  }
  if (limits.transactions_per_second) {
    // A token bucket: `rate` per second, bursts of as many.
    const double rate = *limits.transactions_per_second;
    const auto now = std::chrono::steady_clock::now();
    if (rate_tokens_ < 0) {
      rate_tokens_ = rate;
    } else {
      rate_tokens_ = std::min(rate, rate_tokens_ + rate * std::chrono::duration<double>(now - rate_last_).count());
    }
    rate_last_ = now;
    if (rate_tokens_ < 1) {
      if (audit) audit->DeniedBy("limits", "limits.transactions_per_second");
      return Fail(err, EAGAIN,
                  "denied by policy limit transactions_per_second (" + std::to_string(*limits.transactions_per_second) +
                      "): try again shortly");
    }
  }

  // Perms each object ends with, for the create that makes it.
  std::map<uint64_t, uint32_t> final_perms;
  std::set<uint64_t> created(plan.created.begin(), plan.created.end());
  for (const Op& op : plan.ops) {
    if (op.kind == Op::kChmod) final_perms[op.obj] = op.mode & 07777;
  }
  PlanPaths paths(this);
  std::vector<std::string> warned;
  auto decide = [&](const Action& a) {
    policy::Decision d = pol.Evaluate(subject, a);
    if (audit) audit->Op(a);
    for (const policy::Rule* r : d.warned) {
      Log(LogLevel::kWarning, "tenant %s client %s: policy rule %s warns: %s %s", name_.c_str(), check.client.c_str(),
          r->id.c_str(), policy::OpName(a.op), std::string(a.path).c_str());
      if (audit) audit->Warned(r->id);
    }
    if (d.effect == policy::Effect::kAllow) return true;
    if (audit) audit->DeniedBy("policy", d.rule ? d.rule->id : "");
    Fail(err, d.err ? d.err : EACCES, d.Explain(a) + "; nothing changed");
    Log(LogLevel::kWarning, "tenant %s client %s: transaction refused: %s", name_.c_str(), check.client.c_str(),
        err->text.c_str());
    return false;
  };
  // Each path of an existing object: every one must be allowed.
  auto decide_each = [&](Action a, uint64_t obj) {
    uint8_t type = 0;
    std::vector<std::string> all = paths.All(obj, &type);
    if (!a.type) a.type = type;
    if (all.empty()) all.push_back("");  // no name left (held open): only rules without a path match
    for (const std::string& p : all) {
      a.path = p;
      if (!decide(a)) return false;
    }
    return true;
  };
  auto unknown = [&](uint64_t dir) {
    return Fail(err, EACCES,
                "the policy cannot be applied: directory " + std::to_string(dir) + " has no path crfsd can find");
  };
  for (const Op& op : plan.ops) {
    Action a;
    switch (op.kind) {
      case Op::kCreate: {
        const uint32_t fmt = op.mode & S_IFMT;
        a.op = fmt == S_IFDIR   ? OpKind::kMkdir
               : fmt == S_IFLNK ? OpKind::kSymlink
               : fmt == S_IFREG ? OpKind::kCreate
                                : OpKind::kMknod;
        a.type = policy::FileTypeOf(op.mode);
        if (fmt != S_IFLNK) {
          auto f = final_perms.find(op.obj);
          a.perms = f != final_perms.end() ? f->second : op.mode & 07777;
        }
        std::string path;
        if (!paths.In(op.dir, op.name, &path)) return unknown(op.dir);
        a.path = path;
        if (!decide(a)) return false;
        paths.Created(op.obj, path, a.type);
        break;
      }
      case Op::kLink: {
        a.op = OpKind::kLink;
        std::string to;
        if (!paths.In(op.dir, op.name, &to)) return unknown(op.dir);
        a.path2 = to;
        if (!decide_each(a, op.obj)) return false;
        break;
      }
      case Op::kRename:
      case Op::kExchange: {
        a.op = op.kind == Op::kRename ? OpKind::kRename : OpKind::kExchange;
        std::string from, to;
        if (!paths.In(op.dir, op.name, &from)) return unknown(op.dir);
        if (!paths.In(op.dir2, op.name2, &to)) return unknown(op.dir2);
        uint8_t type = 0;
        (void)paths.All(op.obj, &type);
        a.type = type;
        a.path = from;
        a.path2 = to;
        if (!decide(a)) return false;
        paths.Moved(op.obj, to);
        if (op.kind == Op::kExchange) paths.Moved(op.obj2, from);
        break;
      }
      case Op::kUnlink: {
        uint8_t type = 0;
        (void)paths.All(op.obj, &type);
        a.op = type == policy::kDir ? OpKind::kRmdir : OpKind::kUnlink;
        a.type = type;
        std::string path;
        if (!paths.In(op.dir, op.name, &path)) return unknown(op.dir);
        a.path = path;
        if (!decide(a)) return false;
        break;
      }
      case Op::kWrite:
      case Op::kPunch:
      case Op::kTruncate: {
        a.op = op.kind == Op::kTruncate ? OpKind::kTruncate : OpKind::kWrite;
        a.type = policy::kFile;
        const uint64_t end = op.kind == Op::kTruncate ? op.offset
                             : op.kind == Op::kWrite  ? op.offset + op.data.size()
                                                      : 0;
        if (op.kind != Op::kPunch) a.size = end;
        if (limits.max_file_size && op.kind != Op::kPunch && end > *limits.max_file_size) {
          uint8_t type = 0;
          std::vector<std::string> all = paths.All(op.obj, &type);
          if (audit) audit->DeniedBy("limits", "limits.max_file_size");
          return Fail(err, EFBIG,
                      "denied by policy limit max_file_size: " + (all.empty() ? std::string("a file") : all[0]) +
                          " would be " + std::to_string(end) + " bytes, at most " +
                          std::to_string(*limits.max_file_size) + "; nothing changed");
        }
        if (!decide_each(a, op.obj)) return false;
        break;
      }
      case Op::kChmod:
      case Op::kChown:
      case Op::kSetTimes:
        // Part of making a new object: the create was decided with its final mode.
        if (created.count(op.obj)) break;
        a.op = op.kind == Op::kChmod ? OpKind::kChmod : op.kind == Op::kChown ? OpKind::kChown : OpKind::kUtimes;
        if (op.kind == Op::kChmod) a.perms = op.mode & 07777;
        if (!decide_each(a, op.obj)) return false;
        break;
      case Op::kSetXattr:
      case Op::kRemoveXattr:
        a.op = op.kind == Op::kSetXattr ? OpKind::kSetxattr : OpKind::kRemovexattr;
        a.xattr = op.xname;
        if (!decide_each(a, op.obj)) return false;
        break;
    }
  }
  if (limits.transactions_per_second) rate_tokens_ -= 1;
  return true;
}

bool TenantStore::PolicyPermitsRead(const PolicyCheck& check, policy::OpKind op, uint64_t ino, RequestError* err) {
  PlanPaths paths(this);
  uint8_t type = 0;
  std::vector<std::string> all = paths.All(ino, &type);
  if (all.empty()) all.push_back("");
  Action a;
  a.op = op;
  a.type = type;
  const policy::Subject subject = check.subject();
  for (const std::string& p : all) {
    a.path = p;
    policy::Decision d = check.policy->Evaluate(subject, a);
    // Refusals and warned reads are recorded; a warned read that cannot
    // be recorded is refused (fail closed).
    const bool recorded =
        d.effect == policy::Effect::kAllow && d.warned.empty() ? true : AuditRead(check, a, d, &denials_);
    if (!recorded && d.effect == policy::Effect::kAllow) {
      return Fail(
          err, EIO,
          "the audit log cannot be written: a read policy rule " + d.warned[0]->id + " asks to record is refused");
    }
    if (d.effect != policy::Effect::kAllow) {
      Fail(err, d.err ? d.err : EACCES, d.Explain(a));
      Log(LogLevel::kInfo, "tenant %s client %s: read refused: %s", name_.c_str(), check.client.c_str(),
          err->text.c_str());
      return false;
    }
  }
  return true;
}

uint8_t TenantStore::KnownType(uint64_t ino) {
  if (ino == CRFS_ROOT_OBJECTID) return CRFS_FT_DIR;
  RequestError ignored;
  const Entry* e = Known(ino, &ignored);
  return e ? e->type : static_cast<uint8_t>(CRFS_FT_UNKNOWN);
}

}  // namespace crfs::server
