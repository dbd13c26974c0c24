#include "policy/policy.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include "policy/glob.h"

namespace crfs::policy {
namespace {

bool Match(const char* pattern, const char* text) {
  auto g = Glob::Compile(pattern);
  EXPECT_TRUE(g.ok()) << pattern;
  return g.ok() && g->Matches(text);
}

TEST(Glob, StarStaysInOneComponent) {
  EXPECT_TRUE(Match("/a/*", "/a/b"));
  EXPECT_FALSE(Match("/a/*", "/a/b/c"));
  EXPECT_TRUE(Match("*.exe", "x.exe"));
  EXPECT_FALSE(Match("*.exe", "x.exe.txt"));
  EXPECT_TRUE(Match("/a/*/c", "/a/b/c"));
  EXPECT_FALSE(Match("/a/*/c", "/a/b/x/c"));
  EXPECT_TRUE(Match("/a/b*", "/a/b"));
}

TEST(Glob, DoubleStarCrossesComponentsAndCoversTheDirectoryItself) {
  EXPECT_TRUE(Match("/a/**", "/a"));
  EXPECT_TRUE(Match("/a/**", "/a/b"));
  EXPECT_TRUE(Match("/a/**", "/a/b/c/d"));
  EXPECT_FALSE(Match("/a/**", "/ab"));
  EXPECT_FALSE(Match("/a/**", "/b/a"));
  EXPECT_TRUE(Match("/**", "/"));
  EXPECT_TRUE(Match("/**", "/x/y"));
  EXPECT_TRUE(Match("/a/**/b", "/a/b"));
  EXPECT_TRUE(Match("/a/**/b", "/a/x/y/b"));
  EXPECT_FALSE(Match("/a/**/b", "/a/xb"));
  EXPECT_TRUE(Match("/a**", "/abc/d"));
  EXPECT_TRUE(Match("/**/*.key", "/deep/er/x.key"));
  EXPECT_TRUE(Match("/**/*.key", "/x.key"));
}

TEST(Glob, ClassesEscapesAndQuestionMarks) {
  EXPECT_TRUE(Match("file[0-9]", "file7"));
  EXPECT_FALSE(Match("file[0-9]", "filex"));
  EXPECT_TRUE(Match("file[!0-9]", "filex"));
  EXPECT_FALSE(Match("/a[/]b", "/a/b"));  // a class never matches '/'
  EXPECT_TRUE(Match("a?c", "abc"));
  EXPECT_FALSE(Match("a?c", "a/c"));
  EXPECT_TRUE(Match("a\\*c", "a*c"));
  EXPECT_FALSE(Match("a\\*c", "abc"));
  EXPECT_FALSE(Glob::Compile("a[bc").ok());
  EXPECT_FALSE(Glob::Compile("a\\").ok());
  EXPECT_FALSE(Glob::Compile("[z-a]").ok());
}

TEST(Glob, LongPathsDoNotBacktrack) {
  // 30 stars against a 4 KiB path: exponential backtracking would never end.
  std::string pattern;
  for (int i = 0; i < 30; i++) pattern += "*a";
  pattern += "b";
  auto g = Glob::Compile(pattern);
  ASSERT_TRUE(g.ok());
  EXPECT_FALSE(g->Matches(std::string(4096, 'a')));
}

TEST(Glob, CoverageIsDecidedOnlyWhenCertain) {
  auto g = [](const char* p) { return *Glob::Compile(p); };
  EXPECT_TRUE(g("/a/b/**").CoveredBy(g("/a/**")));
  EXPECT_TRUE(g("/a/b").CoveredBy(g("/a/**")));
  EXPECT_TRUE(g("/a").CoveredBy(g("/a/**")));
  EXPECT_TRUE(g("/a/*.c").CoveredBy(g("/**")));
  EXPECT_FALSE(g("/ab/**").CoveredBy(g("/a/**")));
  EXPECT_FALSE(g("/a/**").CoveredBy(g("/a/b/**")));
  EXPECT_FALSE(g("/a/*").CoveredBy(g("/a/b")));
}

std::shared_ptr<const Policy> Parse(const std::string& text, std::vector<Diagnostic>* d = nullptr) {
  auto p = Policy::Parse(text, d);
  EXPECT_TRUE(p.ok()) << p.status().message();
  return p.ok() ? *p : nullptr;
}

// One rule before an allow-the-rest: is `a` decided by it?
std::string Decide(const std::string& rule, const Action& a,
                   const Subject& s = {"acme", "spiffe://t/tenant/acme/client/alice", 0, 0}) {
  auto p = Parse(R"({"version": 1, "rules": [)" + rule + R"(, {"id": "rest", "effect": "allow"}]})");
  if (!p) return "parse failed";
  Decision d = p->Evaluate(s, a);
  return d.rule ? d.rule->id : "default";
}

Action Act(OpKind op, const char* path) {
  Action a;
  a.op = op;
  a.path = path;
  return a;
}

TEST(PolicyEvaluate, EachConditionKindAllowsAndDenies) {
  const Subject alice{"acme", "spiffe://t/tenant/acme/client/alice", 1000, 100};
  // ops
  EXPECT_EQ(Decide(R"({"id": "r", "effect": "deny", "ops": ["unlink"]})", Act(OpKind::kUnlink, "/x")), "r");
  EXPECT_EQ(Decide(R"({"id": "r", "effect": "deny", "ops": ["unlink"]})", Act(OpKind::kRmdir, "/x")), "rest");
  // path
  EXPECT_EQ(Decide(R"({"id": "r", "effect": "deny", "path": "/secret/**"})", Act(OpKind::kRead, "/secret/k")), "r");
  EXPECT_EQ(Decide(R"({"id": "r", "effect": "deny", "path": "/secret/**"})", Act(OpKind::kRead, "/public/k")), "rest");
  // path2 (the other end of a rename)
  Action mv = Act(OpKind::kRename, "/tmp/x");
  mv.path2 = "/ro/x";
  EXPECT_EQ(Decide(R"({"id": "r", "effect": "deny", "path2": "/ro/**"})", mv), "r");
  mv.path2 = "/rw/x";
  EXPECT_EQ(Decide(R"({"id": "r", "effect": "deny", "path2": "/ro/**"})", mv), "rest");
  // name: the new name of a rename
  mv.path2 = "/rw/x.exe";
  EXPECT_EQ(Decide(R"({"id": "r", "effect": "deny", "name": "*.exe"})", mv), "r");
  EXPECT_EQ(Decide(R"({"id": "r", "effect": "deny", "name": "*.exe"})", Act(OpKind::kCreate, "/a.txt")), "rest");
  // type
  Action mk = Act(OpKind::kMknod, "/dev0");
  mk.type = kCharDev;
  mk.perms = 0600;
  EXPECT_EQ(Decide(R"({"id": "r", "effect": "deny", "type": ["chardev"]})", mk), "r");
  mk.type = kFifo;
  EXPECT_EQ(Decide(R"({"id": "r", "effect": "deny", "type": ["chardev"]})", mk), "rest");
  // mode
  Action ch = Act(OpKind::kChmod, "/x");
  ch.type = kFile;
  ch.perms = 04755;
  EXPECT_EQ(Decide(R"({"id": "r", "effect": "deny", "mode": ["setuid"]})", ch), "r");
  ch.perms = 0755;
  EXPECT_EQ(Decide(R"({"id": "r", "effect": "deny", "mode": ["setuid"]})", ch), "rest");
  ch.perms = 0666;
  EXPECT_EQ(Decide(R"({"id": "r", "effect": "deny", "mode": ["world-writable"]})", ch), "r");
  ch.type = kSymlinkType;  // a symlink's 0777 is no world-writable file
  EXPECT_EQ(Decide(R"({"id": "r", "effect": "deny", "mode": ["world-writable"]})", ch), "rest");
  // size
  Action w = Act(OpKind::kWrite, "/f");
  w.size = 1000;
  EXPECT_EQ(Decide(R"({"id": "r", "effect": "deny", "size": {"min": 1000}})", w), "r");
  w.size = 999;
  EXPECT_EQ(Decide(R"({"id": "r", "effect": "deny", "size": {"min": 1000}})", w), "rest");
  // uid, gid
  EXPECT_EQ(Decide(R"({"id": "r", "effect": "deny", "uid": "1000-1999"})", Act(OpKind::kRead, "/"), alice), "r");
  EXPECT_EQ(Decide(R"({"id": "r", "effect": "deny", "uid": [0, 2000]})", Act(OpKind::kRead, "/"), alice), "rest");
  EXPECT_EQ(Decide(R"({"id": "r", "effect": "deny", "gid": 100})", Act(OpKind::kRead, "/"), alice), "r");
  EXPECT_EQ(Decide(R"({"id": "r", "effect": "deny", "gid": 101})", Act(OpKind::kRead, "/"), alice), "rest");
  // client
  EXPECT_EQ(Decide(R"({"id": "r", "effect": "deny", "client": "spiffe://t/tenant/acme/client/a*"})",
                   Act(OpKind::kRead, "/"), alice),
            "r");
  EXPECT_EQ(Decide(R"({"id": "r", "effect": "deny", "client": "spiffe://t/tenant/acme/client/b*"})",
                   Act(OpKind::kRead, "/"), alice),
            "rest");
  // xattr
  Action x = Act(OpKind::kSetxattr, "/f");
  x.xattr = "security.ima";
  EXPECT_EQ(Decide(R"({"id": "r", "effect": "deny", "xattr": "security.*"})", x), "r");
  x.xattr = "user.color";
  EXPECT_EQ(Decide(R"({"id": "r", "effect": "deny", "xattr": "security.*"})", x), "rest");
}

TEST(PolicyEvaluate, FirstDecidingRuleWinsWarnsAreCollectedAndNothingMatchedIsDenied) {
  auto p = Parse(R"({"version": 1,
    "rules": [{"id": "w", "effect": "warn", "path": "/**"},
              {"id": "ro", "effect": "deny", "errno": "EROFS", "ops": ["write"], "path": "/ro/**"}],
    "tenants": {"acme": {"rules": [{"id": "acme-all", "effect": "allow"}]}}})");
  ASSERT_TRUE(p);
  const Subject acme{"acme", "spiffe://t/tenant/acme/client/a", 0, 0},
      beta{"beta", "spiffe://t/tenant/beta/client/b", 0, 0};
  Decision d = p->Evaluate(acme, Act(OpKind::kWrite, "/ro/f"));
  EXPECT_EQ(d.effect, Effect::kDeny);
  EXPECT_EQ(d.err, EROFS);
  ASSERT_EQ(d.warned.size(), 1u);
  EXPECT_EQ(d.warned[0]->id, "w");
  d = p->Evaluate(acme, Act(OpKind::kWrite, "/rw/f"));
  EXPECT_EQ(d.effect, Effect::kAllow);
  EXPECT_EQ(d.rule->id, "acme-all");
  // beta has no rules: default deny, EACCES.
  d = p->Evaluate(beta, Act(OpKind::kRead, "/f"));
  EXPECT_EQ(d.effect, Effect::kDeny);
  EXPECT_EQ(d.rule, nullptr);
  EXPECT_EQ(d.err, EACCES);
  EXPECT_NE(d.Explain(Act(OpKind::kRead, "/f")).find("no rule allows read /f"), std::string::npos);
}

TEST(PolicyEvaluate, GlobalRulesThenTheTenantsThenTheDefaults) {
  auto p = Parse(R"({"version": 1,
    "rules": [{"id": "no-setuid", "effect": "deny", "errno": "EPERM", "mode": ["setuid"]}],
    "tenants": {"acme": {"rules": [{"id": "acme-any-chmod", "effect": "allow", "ops": ["chmod"]},
                                   {"id": "acme-ro", "effect": "deny", "ops": ["write"], "path": "/ro/**"}]}},
    "defaults": [{"id": "rest", "effect": "allow"}]})");
  ASSERT_TRUE(p);
  const Subject acme{"acme", "spiffe://t/tenant/acme/client/a", 0, 0},
      beta{"beta", "spiffe://t/tenant/beta/client/b", 0, 0};
  Action setuid = Act(OpKind::kChmod, "/f");
  setuid.type = kFile;
  setuid.perms = 04755;
  // A global rule is tried before a tenant's allow.
  EXPECT_EQ(p->Evaluate(acme, setuid).rule->id, "no-setuid");
  Action plain = setuid;
  plain.perms = 0755;
  EXPECT_EQ(p->Evaluate(acme, plain).rule->id, "acme-any-chmod");
  // A tenant's deny is tried before the defaults' allow.
  EXPECT_EQ(p->Evaluate(acme, Act(OpKind::kWrite, "/ro/x")).rule->id, "acme-ro");
  EXPECT_EQ(p->Evaluate(acme, Act(OpKind::kWrite, "/rw/x")).rule->id, "rest");
  // A tenant without a section gets the global rules and the defaults.
  EXPECT_EQ(p->Evaluate(beta, Act(OpKind::kWrite, "/ro/x")).rule->id, "rest");
  EXPECT_EQ(p->Evaluate(beta, setuid).rule->id, "no-setuid");
  EXPECT_EQ(p->rule_count(), 4u);
}

TEST(PolicyEvaluate, TheIndexByFirstComponentKeepsRuleOrder) {
  // Rules indexed under "a" and rules for every path interleave: the first
  // that matches must still decide.
  auto p = Parse(R"({"version": 1, "rules": [
    {"id": "w-any", "effect": "warn", "name": "*.log"},
    {"id": "a-sub", "effect": "deny", "path": "/a/sub/**"},
    {"id": "any-tmp", "effect": "deny", "name": "*.tmp"},
    {"id": "a-or-b", "effect": "deny", "ops": ["write"], "path": ["/a/**", "/b"]},
    {"id": "root", "effect": "deny", "ops": ["readdir"], "path": "/"},
    {"id": "star", "effect": "deny", "path": "/c*"},
    {"id": "rest", "effect": "allow"}]})");
  ASSERT_TRUE(p);
  const Subject s{"acme", "spiffe://t/tenant/acme/client/a", 0, 0};
  auto id = [&](OpKind op, const char* path) {
    const Decision d = p->Evaluate(s, Act(op, path));
    return d.rule ? d.rule->id : std::string("none");
  };
  EXPECT_EQ(id(OpKind::kRead, "/a/sub/x.tmp"), "a-sub");
  EXPECT_EQ(id(OpKind::kRead, "/a/x.tmp"), "any-tmp");
  EXPECT_EQ(id(OpKind::kWrite, "/a/x"), "a-or-b");
  EXPECT_EQ(id(OpKind::kWrite, "/a"), "a-or-b");
  EXPECT_EQ(id(OpKind::kWrite, "/b"), "a-or-b");
  EXPECT_EQ(id(OpKind::kWrite, "/b/x"), "rest");
  EXPECT_EQ(id(OpKind::kWrite, "/ab"), "rest");
  EXPECT_EQ(id(OpKind::kReaddir, "/"), "root");
  EXPECT_EQ(id(OpKind::kReaddir, "/a"), "rest");
  EXPECT_EQ(id(OpKind::kRead, "/cat"), "star");
  EXPECT_EQ(id(OpKind::kRead, ""), "rest");  // a nameless object: only rules without a path
  const Decision d = p->Evaluate(s, Act(OpKind::kRead, "/a/sub/x.log"));
  ASSERT_EQ(d.warned.size(), 1u);
  EXPECT_EQ(d.rule->id, "a-sub");
}

TEST(PolicyEvaluate, AnEscapedClientPatternIsIndexedByItsText) {
  // "\*" is a literal '*': the rule is indexed under the text it matches,
  // not under its source (found by glob_fuzz's literal oracle).
  auto p = Parse(R"({"version": 1, "rules": [
    {"id": "odd", "effect": "deny", "client": "spiffe://t/tenant/acme/client/a\\*b"},
    {"id": "rest", "effect": "allow"}]})");
  ASSERT_TRUE(p);
  auto id = [&](const char* client) {
    const Decision d = p->Evaluate(Subject{"acme", client, 0, 0}, Act(OpKind::kRead, "/x"));
    return d.rule ? d.rule->id : std::string("none");
  };
  EXPECT_EQ(id("spiffe://t/tenant/acme/client/a*b"), "odd");
  EXPECT_EQ(id("spiffe://t/tenant/acme/client/a\\*b"), "rest");
  EXPECT_EQ(id("spiffe://t/tenant/acme/client/axb"), "rest");
}

TEST(PolicyEvaluate, LimitsAreInheritedPerKey) {
  auto p = Parse(R"({"version": 1, "limits": {"max_file_size": 100, "max_transaction_ops": 5},
    "tenants": {"acme": {"limits": {"max_file_size": 10}}}})");
  ASSERT_TRUE(p);
  EXPECT_EQ(*p->LimitsOf("acme").max_file_size, 10u);
  EXPECT_EQ(*p->LimitsOf("acme").max_transaction_ops, 5u);
  EXPECT_EQ(*p->LimitsOf("beta").max_file_size, 100u);
  EXPECT_FALSE(p->LimitsOf("beta").transactions_per_second);
}

struct BadPolicy {
  const char* text;
  const char* where;  // the JSON pointer in the first error
  int line;           // and its line
  const char* says;
};

class PolicyBad : public ::testing::TestWithParam<BadPolicy> {};

TEST_P(PolicyBad, NamesThePointerAndLine) {
  std::vector<Diagnostic> d;
  auto p = Policy::Parse(GetParam().text, &d);
  ASSERT_FALSE(p.ok()) << GetParam().text;
  const Diagnostic* first = nullptr;
  for (const auto& x : d) {
    if (x.error && !first) first = &x;
  }
  ASSERT_NE(first, nullptr);
  EXPECT_EQ(first->where, GetParam().where) << first->ToString();
  EXPECT_EQ(first->line, GetParam().line) << first->ToString();
  EXPECT_NE(first->message.find(GetParam().says), std::string::npos) << first->ToString();
  EXPECT_NE(p.status().message().find(GetParam().says), std::string::npos);
}

INSTANTIATE_TEST_SUITE_P(
    Policy, PolicyBad,
    ::testing::Values(
        BadPolicy{"{\"version\": 1,\n \"rules\": [\n {\"id\": \"a\", \"effect\": \"alow\"}]}", "/rules/0/effect", 3,
                  "allow, deny or warn"},
        BadPolicy{"{\"version\": 2}", "/version", 1, "must be 1"},
        BadPolicy{"{\"rules\": []}", "", 1, "\"version\" is required"},
        BadPolicy{"{\"version\": 1,\n\"rulez\": []}", "/rulez", 2, "unknown key"},
        BadPolicy{"{\"version\": 1, \"rules\": [{\"id\": \"a\", \"effect\": \"deny\",\n \"colour\": 1}]}",
                  "/rules/0/colour", 2, "unknown key"},
        BadPolicy{"{\"version\": 1, \"version\": 1}", "/version", 1, "duplicate key"},
        BadPolicy{"{\"version\": 1,\n\n \"rules\": [\n{\"id\": \"a\", \"effect\": \"deny\", \"ops\": [\"unlink\"],\n "
                  "\"mode\": [\"setuid\"]}]}",
                  "/rules/0", 4, "can never match: \"mode\""},
        BadPolicy{"{\"version\": 1, \"rules\": [{\"id\": \"a\", \"effect\": \"deny\", \"ops\": [\"read\"], "
                  "\"size\": {\"min\": 1}}]}",
                  "/rules/0", 1, "can never match: \"size\""},
        BadPolicy{"{\"version\": 1, \"rules\": [{\"id\": \"a\", \"effect\": \"deny\", \"ops\": [\"rmdir\"], "
                  "\"type\": [\"file\"]}]}",
                  "/rules/0", 1, "can never match: \"type\""},
        BadPolicy{"{\"version\": 1, \"rules\": [{\"id\": \"a\", \"effect\": \"deny\", \"ops\": [\"read\"], "
                  "\"path2\": \"/x\"}]}",
                  "/rules/0", 1, "can never match: \"path2\""},
        BadPolicy{"{\"version\": 1, \"tenants\": {\"acme\": {\"rules\": [{\"id\": \"a\", \"effect\": \"deny\", "
                  "\"client\": \"spiffe://t/tenant/beta/client/*\"}]}}}",
                  "/tenants/acme/rules/0/client", 1, "only its own clients"},
        BadPolicy{"{\"version\": 1, \"rules\": [{\"id\": \"a\", \"effect\": \"deny\", \"path\": \"secret\"}]}",
                  "/rules/0/path", 1, "starts with '/'"},
        BadPolicy{"{\"version\": 1, \"rules\": [{\"id\": \"a\", \"effect\": \"deny\", \"name\": \"a/b\"}]}",
                  "/rules/0/name", 1, "no '/'"},
        BadPolicy{"{\"version\": 1, \"rules\": [{\"id\": \"a\", \"effect\": \"deny\", \"path\": \"/[x\"}]}",
                  "/rules/0/path", 1, "without ']'"},
        BadPolicy{"{\"version\": 1, \"rules\": [{\"id\": \"a\", \"effect\": \"deny\", \"ops\": [\"delete\"]}]}",
                  "/rules/0/ops/0", 1, "unknown operation"},
        BadPolicy{"{\"version\": 1, \"rules\": [{\"id\": \"a\", \"effect\": \"deny\", \"uid\": \"9-1\"}]}",
                  "/rules/0/uid", 1, "LO-HI"},
        BadPolicy{"{\"version\": 1, \"rules\": [{\"id\": \"a\", \"effect\": \"allow\", \"errno\": \"EPERM\"}]}",
                  "/rules/0/errno", 1, "only a deny rule"},
        BadPolicy{"{\"version\": 1, \"rules\": [{\"id\": \"a\", \"effect\": \"deny\"},\n {\"id\": \"a\", \"effect\": "
                  "\"allow\"}]}",
                  "/rules/1/id", 2, "also used at /rules/0"},
        BadPolicy{"{\"version\": 1, \"rules\": [{\"effect\": \"deny\"}]}", "/rules/0/id", 1, "has an \"id\""},
        BadPolicy{"{\"version\": 1, \"limits\": {\"max_file_size\": 0}}", "/limits/max_file_size", 1, "1.."},
        BadPolicy{"{\"version\": 1, \"limits\": {\"max_bytes\": 10}}", "/limits/max_bytes", 1, "unknown key"},
        BadPolicy{"{\"version\": 1, \"tenants\": {\"Acme\": {}}}", "/tenants/Acme", 1, "not a tenant name"},
        BadPolicy{"{\"version\": 1,\n \"rules\": [}", "", 2, "not valid JSON"},
        BadPolicy{"[1]", "", 1, "a policy is a JSON object"}));

TEST(PolicyParse, ShadowedRulesAreWarningsNamingTheRuleBefore) {
  std::vector<Diagnostic> d;
  auto p = Policy::Parse(R"({"version": 1,
  "rules": [
    {"id": "ro", "effect": "deny", "path": "/ro/**"},
    {"id": "ro-write", "effect": "deny", "ops": ["write"], "path": "/ro/sub/**"},
    {"id": "w", "effect": "warn", "path": "/**"},
    {"id": "fine", "effect": "allow", "path": "/rw/**"}
  ],
  "tenants": {"acme": {"rules": [{"id": "acme-ro", "effect": "allow", "path": "/ro/x"}]}}})",
                         &d);
  ASSERT_TRUE(p.ok()) << p.status().message();
  std::vector<std::string> warnings;
  for (const auto& x : d) {
    EXPECT_FALSE(x.error) << x.ToString();
    warnings.push_back(x.ToString());
  }
  ASSERT_EQ(warnings.size(), 2u);
  EXPECT_NE(warnings[0].find("line 4: /rules/1: rule ro-write never decides anything: rule ro (/rules/0, line 3)"),
            std::string::npos)
      << warnings[0];
  EXPECT_NE(warnings[1].find("/tenants/acme/rules/0: rule acme-ro never decides"), std::string::npos) << warnings[1];
}

TEST(PolicyParse, TheShippedPoliciesParseWithoutWarnings) {
  for (const char* name : {"default.json", "tenants.json"}) {
    std::vector<Diagnostic> d;
    auto p = Policy::Load(std::string(CRFS_SOURCE_DIR) + "/policy/examples/" + name, &d);
    ASSERT_TRUE(p.ok()) << name << ": " << p.status().message();
    for (const auto& x : d) ADD_FAILURE() << name << ": " << x.ToString();
    EXPECT_EQ((*p)->sha256().size(), 64u);
  }
}

TEST(PolicyEvaluate, TheDefaultPolicyRefusesSetuidSetgidFilesAndDevices) {
  auto p = Policy::Load(std::string(CRFS_SOURCE_DIR) + "/policy/examples/default.json", nullptr);
  ASSERT_TRUE(p.ok()) << p.status().message();
  const Subject s{"acme", "spiffe://t/tenant/acme/client/alice", 0, 0};
  auto decide = [&](OpKind op, uint8_t type, uint32_t perms) {
    Action a = Act(op, "/x");
    a.type = type;
    a.perms = perms;
    Decision d = (*p)->Evaluate(s, a);
    return d.rule ? d.rule->id : "default";
  };
  EXPECT_EQ(decide(OpKind::kChmod, kFile, 04755), "no-setuid");
  EXPECT_EQ(decide(OpKind::kCreate, kFile, 02755), "no-setgid-files");
  EXPECT_EQ(decide(OpKind::kMkdir, kDir, 02775), "allow-the-rest");  // setgid directories are fine
  EXPECT_EQ(decide(OpKind::kMknod, kCharDev, 0600), "no-device-nodes");
  EXPECT_EQ(decide(OpKind::kMknod, kFifo, 0600), "allow-the-rest");
  EXPECT_EQ(decide(OpKind::kChmod, kFile, 0644), "allow-the-rest");
}

}  // namespace
}  // namespace crfs::policy
