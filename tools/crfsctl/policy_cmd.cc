// crfsctl policy check|diff|explain: the admin's offline tools for the
// policy language (docs/policy.md). None of them talks to crfsd or changes
// anything; they read files. (apply, show and reload ask the running
// crfsd: admin_cmd.cc.)
//
//   check FILE              every error and warning, with JSON pointer and
//                           line; exit 1 if there is an error
//   diff [--config CRFSD.JSON | OLD] NEW [--sample FILE] [--audit DIR]
//                           which rules (by id) and limits the new policy
//                           adds, removes, changes or moves, against OLD or
//                           the policy file crfsd.json names; with --sample
//                           or --audit (an audit log's directory), the
//                           sampled or recorded operations it decides
//                           differently (a dry run)
//   explain FILE --tenant T OP PATH [PATH2] [--client URI] [--uid N]
//           [--gid N] [--type T] [--mode OCTAL] [--size N] [--xattr NAME]
//                           the decision for one operation, and why
//
// A sample file holds one operation per line as a JSON object with the
// keys of `explain` ({"tenant": "acme", "op": "write", "path": "/a", ...});
// blank lines and lines starting with '#' are skipped.
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "policy/policy.h"
#include "server/config.h"
#include "tools/crfsctl/commands.h"

namespace crfs::ctl {
namespace {

using json = nlohmann::json;
using policy::Policy;

constexpr char kUsage[] =
    "usage: crfsctl policy check FILE\n"
    "       crfsctl policy diff [--config CRFSD.JSON | OLD] NEW [--sample FILE] [--audit DIR]\n"
    "       crfsctl policy explain FILE --tenant T OP PATH [PATH2] [--client URI] [--uid N] [--gid N]\n"
    "                              [--type TYPE] [--mode OCTAL] [--size BYTES] [--xattr NAME]\n"
    "       crfsctl policy apply FILE   [--socket PATH | --config CRFSD.JSON] [--json]\n"
    "       crfsctl policy show|reload  [--socket PATH | --config CRFSD.JSON] [--json]\n";

int Usage() {
  std::fputs(kUsage, stderr);
  return 2;
}

// Loads a policy, printing every diagnostic as "FILE: line N: ...".
std::shared_ptr<const Policy> LoadPrinting(const std::string& path, size_t* errors, size_t* warnings) {
  std::vector<policy::Diagnostic> diags;
  auto p = Policy::Load(path, &diags);
  size_t e = 0, w = 0;
  for (const policy::Diagnostic& d : diags) {
    std::fprintf(stderr, "%s: %s\n", path.c_str(), d.ToString().c_str());
    (d.error ? e : w)++;
  }
  if (!p.ok() && diags.empty()) {
    std::fprintf(stderr, "crfsctl: %s\n", p.status().ToString().c_str());
    e++;
  }
  if (errors) *errors = e;
  if (warnings) *warnings = w;
  return p.ok() ? *p : nullptr;
}

// One operation and the strings it is about. `fields` holds the values;
// action() the policy::Action viewing them (made afresh: an OwnedAction
// may move, and its strings with it).
struct OwnedAction {
  std::string tenant, client, path, path2, xattr;
  uint32_t uid = 0, gid = 0;
  policy::Action fields;
  policy::Subject subject() const { return policy::Subject{tenant, client, uid, gid}; }
  policy::Action action() const {
    policy::Action a = fields;
    a.path = path;
    a.path2 = path2;
    a.xattr = xattr;
    return a;
  }
};

constexpr std::pair<const char*, uint8_t> kTypes[] = {{"file", policy::kFile},           {"dir", policy::kDir},
                                                      {"symlink", policy::kSymlinkType}, {"fifo", policy::kFifo},
                                                      {"socket", policy::kSocket},       {"chardev", policy::kCharDev},
                                                      {"blockdev", policy::kBlockDev}};

bool ParseU64(const std::string& s, uint64_t max, uint64_t* out, int base = 10) {
  if (s.empty() || s[0] == '-' || s[0] == '+' || s[0] == ' ') return false;
  char* end = nullptr;
  errno = 0;
  const unsigned long long v = std::strtoull(s.c_str(), &end, base);
  if (*end || errno || v > max) return false;
  *out = v;
  return true;
}

// Sets one field of *a from a key and its value as text; "" if fine, else
// what is wrong.
std::string SetField(OwnedAction* a, const std::string& key, const std::string& v) {
  uint64_t n = 0;
  if (key == "tenant") {
    a->tenant = v;
  } else if (key == "client") {
    a->client = v;
  } else if (key == "op") {
    auto op = policy::OpFromName(v);
    if (!op) return "unknown operation '" + v + "'";
    a->fields.op = *op;
  } else if (key == "path" || key == "path2") {
    if (v.empty() || v[0] != '/') return key + " must start with '/' (tenant-relative)";
    (key == "path" ? a->path : a->path2) = v;
  } else if (key == "xattr") {
    a->xattr = v;
  } else if (key == "uid" || key == "gid") {
    if (!ParseU64(v, UINT32_MAX, &n)) return key + " must be 0..4294967295";
    (key == "uid" ? a->uid : a->gid) = static_cast<uint32_t>(n);
  } else if (key == "mode") {
    if (!ParseU64(v, 07777, &n, 8)) return "mode must be octal permission bits 0..7777";
    a->fields.perms = static_cast<uint32_t>(n);
  } else if (key == "size") {
    if (!ParseU64(v, UINT64_MAX, &n)) return "size must be a byte count";
    a->fields.size = n;
  } else if (key == "type") {
    a->fields.type = 0;
    for (const auto& [name, bit] : kTypes) {
      if (v == name) a->fields.type = bit;
    }
    if (!a->fields.type) return "type must be one of file, dir, symlink, fifo, socket, chardev, blockdev";
  } else {
    return "unknown key '" + key + "'";
  }
  return "";
}

std::string Finish(OwnedAction* a, bool has_op) {
  if (a->tenant.empty()) return "\"tenant\" is required";
  if (!has_op) return "\"op\" is required";
  if (a->path.empty()) return "\"path\" is required";
  if (a->client.empty()) a->client = "spiffe://unknown/tenant/" + a->tenant + "/client/unknown";
  return "";
}

// Reads a sample file; false (after printing what is wrong) on any bad line.
bool LoadSample(const std::string& path, std::vector<OwnedAction>* out) {
  std::ifstream in(path);
  if (!in) {
    std::fprintf(stderr, "crfsctl: %s: %s\n", path.c_str(), std::strerror(errno));
    return false;
  }
  std::string line;
  for (size_t number = 1; std::getline(in, line); number++) {
    if (line.empty() || line[0] == '#') continue;
    auto fail = [&](const std::string& why) {
      std::fprintf(stderr, "crfsctl: %s: line %zu: %s\n", path.c_str(), number, why.c_str());
      return false;
    };
    json j = json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object()) return fail("not a JSON object");
    OwnedAction a;
    bool has_op = false;
    for (auto it = j.begin(); it != j.end(); ++it) {
      std::string text;
      if (it.value().is_string())
        text = it.value().get<std::string>();
      else if (it.value().is_number_unsigned() && it.key() != "mode")
        text = std::to_string(it.value().get<uint64_t>());
      else
        return fail("\"" + it.key() + "\" must be a string" + (it.key() == "mode" ? " of octal digits" : ""));
      if (std::string why = SetField(&a, it.key(), text); !why.empty()) return fail(why);
      has_op = has_op || it.key() == "op";
    }
    if (std::string why = Finish(&a, has_op); !why.empty()) return fail(why);
    out->push_back(std::move(a));
  }
  return true;
}

// Every operation the audit log in `dir` records a decision on
// (docs/audit.md: each "transaction" record's "ops", each "read" record's
// "op"), with who asked. False (after printing why) if the log cannot be
// read; records that are not decisions are skipped. The log is not
// verified here: `crfs-audit verify` does that.
bool LoadAudit(const std::string& dir, std::vector<OwnedAction>* out, size_t* records) {
  const std::string path = dir + "/records.jsonl";
  std::ifstream in(path);
  if (!in) {
    std::fprintf(stderr, "crfsctl: %s: %s\n", path.c_str(), std::strerror(errno));
    return false;
  }
  *records = 0;
  std::string line;
  for (size_t number = 1; std::getline(in, line); number++) {
    json r = json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (r.is_discarded() || !r.is_object()) {
      std::fprintf(stderr, "crfsctl: %s: line %zu: not a JSON object (crfs-audit verify %s)\n", path.c_str(), number,
                   dir.c_str());
      return false;
    }
    const std::string ev = r.value("ev", "");
    json ops;
    if (ev == "transaction" && r.contains("ops") && r["ops"].is_array()) {
      ops = r["ops"];
    } else if (ev == "read" && r.contains("op") && r["op"].is_object()) {
      ops = json::array({r["op"]});
    } else {
      continue;
    }
    (*records)++;
    for (const json& op : ops) {
      if (!op.is_object()) continue;
      OwnedAction a;
      bool ok = true, has_op = false;
      auto set = [&](const std::string& key, const json& v) {
        std::string text;
        if (v.is_string()) {
          text = v.get<std::string>();
        } else if (v.is_number_unsigned()) {
          text = std::to_string(v.get<uint64_t>());
        } else {
          return;
        }
        ok = ok && SetField(&a, key == "perms" ? "mode" : key, text).empty();
        has_op = has_op || key == "op";
      };
      for (const char* k : {"tenant", "client", "uid", "gid"}) {
        if (r.contains(k)) set(k, r[k]);
      }
      for (auto it = op.begin(); it != op.end(); ++it) set(it.key(), it.value());
      if (ok && Finish(&a, has_op).empty()) out->push_back(std::move(a));
    }
  }
  return true;
}

std::string Describe(const OwnedAction& a) {
  std::string s = a.tenant + " " + policy::OpName(a.fields.op) + " " + a.path;
  if (!a.path2.empty()) s += " -> " + a.path2;
  return s;
}

std::string Outcome(const policy::Decision& d) {
  if (!d.rule) return "deny (no rule allows it)";
  return std::string(policy::EffectName(d.effect)) + " (rule " + d.rule->id + ")";
}

int Check(const std::vector<std::string>& files) {
  if (files.size() != 1) return Usage();
  size_t errors = 0, warnings = 0;
  auto p = LoadPrinting(files[0], &errors, &warnings);
  if (!p) {
    std::printf("%s: %zu errors, %zu warnings: refused\n", files[0].c_str(), errors, warnings);
    return 1;
  }
  std::printf("%s: valid: %zu rules (global %zu, tenants' %zu, defaults %zu), %zu warnings; sha256 %s\n",
              files[0].c_str(), p->rule_count(), p->global_rules().size(),
              p->rule_count() - p->global_rules().size() - p->default_rules().size(), p->default_rules().size(),
              warnings, p->sha256().c_str());
  return 0;
}

// The rules of each scope ("" global, else a tenant) as JSON, by position.
std::map<std::string, std::vector<json>> RuleTexts(const std::string& path) {
  std::map<std::string, std::vector<json>> out;
  std::ifstream in(path);
  json doc = json::parse(in, nullptr, false);
  if (!doc.is_object()) return out;
  if (doc.contains("rules")) out[""] = doc["rules"].get<std::vector<json>>();
  if (doc.contains("tenants")) {
    for (auto it = doc["tenants"].begin(); it != doc["tenants"].end(); ++it) {
      out[it.key()] = it.value().contains("rules") ? it.value()["rules"].get<std::vector<json>>() : std::vector<json>{};
    }
  }
  for (auto& [scope, rules] : out) {
    for (json& r : rules) r.erase("comment");  // a comment changes no decision
  }
  return out;
}

std::string LimitsText(const policy::Limits& l) {
  std::string s;
  auto add = [&](const char* name, const auto& v) {
    if (v) s += std::string(s.empty() ? "" : ", ") + name + " " + std::to_string(*v);
  };
  add("max_file_size", l.max_file_size);
  add("max_transaction_ops", l.max_transaction_ops);
  add("max_transaction_bytes", l.max_transaction_bytes);
  add("transactions_per_second", l.transactions_per_second);
  return s.empty() ? "none" : s;
}

int Diff(const std::vector<std::string>& files, const std::string& config, const std::string& sample,
         const std::string& audit_dir) {
  std::string old_path, new_path;
  if (!config.empty()) {
    if (files.size() != 1) return Usage();
    auto c = server::LoadConfig(config);
    if (!c.ok()) {
      std::fprintf(stderr, "crfsctl: %s\n", c.status().ToString().c_str());
      return 1;
    }
    old_path = c->policy;
    new_path = files[0];
  } else {
    if (files.size() != 2) return Usage();
    old_path = files[0];
    new_path = files[1];
  }
  std::vector<OwnedAction> actions;
  if (!sample.empty() && !LoadSample(sample, &actions)) return 1;
  size_t audited = 0;
  if (!audit_dir.empty() && !LoadAudit(audit_dir, &actions, &audited)) return 1;
  auto old_p = LoadPrinting(old_path, nullptr, nullptr);
  auto new_p = LoadPrinting(new_path, nullptr, nullptr);
  if (!old_p || !new_p) {
    std::fprintf(stderr, "crfsctl: %s is not a valid policy\n", !old_p ? old_path.c_str() : new_path.c_str());
    return 1;
  }
  std::printf("--- %s (sha256 %s)\n+++ %s (sha256 %s)\n", old_path.c_str(), old_p->sha256().c_str(), new_path.c_str(),
              new_p->sha256().c_str());
  size_t changes = 0;
  auto old_rules = RuleTexts(old_path), new_rules = RuleTexts(new_path);
  std::set<std::string> scopes;
  for (const auto& [s, r] : old_rules) scopes.insert(s);
  for (const auto& [s, r] : new_rules) scopes.insert(s);
  for (const std::string& scope : scopes) {
    const std::string where = scope.empty() ? "global" : "tenant " + scope;
    const std::vector<json>& a = old_rules[scope];
    const std::vector<json>& b = new_rules[scope];
    auto index = [](const std::vector<json>& rules) {
      std::map<std::string, size_t> m;
      for (size_t i = 0; i < rules.size(); i++) m[rules[i].value("id", "")] = i;
      return m;
    };
    auto ia = index(a), ib = index(b);
    for (const auto& [id, i] : ia) {
      if (!ib.count(id))
        std::printf("%s: removed rule %s: %s\n", where.c_str(), id.c_str(), a[i].dump().c_str()), changes++;
    }
    for (const auto& [id, j] : ib) {
      auto i = ia.find(id);
      if (i == ia.end()) {
        std::printf("%s: added rule %s at position %zu: %s\n", where.c_str(), id.c_str(), j + 1, b[j].dump().c_str());
        changes++;
        continue;
      }
      if (a[i->second] != b[j]) {
        std::printf("%s: changed rule %s:\n  - %s\n  + %s\n", where.c_str(), id.c_str(), a[i->second].dump().c_str(),
                    b[j].dump().c_str());
        changes++;
      }
    }
    // Order decides (the first allow or deny wins): a rule that moved
    // relative to the rules both versions have changes decisions too.
    std::vector<std::string> kept_a, kept_b;
    for (const json& r : a) {
      if (ib.count(r.value("id", ""))) kept_a.push_back(r.value("id", ""));
    }
    for (const json& r : b) {
      if (ia.count(r.value("id", ""))) kept_b.push_back(r.value("id", ""));
    }
    if (kept_a != kept_b) {
      std::string order;
      for (const std::string& id : kept_b) order += (order.empty() ? "" : ", ") + id;
      std::printf("%s: rules reordered; now: %s\n", where.c_str(), order.c_str());
      changes++;
    }
  }
  std::set<std::string> tenants;
  for (const std::string& t : old_p->tenants()) tenants.insert(t);
  for (const std::string& t : new_p->tenants()) tenants.insert(t);
  tenants.insert("");  // every other tenant: the global limits
  for (const std::string& t : tenants) {
    const std::string a = LimitsText(old_p->LimitsOf(t)), b = LimitsText(new_p->LimitsOf(t));
    if (a != b) {
      std::printf("%s limits: %s -> %s\n", t.empty() ? "global" : ("tenant " + t).c_str(), a.c_str(), b.c_str());
      changes++;
    }
  }
  if (!changes) std::printf("no rule or limit changes\n");
  if (!sample.empty() || !audit_dir.empty()) {
    // Each distinct difference once, with how often it occurred, in the
    // order first seen.
    size_t differ = 0;
    std::vector<std::string> order;
    std::map<std::string, size_t> count;
    for (const OwnedAction& x : actions) {
      const policy::Decision d1 = old_p->Evaluate(x.subject(), x.action());
      const policy::Decision d2 = new_p->Evaluate(x.subject(), x.action());
      if (d1.effect != d2.effect) {
        const std::string line = Describe(x) + ": " + Outcome(d1) + " -> " + Outcome(d2);
        if (count[line]++ == 0) order.push_back(line);
        differ++;
      }
    }
    for (const std::string& line : order) {
      if (count[line] > 1) {
        std::printf("decided differently (%zu times): %s\n", count[line], line.c_str());
      } else {
        std::printf("decided differently: %s\n", line.c_str());
      }
    }
    std::printf("dry run: %zu of %zu %s operations decided differently\n", differ, actions.size(),
                audit_dir.empty() ? "sampled"
                : sample.empty()  ? "audited"
                                  : "sampled and audited");
    if (!audit_dir.empty()) std::printf("(%zu decision records read from %s)\n", audited, audit_dir.c_str());
  }
  return 0;
}

int Explain(const std::vector<std::string>& words, const std::map<std::string, std::string>& opts) {
  if (words.size() < 3 || words.size() > 4) return Usage();
  OwnedAction a;
  for (const auto& [k, v] : opts) {
    if (std::string why = SetField(&a, k, v); !why.empty()) {
      std::fprintf(stderr, "crfsctl: --%s: %s\n", k.c_str(), why.c_str());
      return 2;
    }
  }
  for (auto [k, i] : {std::pair<const char*, size_t>{"op", 1}, {"path", 2}, {"path2", 3}}) {
    if (i >= words.size()) continue;
    if (std::string why = SetField(&a, k, words[i]); !why.empty()) {
      std::fprintf(stderr, "crfsctl: %s\n", why.c_str());
      return 2;
    }
  }
  if (std::string why = Finish(&a, true); !why.empty()) {
    std::fprintf(stderr, "crfsctl: %s (--tenant T)\n", why.c_str());
    return 2;
  }
  auto p = LoadPrinting(words[0], nullptr, nullptr);
  if (!p) return 1;
  const policy::Decision d = p->Evaluate(a.subject(), a.action());
  std::printf("%s\n", d.Explain(a.action()).c_str());
  if (d.rule) std::printf("  rule %s at %s, line %d\n", d.rule->id.c_str(), d.rule->where.c_str(), d.rule->line);
  if (d.effect != policy::Effect::kAllow) std::printf("  errno %s\n", strerrorname_np(d.err ? d.err : EACCES));
  for (const policy::Rule* r : d.warned) {
    std::printf("  warned by rule %s at %s, line %d\n", r->id.c_str(), r->where.c_str(), r->line);
  }
  return d.effect == policy::Effect::kAllow ? 0 : 3;
}

}  // namespace

int PolicyCommand(Args args) {
  if (args.empty()) return Usage();
  const std::string verb(args[0]);
  if (verb == "apply" || verb == "show" || verb == "reload") return AdminCommand(verb, args.subspan(1));
  std::vector<std::string> words;
  std::map<std::string, std::string> opts;
  static const std::set<std::string> kExplainOpts = {"tenant", "client", "uid", "gid", "type", "mode", "size", "xattr"};
  for (size_t i = 1; i < args.size(); i++) {
    const std::string a(args[i]);
    if (a.size() > 2 && a.compare(0, 2, "--") == 0) {
      const std::string k = a.substr(2);
      const bool known = (verb == "diff" && (k == "config" || k == "sample" || k == "audit")) ||
                         (verb == "explain" && kExplainOpts.count(k));
      if (!known || i + 1 >= args.size() || opts.count(k)) {
        std::fprintf(stderr, "crfsctl: policy %s: unknown, repeated or incomplete option %s\n", verb.c_str(),
                     a.c_str());
        return Usage();
      }
      opts[k] = std::string(args[++i]);
    } else {
      words.push_back(a);
    }
  }
  if (verb == "check" && opts.empty()) return Check(words);
  if (verb == "diff")
    return Diff(words, opts.count("config") ? opts["config"] : "", opts.count("sample") ? opts["sample"] : "",
                opts.count("audit") ? opts["audit"] : "");
  if (verb == "explain") return Explain(words, opts);
  return Usage();
}

}  // namespace crfs::ctl
