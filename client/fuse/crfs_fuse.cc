// crfs-fuse: mounts a tenant's tree with the tenant's client certificate.
//
//   crfs-fuse SERVER[:PORT] MOUNTPOINT -o cert=FILE,key=FILE,ca=FILE[,OPTION...] [-f] [-d] [-s]
//
// Connects (TLS 1.3, HELLO) before it mounts, so a wrong certificate, an
// unreachable server or a refused tenant is one line on stderr and exit 1,
// and nothing is mounted. Then it mounts with libfuse3's low-level API,
// goes to the background (unless -f) and serves with several threads (one
// with -s) until unmounted (fusermount3 -u, umount) or signalled.
#include <signal.h>

#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

#include "client/connection.h"
#include "client/fuse/fuse_fs.h"

namespace {

constexpr char kUsage[] =
    "usage: crfs-fuse SERVER[:PORT] MOUNTPOINT -o cert=FILE,key=FILE,ca=FILE[,OPTION...] [-f] [-d] [-s]\n"
    "\n"
    "crfs options (-o):\n"
    "  cert=FILE           this client's certificate (PEM)\n"
    "  key=FILE            its private key (PEM)\n"
    "  ca=FILE             the CA that issued crfsd's certificate (PEM)\n"
    "  reconnect=SECONDS   how long a lost connection is retried (default 60; 0: never), 0..3600\n"
    "  timeout=SECONDS     per send and receive on the connection (default 30), 1..3600\n"
    "  entry_timeout=SECS  how long the kernel keeps a name (default 1), 0..3600\n"
    "  attr_timeout=SECS   how long it keeps attributes (default 1), 0..3600\n"
    "  write_delay=SECS    how long contiguous writes may be gathered before they are sent\n"
    "                      (default 0.5; 0: each write is a transaction), 0..60\n"
    "FUSE options (-o) such as allow_other, default_permissions, ro, max_read=N are passed to\n"
    "libfuse; an unknown option fails the mount.\n"
    "  -f  stay in the foreground   -d  debug output (implies -f)   -s  one thread\n";

struct Settings {
  char* cert = nullptr;
  char* key = nullptr;
  char* ca = nullptr;
  char* reconnect = nullptr;
  char* timeout = nullptr;
  char* entry_timeout = nullptr;
  char* attr_timeout = nullptr;
  char* write_delay = nullptr;
  std::string server;
  int nonopts = 0;
  bool help = false;
};

#define CRFS_OPT(t, p) \
  { t, offsetof(Settings, p), 0 }
const struct fuse_opt kOptions[] = {
    CRFS_OPT("cert=%s", cert),
    CRFS_OPT("key=%s", key),
    CRFS_OPT("ca=%s", ca),
    CRFS_OPT("reconnect=%s", reconnect),
    CRFS_OPT("timeout=%s", timeout),
    CRFS_OPT("entry_timeout=%s", entry_timeout),
    CRFS_OPT("attr_timeout=%s", attr_timeout),
    CRFS_OPT("write_delay=%s", write_delay),
    FUSE_OPT_KEY("-h", 1),
    FUSE_OPT_KEY("--help", 1),
    FUSE_OPT_END,
};

int OnArg(void* data, const char* arg, int key, struct fuse_args*) {
  auto* s = static_cast<Settings*>(data);
  if (key == 1) {
    s->help = true;
    return 0;
  }
  if (key == FUSE_OPT_KEY_NONOPT && s->nonopts++ == 0) {
    s->server = arg;  // the first: SERVER[:PORT]; the second (the mount point) goes on to libfuse
    return 0;
  }
  return 1;
}

// A number of seconds in [lo, hi] (decimals allowed when `fraction`).
bool Seconds(const char* name, const char* text, double lo, double hi, bool fraction, double* out) {
  if (text == nullptr) return true;
  char* end = nullptr;
  errno = 0;
  const double v = std::strtod(text, &end);
  if (errno != 0 || end == text || *end != '\0' || v < lo || v > hi || (!fraction && v != static_cast<int>(v))) {
    std::fprintf(stderr, "crfs-fuse: -o %s=%s: must be %s seconds from %g to %g\n", name, text,
                 fraction ? "a number of" : "whole", lo, hi);
    return false;
  }
  *out = v;
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  signal(SIGPIPE, SIG_IGN);  // a server that went away is an error on the connection
  struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
  Settings s;
  struct fuse_cmdline_opts cmd {};
  // What libfuse allocated, freed on every way out.
  struct Freed {
    fuse_args* args;
    Settings* s;
    fuse_cmdline_opts* cmd;
    ~Freed() {
      for (char* p : {s->cert, s->key, s->ca, s->reconnect, s->timeout, s->entry_timeout, s->attr_timeout,
                      s->write_delay, cmd->mountpoint}) {
        free(p);
      }
      fuse_opt_free_args(args);
    }
  } freed{&args, &s, &cmd};
  if (fuse_opt_parse(&args, &s, kOptions, OnArg) != 0) return 2;
  if (s.help) {
    std::fputs(kUsage, stdout);
    return 0;
  }
  if (s.server.empty() || s.nonopts != 2) {
    std::fprintf(stderr, "crfs-fuse: %s\n%s",
                 s.nonopts < 2 ? "needs SERVER[:PORT] and MOUNTPOINT" : "one SERVER and one MOUNTPOINT only", kUsage);
    return 2;
  }
  crfs::client::ConnectOptions o;
  if (!crfs::client::ParseServerAddress(s.server, &o)) {
    std::fprintf(stderr, "crfs-fuse: '%s' is not HOST[:PORT]\n", s.server.c_str());
    return 2;
  }
  for (auto [value, what] : {std::pair{s.cert, "cert"}, {s.key, "key"}, {s.ca, "ca"}}) {
    if (value == nullptr || *value == '\0') {
      std::fprintf(stderr, "crfs-fuse: missing -o %s=FILE\n", what);
      return 2;
    }
  }
  o.cert = s.cert;
  o.key = s.key;
  o.ca = s.ca;
  double reconnect = 60, timeout = 30;
  crfs::client::FuseFs::Options fo;
  if (!Seconds("reconnect", s.reconnect, 0, 3600, false, &reconnect) ||
      !Seconds("timeout", s.timeout, 1, 3600, false, &timeout) ||
      !Seconds("entry_timeout", s.entry_timeout, 0, 3600, true, &fo.entry_timeout) ||
      !Seconds("attr_timeout", s.attr_timeout, 0, 3600, true, &fo.attr_timeout) ||
      !Seconds("write_delay", s.write_delay, 0, 60, true, &fo.write_delay)) {
    return 2;
  }
  o.reconnect_ms = static_cast<int>(reconnect * 1000);
  o.timeout_ms = static_cast<int>(timeout * 1000);

  if (fuse_parse_cmdline(&args, &cmd) != 0) return 2;
  if (cmd.mountpoint == nullptr) {
    std::fprintf(stderr, "crfs-fuse: needs a MOUNTPOINT\n");
    return 2;
  }
  const std::string fsname = "-ofsname=crfs:" + s.server;
  fuse_opt_add_arg(&args, fsname.c_str());
  fuse_opt_add_arg(&args, "-osubtype=crfs");

  // The session first: its errors are the user's to fix, before anything is mounted.
  auto conn = crfs::client::Connection::Open(o);
  if (!conn.ok()) {
    std::fprintf(stderr, "crfs-fuse: %s: %s\n", s.server.c_str(), conn.status().message().c_str());
    return 1;
  }
  auto fs = std::make_unique<crfs::client::FuseFs>(std::move(*conn), fo);
  struct fuse_session* se =
      fuse_session_new(&args, crfs::client::FuseFs::Ops(), sizeof(struct fuse_lowlevel_ops), fs.get());
  if (se == nullptr) return 2;  // libfuse said why (an unknown option, say)
  int rc = 1;
  if (fuse_set_signal_handlers(se) == 0) {
    if (fuse_session_mount(se, cmd.mountpoint) == 0) {
      fuse_daemonize(cmd.foreground);
      if (cmd.singlethread) {
        rc = fuse_session_loop(se);
      } else {
        struct fuse_loop_config* cfg = fuse_loop_cfg_create();
        fuse_loop_cfg_set_clone_fd(cfg, cmd.clone_fd);
        fuse_loop_cfg_set_max_threads(cfg, cmd.max_threads);
        fuse_loop_cfg_set_idle_threads(cfg, cmd.max_idle_threads);
        rc = fuse_session_loop_mt(se, cfg);
        fuse_loop_cfg_destroy(cfg);
      }
      fuse_session_unmount(se);
    }
    fuse_remove_signal_handlers(se);
  }
  fuse_session_destroy(se);
  return rc == 0 ? 0 : 1;
}
