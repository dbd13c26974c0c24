// crfsd - the crfs server. See docs/crfsd.md.
#include <grp.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "audit/log.h"
#include "server/config.h"
#include "server/config_check.h"
#include "server/log.h"
#include "server/server.h"

namespace {

// 1 after the first SIGTERM/SIGINT (stop cleanly), 2 after the second (at once).
volatile sig_atomic_t g_stop = 0;
void OnSignal(int) { g_stop = g_stop < 2 ? g_stop + 1 : 2; }
// SIGHUP: reload the policy.
volatile sig_atomic_t g_reload = 0;
void OnHangup(int) { g_reload = 1; }

constexpr char kUsage[] =
    "usage: crfsd --config FILE [--check-config] [--port-file FILE]\n"
    "\n"
    "  --config FILE      the configuration (JSON; see docs/crfsd.md)\n"
    "  --check-config     check the configuration, TLS material, storage and tenants,\n"
    "                     changing nothing (safe while crfsd runs), then exit\n"
    "  --port-file FILE   once listening, write the bound port to FILE (for port 0)\n"
    "  --help             this text\n"
    "\n"
    "crfsd runs in the foreground and logs to standard error. SIGHUP reloads the\n"
    "policy (a policy with errors is refused and the one in force stays);\n"
    "SIGTERM stops cleanly.\n";

// --check-config: every check, changing nothing (config_check.h), so that
// it is safe beside a crfsd serving the same storage root.
int CheckOnly(const std::string& path, const crfs::server::ServerConfig& config) {
  using namespace crfs::server;
  std::vector<Finding> findings = CheckServerConfig(config, time(nullptr));
  for (Finding& f : CheckStorage(config)) findings.push_back(std::move(f));
  std::vector<crfs::policy::Diagnostic> diags;
  auto pol = crfs::policy::Policy::Load(config.policy, &diags);
  for (const crfs::policy::Diagnostic& d : diags) {
    findings.push_back(
        Finding{d.error ? Finding::kError : Finding::kWarning, "policy " + config.policy + ": " + d.ToString()});
  }
  if (!pol.ok() && diags.empty()) findings.push_back(Finding{Finding::kError, pol.status().message()});
  if (pol.ok()) {
    findings.push_back(Finding{Finding::kNote, "policy " + config.policy + ": " + std::to_string((*pol)->rule_count()) +
                                                   " rules, sha256 " + (*pol)->sha256()});
  }
  // The audit log: its key loads and what is there verifies (read only:
  // a live crfsd may be appending to it).
  auto signer = crfs::audit::Signer::Load(config.audit_key, config.audit_origin);
  if (!signer.ok()) {
    findings.push_back(Finding{Finding::kError, signer.status().message()});
  } else if (struct stat st; stat((config.audit_dir + "/records.jsonl").c_str(), &st) != 0) {
    findings.push_back(Finding{Finding::kNote, "audit log " + config.audit_dir + ": none yet (crfsd creates it); " +
                                                   "verifier key " + signer->verifier().vkey()});
  } else {
    const crfs::audit::VerifyResult r = crfs::audit::Verify(config.audit_dir, signer->verifier(), nullptr);
    for (const crfs::audit::Finding& f : r.findings) {
      findings.push_back(
          Finding{f.unsigned_tail ? Finding::kNote : Finding::kError, "audit log " + config.audit_dir + ": " + f.text});
    }
    findings.push_back(Finding{Finding::kNote, "audit log " + config.audit_dir + ": " + std::to_string(r.records) +
                                                   " records, " + std::to_string(r.checkpoints) +
                                                   " checkpoints, verifier key " + signer->verifier().vkey()});
  }
  int errors = 0, warnings = 0;
  for (const Finding& f : findings) {
    const LogLevel level = f.severity == Finding::kError     ? LogLevel::kError
                           : f.severity == Finding::kWarning ? LogLevel::kWarning
                                                             : LogLevel::kInfo;
    errors += f.severity == Finding::kError;
    warnings += f.severity == Finding::kWarning;
    Log(level, "check: %s", f.text.c_str());
  }
  if (errors > 0) {
    Log(LogLevel::kError, "configuration %s: %d error%s, %d warning%s", path.c_str(), errors, errors == 1 ? "" : "s",
        warnings, warnings == 1 ? "" : "s");
    return 1;
  }
  Log(LogLevel::kInfo, "configuration %s is valid (%d warning%s)", path.c_str(), warnings, warnings == 1 ? "" : "s");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string config_path, port_file;
  bool check_only = false;
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    } else if (a == "--config" && i + 1 < argc) {
      config_path = argv[++i];
    } else if (a == "--port-file" && i + 1 < argc) {
      port_file = argv[++i];
    } else if (a == "--check-config") {
      check_only = true;
    } else {
      std::fprintf(stderr, "crfsd: unknown or incomplete argument '%s'\n%s", a.c_str(), kUsage);
      return 2;
    }
  }
  if (config_path.empty()) {
    std::fprintf(stderr, "crfsd: --config is required\n%s", kUsage);
    return 2;
  }
  using namespace crfs::server;
  auto config = LoadConfig(config_path);
  if (!config.ok()) {
    Log(LogLevel::kError, "%s", config.status().message().c_str());
    return 1;
  }
  if (check_only) return CheckOnly(config_path, *config);
  signal(SIGPIPE, SIG_IGN);
  // Tenant users act with their fsuid and fsgid alone (access.h): any
  // supplementary group crfsd kept (root's group 0, an admin group) would
  // count in every permission check made for them. Before any thread exists.
  if (setgroups(0, nullptr) != 0 && getgroups(0, nullptr) != 0) {
    Log(LogLevel::kError, "cannot drop supplementary groups: %s", std::strerror(errno));
    return 1;
  }
  // One fd per session: take the whole hard limit for them.
  struct rlimit nofile;
  if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
    nofile.rlim_cur = nofile.rlim_max;
    setrlimit(RLIMIT_NOFILE, &nofile);
  }
  // Before the stores open (which can take a while): a SIGHUP then must not end crfsd.
  struct sigaction hup {};
  hup.sa_handler = OnHangup;
  sigaction(SIGHUP, &hup, nullptr);
  auto server = Server::Create(std::move(*config));
  if (!server.ok()) {
    Log(LogLevel::kError, "%s", server.status().message().c_str());
    return 1;
  }
  if (!port_file.empty()) {
    std::string tmp = port_file + ".tmp";
    std::ofstream(tmp) << (*server)->port() << "\n";
    if (std::rename(tmp.c_str(), port_file.c_str()) != 0) {
      Log(LogLevel::kError, "--port-file %s: %s", port_file.c_str(), std::strerror(errno));
      return 1;
    }
  }
  struct sigaction sa {};
  sa.sa_handler = OnSignal;
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
  crfs::Status s = (*server)->Run(&g_stop, &g_reload);
  if (!s.ok()) {
    Log(LogLevel::kError, "%s", s.message().c_str());
    // Forced: running transactions are not waited for (destructors would);
    // the kernel releases the storage lock with the process.
    if ((*server)->forced_stop()) _exit(1);
    return 1;
  }
  return 0;
}
