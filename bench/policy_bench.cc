// policy_bench - how long one policy decision takes (bench/policy.sh).
//
// usage: policy_bench POLICY [ITERATIONS]
// Evaluates a fixed mix of actions of tenant "bench" against POLICY and
// prints, per action, the nanoseconds per decision and the deciding rule.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "policy/policy.h"

using namespace crfs::policy;

int main(int argc, char** argv) {
  if (argc < 2 || argc > 3) {
    std::fprintf(stderr, "usage: policy_bench POLICY [ITERATIONS]\n");
    return 2;
  }
  const long iterations = argc == 3 ? std::atol(argv[2]) : 200000;
  std::vector<Diagnostic> diags;
  auto p = Policy::Load(argv[1], &diags);
  if (!p.ok()) {
    std::fprintf(stderr, "policy_bench: %s\n", p.status().ToString().c_str());
    return 1;
  }
  const Subject s{"bench", "spiffe://bench.crfs/tenant/bench/client/runner", 0, 0};
  struct Case {
    const char* what;
    Action a;
  };
  auto act = [](OpKind op, const char* path, uint8_t type) {
    Action a;
    a.op = op;
    a.path = path;
    a.type = type;
    return a;
  };
  std::vector<Case> cases = {
      {"read /tree/d3/d17/f-1234", act(OpKind::kRead, "/tree/d3/d17/f-1234", kFile)},
      {"readdir /tree/d3/d17", act(OpKind::kReaddir, "/tree/d3/d17", kDir)},
      {"write /tree/d3/f-9 (size)", act(OpKind::kWrite, "/tree/d3/f-9", kFile)},
      {"create /tree/new.txt 0644", act(OpKind::kCreate, "/tree/new.txt", kFile)},
      {"rename /tree/a -> /tree/b", act(OpKind::kRename, "/tree/a", kFile)},
  };
  cases[2].a.size = 4096;
  cases[3].a.perms = 0644;
  cases[4].a.path2 = "/tree/b";
  std::printf("%-30s %12s  %s\n", "decision", "ns/decision", "decided by");
  double total = 0;
  for (Case& c : cases) {
    Decision d;
    const auto t0 = std::chrono::steady_clock::now();
    for (long i = 0; i < iterations; i++) d = (*p)->Evaluate(s, c.a);
    const double ns = std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0).count() /
                      static_cast<double>(iterations);
    total += ns;
    std::printf("%-30s %12.0f  %s %s\n", c.what, ns, EffectName(d.effect), d.rule ? d.rule->id.c_str() : "(none)");
  }
  std::printf("%-30s %12.0f  (%zu rules)\n", "mean", total / static_cast<double>(cases.size()), (*p)->rule_count());
  return 0;
}
