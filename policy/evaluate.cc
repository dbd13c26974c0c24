// evaluate.cc - deciding one action (policy.h).
#include <sys/stat.h>

#include <cerrno>
#include <cstring>

#include "policy/policy.h"

namespace crfs::policy {
namespace {

constexpr const char* kOpNames[kOpKinds] = {
    "create",   "mkdir", "symlink", "mknod",  "link",     "unlink",      "rmdir", "rename",  "exchange", "write",
    "truncate", "chmod", "chown",   "utimes", "setxattr", "removexattr", "read",  "readdir", "open",     "snapshot"};

bool AnyMatches(const std::vector<Glob>& globs, std::string_view text) {
  for (const Glob& g : globs) {
    if (g.Matches(text)) return true;
  }
  return false;
}

bool InRanges(const std::vector<Range>& ranges, uint64_t v) {
  for (const Range& r : ranges) {
    if (r.Contains(v)) return true;
  }
  return false;
}

std::string_view BaseName(std::string_view path) {
  const size_t slash = path.rfind('/');
  return slash == std::string_view::npos ? path : path.substr(slash + 1);
}

uint8_t ModeBitsOf(uint32_t perms, uint8_t type) {
  uint8_t m = 0;
  if (perms & S_ISUID) m |= kSetuid;
  if (perms & S_ISGID) m |= kSetgid;
  if (perms & S_ISVTX) m |= kSticky;
  if ((perms & S_IWOTH) && type != kSymlinkType) m |= kWorldWritable;
  return m;
}

}  // namespace

const char* FileTypeName(uint8_t type) {
  switch (type) {
    case kFile: return "file";
    case kDir: return "dir";
    case kSymlinkType: return "symlink";
    case kFifo: return "fifo";
    case kSocket: return "socket";
    case kCharDev: return "chardev";
    case kBlockDev: return "blockdev";
    default: return "";
  }
}

const char* OpName(OpKind op) {
  const auto i = static_cast<size_t>(op);
  return i < kOpKinds ? kOpNames[i] : "?";
}

std::optional<OpKind> OpFromName(std::string_view name) {
  for (size_t i = 0; i < kOpKinds; i++) {
    if (name == kOpNames[i]) return static_cast<OpKind>(i);
  }
  return std::nullopt;
}

const char* EffectName(Effect e) {
  switch (e) {
    case Effect::kAllow: return "allow";
    case Effect::kDeny: return "deny";
    case Effect::kWarn: return "warn";
  }
  return "?";
}

uint8_t FileTypeOf(uint32_t mode) {
  switch (mode & S_IFMT) {
    case S_IFREG: return kFile;
    case S_IFDIR: return kDir;
    case S_IFLNK: return kSymlinkType;
    case S_IFIFO: return kFifo;
    case S_IFSOCK: return kSocket;
    case S_IFCHR: return kCharDev;
    case S_IFBLK: return kBlockDev;
    default: return 0;
  }
}

bool Rule::Matches(const Subject& s, const Action& a) const {
  if (!(ops >> static_cast<unsigned>(a.op) & 1)) return false;
  if (types && !(types & a.type)) return false;
  if (modes && (!a.perms || !(ModeBitsOf(*a.perms, a.type) & modes))) return false;
  if (size && (!a.size || !size->Contains(*a.size))) return false;
  if (!uids.empty() && !InRanges(uids, s.uid)) return false;
  if (!gids.empty() && !InRanges(gids, s.gid)) return false;
  if (!xattrs.empty() && (a.xattr.empty() || !AnyMatches(xattrs, a.xattr))) return false;
  if (!paths.empty() && !AnyMatches(paths, a.path)) return false;
  if (!paths2.empty() && (a.path2.empty() || !AnyMatches(paths2, a.path2))) return false;
  if (!names.empty()) {
    // The name the operation makes or acts on: the new one for a rename or link.
    const std::string_view name = BaseName(a.path2.empty() || a.op == OpKind::kExchange ? a.path : a.path2);
    if (!AnyMatches(names, name) && !(a.op == OpKind::kExchange && AnyMatches(names, BaseName(a.path2)))) {
      return false;
    }
  }
  if (!clients.empty() && !AnyMatches(clients, s.client)) return false;
  return true;
}

void Policy::RuleIndex::Build(const std::vector<Rule>& rules) {
  auto add = [](std::vector<uint32_t>* list, uint32_t i) {
    if (list->empty() || list->back() != i) list->push_back(i);
  };
  for (uint32_t i = 0; i < rules.size(); i++) {
    const Rule& r = rules[i];
    bool by_path = !r.paths.empty(), by_client = !r.clients.empty();
    for (const Glob& g : r.paths) by_path = by_path && g.first_component().has_value();
    for (const Glob& g : r.clients) by_client = by_client && g.literal();
    for (size_t op = 0; op < kOpKinds; op++) {
      if (!(r.ops >> op & 1)) continue;
      if (by_path) {
        for (const Glob& g : r.paths) add(&ops[op].by_component[*g.first_component()], i);
      } else if (by_client) {
        for (const Glob& g : r.clients) add(&ops[op].by_client[g.prefix()], i);  // the text, escapes removed
      } else {
        ops[op].any.push_back(i);
      }
    }
  }
}

Decision Policy::Evaluate(const Subject& s, const Action& a) const {
  Decision d;
  const auto op = static_cast<size_t>(a.op);
  if (op >= kOpKinds) return Decision{Effect::kDeny, nullptr, EACCES, {}};
  // The path's first component ("" for "/"; none for a nameless object).
  std::optional<std::string_view> first;
  if (!a.path.empty() && a.path[0] == '/') {
    const size_t slash = a.path.find('/', 1);
    first = a.path.substr(1, slash == std::string_view::npos ? std::string_view::npos : slash - 1);
  }
  static const std::vector<uint32_t> kNone;
  auto run = [&](const std::vector<Rule>& rules, const RuleIndex& index) {
    const RuleIndex::PerOp& per = index.ops[op];
    const std::vector<uint32_t>* lists[3] = {&per.any, &kNone, &kNone};
    if (first) {
      if (auto it = per.by_component.find(*first); it != per.by_component.end()) lists[1] = &it->second;
    }
    if (auto it = per.by_client.find(s.client); it != per.by_client.end()) lists[2] = &it->second;
    // The three lists are each in rule order: merge them.
    size_t at[3] = {0, 0, 0};
    for (;;) {
      int best = -1;
      for (int k = 0; k < 3; k++) {
        if (at[k] < lists[k]->size() && (best < 0 || (*lists[k])[at[k]] < (*lists[best])[at[best]])) best = k;
      }
      if (best < 0) return false;
      const Rule& r = rules[(*lists[best])[at[best]++]];
      if (!r.Matches(s, a)) continue;
      if (r.effect == Effect::kWarn) {
        d.warned.push_back(&r);
        continue;
      }
      d.effect = r.effect;
      d.rule = &r;
      d.err = r.effect == Effect::kDeny ? r.err : 0;
      return true;
    }
  };
  if (run(global_, global_index_)) return d;
  if (auto t = tenants_.find(s.tenant); t != tenants_.end() && run(t->second.rules, t->second.index)) return d;
  if (run(defaults_, defaults_index_)) return d;
  d.effect = Effect::kDeny;
  d.err = EACCES;
  return d;
}

std::string Decision::Explain(const Action& a) const {
  std::string what = std::string(OpName(a.op)) + " " + std::string(a.path);
  if (!a.path2.empty()) what += " -> " + std::string(a.path2);
  if (a.perms) {
    char mode[16];
    snprintf(mode, sizeof(mode), " mode %04o", *a.perms);
    what += mode;
  }
  if (!a.xattr.empty()) what += " xattr " + std::string(a.xattr);
  if (a.size) what += " size " + std::to_string(*a.size);
  if (effect == Effect::kAllow) return "allowed by policy rule " + (rule ? rule->id : "?") + ": " + what;
  if (!rule) return "denied by the policy: no rule allows " + what;
  std::string text = "denied by policy rule " + rule->id + ": " + what;
  if (!rule->reason.empty()) text += " (" + rule->reason + ")";
  return text;
}

const Limits& Policy::LimitsOf(std::string_view tenant) const {
  auto t = tenants_.find(tenant);
  return t == tenants_.end() ? limits_ : t->second.limits;
}

size_t Policy::rule_count() const {
  size_t n = global_.size() + defaults_.size();
  for (const auto& [name, t] : tenants_) n += t.rules.size();
  return n;
}

std::vector<std::string> Policy::tenants() const {
  std::vector<std::string> out;
  for (const auto& [name, t] : tenants_) out.push_back(name);
  return out;
}

const std::vector<Rule>* Policy::TenantRules(std::string_view tenant) const {
  auto t = tenants_.find(tenant);
  return t == tenants_.end() ? nullptr : &t->second.rules;
}

std::string Diagnostic::ToString() const {
  std::string s = error ? "error: " : "warning: ";
  if (line > 0) s += "line " + std::to_string(line) + ": ";
  s += (where.empty() ? std::string("/") : where) + ": " + message;
  return s;
}

}  // namespace crfs::policy
