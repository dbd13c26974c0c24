// crfsctl's commands that ask the running crfsd, over its admin socket
// (server/admin_socket.h; docs/crfsd.md, "The admin socket"):
//
//   policy apply FILE   validate FILE, and if it is valid put it in force
//                       (crfsd writes it to its policy file and records
//                       the change, with who asked, in the audit log)
//   policy show         the policy in force: file, sha256, rules, text
//   policy reload       what SIGHUP does: read the policy file again
//   status              what crfsd serves: tenants, sessions, policy, audit
//
// Each takes --socket PATH, or --config CRFSD.JSON (the socket it names;
// default /etc/crfs/crfsd.json). crfsd's answer is one JSON object; --json
// prints it as it is.
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "server/admin_socket.h"
#include "server/config.h"
#include "tools/crfsctl/commands.h"

namespace crfs::ctl {
namespace {

using json = nlohmann::json;

constexpr size_t kMaxAnswer = 16u << 20;

// The socket the options name; "" (and a message) if they name none.
std::string SocketOf(const std::map<std::string, std::string>& opts) {
  if (auto s = opts.find("socket"); s != opts.end()) return s->second;
  const std::string config = opts.count("config") ? opts.at("config") : "/etc/crfs/crfsd.json";
  auto c = server::LoadConfig(config);
  if (!c.ok()) {
    std::fprintf(stderr, "crfsctl: %s (or name the socket: --socket PATH)\n", c.status().message().c_str());
    return "";
  }
  return c->admin_socket;
}

// One request, one answer. False (said why) if crfsd could not be asked.
bool Ask(const std::string& path, const json& request, json* answer) {
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(a.sun_path)) {
    std::fprintf(stderr, "crfsctl: admin socket path %s is too long\n", path.c_str());
    return false;
  }
  std::memcpy(a.sun_path, path.data(), path.size());
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0 || connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    std::fprintf(stderr, "crfsctl: cannot reach crfsd at %s: %s (is crfsd running? --socket or --config names it)\n",
                 path.c_str(), std::strerror(errno));
    if (fd >= 0) close(fd);
    return false;
  }
  (void)server::SendAll(fd, request.dump());  // a refusal is still read below
  shutdown(fd, SHUT_WR);
  std::string got;
  char buf[65536];
  ssize_t n;
  while ((n = read(fd, buf, sizeof(buf))) > 0 && got.size() < kMaxAnswer) got.append(buf, static_cast<size_t>(n));
  close(fd);
  *answer = json::parse(got, nullptr, false);
  if (answer->is_discarded() || !answer->is_object()) {
    std::fprintf(stderr, "crfsctl: crfsd at %s gave no answer%s\n", path.c_str(),
                 got.empty() ? " (it closed the connection)" : " it could read");
    return false;
  }
  return true;
}

std::string Str(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : "";
}

void PrintDiagnostics(const json& a, const std::string& file) {
  if (auto d = a.find("diagnostics"); d != a.end() && d->is_array()) {
    for (const json& x : *d) std::fprintf(stderr, "%s: %s\n", file.c_str(), Str(x, "text").c_str());
  }
}

int Run(const std::string& verb, const std::vector<std::string>& words, const std::map<std::string, std::string>& opts,
        bool raw) {
  json request;
  if (verb == "apply") {
    if (words.size() != 1) return 2;
    std::ifstream in(words[0]);
    if (!in) {
      std::fprintf(stderr, "crfsctl: %s: %s\n", words[0].c_str(), std::strerror(errno));
      return 1;
    }
    std::stringstream ss;
    ss << in.rdbuf();
    request = {{"cmd", "policy.apply"}, {"policy", ss.str()}};
  } else if (!words.empty()) {
    return 2;
  } else if (verb == "show") {
    request = {{"cmd", "policy.show"}};
  } else if (verb == "reload") {
    request = {{"cmd", "reload"}};
  } else if (verb == "status") {
    request = {{"cmd", "status"}};
  } else {
    return 2;
  }
  const std::string path = SocketOf(opts);
  if (path.empty()) return 1;
  json a;
  if (!Ask(path, request, &a)) return 1;
  if (raw) {
    std::printf("%s\n", a.dump(1).c_str());
    return a.value("ok", false) ? 0 : 1;
  }
  const bool ok = a.value("ok", false);
  if (!ok && (verb != "apply" && verb != "reload")) {
    std::fprintf(stderr, "crfsctl: crfsd refused: %s\n", Str(a, "error").c_str());
    return 1;
  }
  if (verb == "apply" || verb == "reload") {
    PrintDiagnostics(a, verb == "apply" ? words[0] : Str(a, "file"));
    if (!ok) {
      std::fprintf(stderr, "crfsctl: crfsd refused the policy: %s\n", Str(a, "error").c_str());
      return 1;
    }
    if (a.value("changed", false)) {
      std::printf("policy in force: sha256 %s (was %s), written to %s\n", Str(a, "new").c_str(), Str(a, "old").c_str(),
                  Str(a, "file").c_str());
    } else {
      std::printf("policy unchanged: sha256 %s\n", Str(a, "new").c_str());
    }
    return 0;
  }
  if (verb == "show") {
    std::fprintf(stderr, "# %s, sha256 %s, %llu rules\n", Str(a, "file").c_str(), Str(a, "sha256").c_str(),
                 static_cast<unsigned long long>(a.value("rules", 0ull)));
    std::fputs(Str(a, "text").c_str(), stdout);
    return 0;
  }
  // status
  std::printf("crfsd pid %lld on %s, storage %s, %llu sessions\n", static_cast<long long>(a.value("pid", 0ll)),
              Str(a, "listen").c_str(), Str(a, "storage_root").c_str(),
              static_cast<unsigned long long>(a.value("sessions", 0ull)));
  if (auto p = a.find("policy"); p != a.end() && p->is_object()) {
    std::printf("policy %s: sha256 %s, %llu rules\n", Str(*p, "file").c_str(), Str(*p, "sha256").c_str(),
                static_cast<unsigned long long>(p->value("rules", 0ull)));
  }
  if (auto l = a.find("audit"); l != a.end() && l->is_object()) {
    const std::string e = Str(*l, "errno");
    std::printf("audit log %s: %llu records%s%s\n", Str(*l, "dir").c_str(),
                static_cast<unsigned long long>(l->value("records", 0ull)),
                e.empty() ? "" : ", last write failed: ", e.c_str());
  }
  std::printf("%-20s %20s %20s %8s\n", "TENANT", "GENERATION", "DURABLE", "SESSIONS");
  if (auto t = a.find("tenants"); t != a.end() && t->is_array()) {
    for (const json& x : *t) {
      std::printf("%-20s %20llu %20llu %8llu\n", Str(x, "name").c_str(),
                  static_cast<unsigned long long>(x.value("generation", 0ull)),
                  static_cast<unsigned long long>(x.value("durable", 0ull)),
                  static_cast<unsigned long long>(x.value("sessions", 0ull)));
    }
  }
  return 0;
}

}  // namespace

int AdminCommand(const std::string& verb, Args args) {
  std::vector<std::string> words;
  std::map<std::string, std::string> opts;
  bool raw = false;
  for (size_t i = 0; i < args.size(); i++) {
    const std::string a(args[i]);
    if (a == "--json") {
      raw = true;
    } else if (a == "--socket" || a == "--config") {
      if (i + 1 >= args.size() || opts.count(a.substr(2)) || opts.size() == 1) {
        std::fprintf(stderr, "crfsctl: %s: one of --socket PATH or --config FILE, once\n", verb.c_str());
        return 2;
      }
      opts[a.substr(2)] = std::string(args[++i]);
    } else if (a.rfind("--", 0) == 0) {
      std::fprintf(stderr, "crfsctl: %s: unknown option %s\n", verb.c_str(), a.c_str());
      return 2;
    } else {
      words.push_back(a);
    }
  }
  const int r = Run(verb, words, opts, raw);
  if (r == 2) {
    std::fprintf(stderr, "usage: crfsctl %s%s [--socket PATH | --config CRFSD.JSON] [--json]\n",
                 verb == "status" ? "status" : ("policy " + verb).c_str(), verb == "apply" ? " FILE" : "");
  }
  return r;
}

int StatusCommand(Args args) { return AdminCommand("status", args); }

}  // namespace crfs::ctl
