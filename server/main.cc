// crfsd - the crfs server. See docs/crfsd.md.
#include <signal.h>
#include <sys/resource.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>

#include "server/config.h"
#include "server/log.h"
#include "server/server.h"

namespace {

volatile sig_atomic_t g_stop = 0;
void OnSignal(int) { g_stop = 1; }

constexpr char kUsage[] =
    "usage: crfsd --config FILE [--check-config] [--port-file FILE]\n"
    "\n"
    "  --config FILE      the configuration (JSON; see docs/crfsd.md)\n"
    "  --check-config     load the configuration, TLS material and tenants, then exit\n"
    "  --port-file FILE   once listening, write the bound port to FILE (for port 0)\n"
    "  --help             this text\n"
    "\n"
    "crfsd runs in the foreground and logs to standard error.\n";

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
  signal(SIGPIPE, SIG_IGN);
  // One fd per session: take the whole hard limit for them.
  struct rlimit nofile;
  if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
    nofile.rlim_cur = nofile.rlim_max;
    setrlimit(RLIMIT_NOFILE, &nofile);
  }
  auto server = Server::Create(std::move(*config));
  if (!server.ok()) {
    Log(LogLevel::kError, "%s", server.status().message().c_str());
    return 1;
  }
  if (check_only) {
    Log(LogLevel::kInfo, "configuration %s is valid", config_path.c_str());
    return 0;
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
  crfs::Status s = (*server)->Run(&g_stop);
  if (!s.ok()) {
    Log(LogLevel::kError, "%s", s.message().c_str());
    return 1;
  }
  return 0;
}
