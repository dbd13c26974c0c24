// libFuzzer target: the policy parser and engine (policy/policy.h).
//
// Input: a policy text, optionally followed by a NUL and a path. Oracle: no
// crash, leak, hang or sanitizer report; an accepted policy keeps the
// invariants the engine and crfsd rely on (version 1, unique valid ids,
// every rule applies to some operation, a 64-digit hash that parsing the
// same text again reproduces); every decision is allow or deny, names a
// deciding rule of that effect (or none, for default deny with EACCES), and
// collects only warn rules.
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <set>
#include <string>
#include <string_view>

#include "policy/policy.h"

using namespace crfs::policy;

// The decision by trying every rule in order, without the index.
static Decision Naive(const Policy& pol, const Subject& s, const Action& a) {
  Decision d;
  std::vector<const std::vector<Rule>*> lists{&pol.global_rules()};
  if (const std::vector<Rule>* t = pol.TenantRules(s.tenant)) lists.push_back(t);
  lists.push_back(&pol.default_rules());
  for (const auto* rules : lists) {
    for (const Rule& r : *rules) {
      if (!r.Matches(s, a)) continue;
      if (r.effect == Effect::kWarn) {
        d.warned.push_back(&r);
        continue;
      }
      d.effect = r.effect;
      d.rule = &r;
      return d;
    }
  }
  return d;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  const size_t nul = in.find('\0');
  const std::string_view text = in.substr(0, nul);
  // The path: after a NUL, else one the input's patterns may well match.
  std::string path = "/a/b";
  if (nul != std::string_view::npos) {
    path = "/" + std::string(in.substr(nul + 1));
  } else if (size_t q = in.find("\"/"); q != std::string_view::npos) {
    const size_t end = in.find('"', q + 1);
    path = std::string(in.substr(q + 1, end == std::string_view::npos ? std::string_view::npos : end - q - 1));
  }
  std::vector<Diagnostic> diags;
  auto p = Policy::Parse(text, &diags);
  bool errors = false;
  for (const Diagnostic& d : diags) {
    errors = errors || d.error;
    if (d.line < 0 || d.ToString().empty()) abort();
  }
  if (p.ok() == errors) abort();  // refused exactly when there is an error diagnostic
  if (!p.ok()) return 0;
  const Policy& pol = **p;
  if (pol.version() != 1 || pol.sha256().size() != 64) abort();
  auto again = Policy::Parse(text, nullptr);
  if (!again.ok() || (*again)->sha256() != pol.sha256()) abort();
  std::set<std::string> ids;
  auto check_rules = [&](const std::vector<Rule>& rules) {
    for (const Rule& r : rules) {
      if (r.id.empty() || !ids.insert(r.id).second || r.ops == 0) abort();
      if (r.effect != Effect::kDeny && r.err != 0 && r.err != EACCES) abort();
    }
  };
  check_rules(pol.global_rules());
  check_rules(pol.default_rules());
  for (const std::string& t : pol.tenants()) check_rules(*pol.TenantRules(t));
  if (ids.size() != pol.rule_count()) abort();
  std::vector<std::string> tenants = pol.tenants();
  tenants.push_back("nobody");
  for (const std::string& t : tenants) {
    const std::string client = "spiffe://fuzz/tenant/" + t + "/client/c";
    const Subject s{t, client, static_cast<uint32_t>(size), static_cast<uint32_t>(path.size())};
    for (size_t op = 0; op < kOpKinds; op++) {
      Action a;
      a.op = static_cast<OpKind>(op);
      a.path = path;
      a.type = static_cast<uint8_t>(1u << (size % 7));
      if (op == static_cast<size_t>(OpKind::kRename) || op == static_cast<size_t>(OpKind::kLink)) a.path2 = "/x/y";
      if (op <= static_cast<size_t>(OpKind::kMknod) || op == static_cast<size_t>(OpKind::kChmod)) {
        a.perms = static_cast<uint32_t>(size * 0x9e37) & 07777;
      }
      if (op == static_cast<size_t>(OpKind::kWrite) || op == static_cast<size_t>(OpKind::kTruncate)) a.size = size;
      const Decision d = pol.Evaluate(s, a);
      const Decision naive = Naive(pol, s, a);
      if (d.rule != naive.rule || d.effect != naive.effect || d.warned != naive.warned) abort();
      if (d.effect == Effect::kWarn) abort();
      if (d.rule && (d.rule->effect != d.effect || !d.rule->Matches(s, a))) abort();
      if (!d.rule && (d.effect != Effect::kDeny || d.err != EACCES)) abort();
      if (d.effect == Effect::kDeny && d.err == 0) abort();
      for (const Rule* w : d.warned) {
        if (w->effect != Effect::kWarn) abort();
      }
      if (d.Explain(a).empty()) abort();
    }
    (void)pol.LimitsOf(t);
  }
  return 0;
}
