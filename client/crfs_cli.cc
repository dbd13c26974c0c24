// crfs - the command-line client: a tenant's view of its files on crfsd.
#include <sys/stat.h>

#include <cerrno>
#include <cinttypes>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "client/connection.h"
#include "client/file_ops.h"
#include "proto/codec.h"
#include "proto/snoop.h"

namespace {

using crfs::Status;
using crfs::client::Connection;
namespace proto = crfs::proto;

constexpr char kUsage[] =
    "usage: crfs [--server HOST[:PORT]] [--ca FILE] [--cert FILE] [--key FILE] [--reconnect SECONDS] [--stats]\n"
    "            [--max-payload BYTES] COMMAND [ARGS]\n"
    "\n"
    "  --reconnect SECONDS  if the connection is lost during a change, reconnect for up to SECONDS\n"
    "                       and send the change again: the server applies it once (default 0: fail)\n"
    "  --max-payload BYTES  the largest frame to ask HELLO for, 131072..1048576 (default 1048576)\n"
    "\n"
    "commands:\n"
    "  ping              connect, say HELLO, ping\n"
    "  ls [PATH]         list a directory (default /)\n"
    "  stat PATH         show an object's inode\n"
    "  cat PATH          write a file's contents to standard output\n"
    "  get PATH FILE     copy a file to a local FILE (refuses to overwrite; - : standard output)\n"
    "  readlink PATH     print a symlink's target\n"
    "  find [PATH]       every object below PATH, one line each (like find -ls)\n"
    "  items PATH        the object's items as the server sends them (snoop form)\n"
    "  shell             run commands from standard input, one per line, in one session\n"
    "                    (words split at blanks; a word starting with '#' starts a comment;\n"
    "                    exit status 1 if any command failed)\n"
    "\n"
    "open files (useful in a shell: held until close or the session's end):\n"
    "  open PATH [r|w|rw]          hold an object open (default r); prints its objectid\n"
    "  close PATH                  stop holding it\n"
    "  write PATH OFFSET TEXT...   write the words of TEXT (joined by spaces) at OFFSET\n"
    "A PATH may be @OBJECTID: an object by number, also one whose last name is gone.\n"
    "\n"
    "changes (each one transaction, applied atomically):\n"
    "  mkdir PATH                  make a directory\n"
    "  put FILE PATH               copy a local FILE (- : standard input) to PATH (creates it with\n"
    "                              FILE's permission bits, or replaces its contents)\n"
    "  rm [-r] PATH                remove a file, symlink or empty directory; -r: a whole tree\n"
    "  mv FROM TO                  rename (replaces a file or empty directory at TO)\n"
    "  exch PATH PATH [PATH...]    each name takes the next one's object, the last the first's: two swap\n"
    "  ln [-s] TARGET PATH         hard link to TARGET; -s: symbolic link holding TARGET\n"
    "  chmod MODE PATH             set permission bits (octal)\n"
    "  chown UID[:GID] PATH        give an object to another tenant user (tenant ids; :GID: the group only)\n"
    "  truncate SIZE PATH          set a regular file's size (cuts, or extends with a hole)\n"
    "  touch PATH [SECONDS]        set access and modification times (now, or SECONDS since 1970)\n"
    "  setfattr -n NAME -v VALUE PATH | -x NAME PATH   set or remove a user.* xattr\n"
    "  sync                        wait until every change is on stable storage\n"
    "  import LOCALDIR PATH        copy a local tree to a new directory PATH, ~1000 objects per transaction\n"
    "\n"
    "Defaults come from CRFS_SERVER, CRFS_CA, CRFS_CERT and CRFS_KEY.\n";

int Fail(const Status& s) {
  std::fprintf(stderr, "crfs: %s\n", s.ToString().c_str());
  return 1;
}

const char* Env(const char* name, const char* dflt) {
  const char* v = std::getenv(name);
  return v && *v ? v : dflt;
}

const proto::InodeItem* FindInode(const std::vector<proto::Item>& items) {
  for (const auto& it : items) {
    if (it.key.type == CRFS_INODE_ITEM_KEY) return &std::get<proto::InodeItem>(it.body);
  }
  return nullptr;
}

char TypeChar(uint32_t mode) {
  switch (mode & S_IFMT) {
    case S_IFDIR: return 'd';
    case S_IFLNK: return 'l';
    case S_IFCHR: return 'c';
    case S_IFBLK: return 'b';
    case S_IFIFO: return 'p';
    case S_IFSOCK: return 's';
  }
  return '-';
}

std::string Perms(uint32_t mode) {
  std::string s = "rwxrwxrwx";
  for (int i = 0; i < 9; i++) {
    if (!(mode & (0400 >> i))) s[i] = '-';
  }
  return s;
}

// A path, or "@N": objectid N (an object held open after its last name
// went has no path).
crfs::Result<uint64_t> Resolve(Connection& c, const std::string& arg) {
  if (arg.size() > 1 && arg[0] == '@' && arg.find_first_not_of("0123456789", 1) == std::string::npos &&
      arg.size() <= 21) {
    errno = 0;
    const unsigned long long v = std::strtoull(arg.c_str() + 1, nullptr, 10);
    if (errno == 0 && v != 0) return static_cast<uint64_t>(v);
  }
  if (arg.empty() || arg[0] != '/') return Status(crfs::Code::kBadValue, "'" + arg + "': a path starts with / (or @N)");
  return c.Lookup(arg);
}

int Ls(Connection& c, const std::string& path) {
  auto ino = c.Lookup(path);
  if (!ino.ok()) return Fail(ino.status());
  auto items = c.ItemsOf(*ino, CRFS_DIR_INDEX_KEY, CRFS_DIR_INDEX_KEY);
  if (!items.ok()) return Fail(items.status());
  for (const auto& it : *items) {
    if (it.key.type != CRFS_DIR_INDEX_KEY) continue;
    const auto* entries = std::get_if<proto::DirEntries>(&it.body);
    if (!entries) continue;
    const auto& e = entries->entries[0];
    auto child = c.ItemsOf(e.location.objectid, CRFS_INODE_ITEM_KEY, CRFS_INODE_ITEM_KEY);
    if (!child.ok()) return Fail(child.status());
    const proto::InodeItem* in = FindInode(*child);
    if (!in) continue;
    std::printf("%c%s %3u %6u %6u %10" PRIu64 " %s\n", TypeChar(in->mode), Perms(in->mode).c_str(), in->nlink, in->uid,
                in->gid, in->size, e.name.c_str());
  }
  return 0;
}

int Stat(Connection& c, const std::string& path) {
  auto ino = Resolve(c, path);
  if (!ino.ok()) return Fail(ino.status());
  auto items = c.ItemsOf(*ino, CRFS_INODE_ITEM_KEY, CRFS_INODE_ITEM_KEY);
  if (!items.ok()) return Fail(items.status());
  const proto::InodeItem* in = FindInode(*items);
  if (!in) return Fail(Status(crfs::Code::kBadValue, "no inode item"));
  std::printf("  File: %s\n  Objectid: %" PRIu64 "  Type: %c  Mode: %04o  Links: %u\n  Uid: %u  Gid: %u  Size: %" PRIu64
              "  Bytes: %" PRIu64 "\n  Mtime: %" PRIu64 ".%09u  Ctime: %" PRIu64 ".%09u  Generation: %" PRIu64 "\n",
              path.c_str(), *ino, TypeChar(in->mode), in->mode & 07777, in->nlink, in->uid, in->gid, in->size,
              in->nbytes, in->mtime.sec, in->mtime.nsec, in->ctime.sec, in->ctime.nsec, in->generation);
  // Contents (xattrs, the data layout) need read permission: without it the
  // server says EACCES, and stat shows what it may.
  auto xattrs = c.ItemsOf(*ino, CRFS_XATTR_ITEM_KEY, CRFS_XATTR_ITEM_KEY);
  if (!xattrs.ok()) {
    std::printf("  Xattrs: not shown: %s\n", xattrs.status().message().c_str());
    return 0;
  }
  for (const auto& it : *xattrs) {
    if (auto* x = std::get_if<proto::Xattrs>(&it.body)) {
      for (const auto& e : x->entries) std::printf("  Xattr: %s (%zu bytes)\n", e.name.c_str(), e.value.size());
    }
  }
  // The layout: one query's worth (a huge sparse file has millions of runs).
  const proto::Key first{*ino, CRFS_EXTENT_DATA_KEY, 0}, last{*ino, CRFS_EXTENT_DATA_KEY, ~0ull};
  auto replies = c.Call(proto::ItemQuery{first, first, last, 1 << 20});
  if (!replies.ok()) return Fail(replies.status());
  if (Status s = Connection::Check(replies->back()); !s.ok()) return Fail(s);
  size_t shown = 0, total = 0;
  bool partial = false;
  for (const auto& f : *replies) {
    const auto* r = std::get_if<proto::ItemRange>(&f.msg);
    if (!r) continue;
    partial = r->max < last;
    for (const auto& it : r->items) {
      const auto* e = std::get_if<proto::ExtentData>(&it.body);
      if (!e || total++ >= 16) continue;
      static const char* kTypes[] = {"inline", "hole", "data"};
      std::printf("  Extent: %" PRIu64 "+%u %s\n", it.key.offset, e->len, e->type < 3 ? kTypes[e->type] : "?");
      shown++;
    }
  }
  if (total > shown || partial) std::printf("  Extent: ... (%zu shown of %zu%s)\n", shown, total, partial ? "+" : "");
  return 0;
}

// The items of every object in `oids`, pipelined; a reply that did not cover
// the whole object (over the server's per-query budget) is completed with
// ItemsOf.
// The items of each object, inode to directory entries. `errors`: if not
// null, an object whose items cannot all be read gets its error there (and
// what was read of it, its inode at least) instead of failing the batch.
crfs::Result<std::vector<std::vector<proto::Item>>> ItemsOfMany(Connection& c, const std::vector<uint64_t>& oids,
                                                                std::vector<Status>* errors = nullptr) {
  if (errors) errors->assign(oids.size(), Status::Ok());
  std::vector<proto::Message> reqs;
  for (uint64_t oid : oids) {
    const proto::Key k{oid, 0, 0};
    reqs.push_back(proto::ItemQuery{k, k, {oid, CRFS_DIR_INDEX_KEY, ~0ull}, 1 << 20});  // inode to dir entries
  }
  auto batch = c.CallMany(std::move(reqs));
  if (!batch.ok()) return batch.status();
  std::vector<std::vector<proto::Item>> out(oids.size());
  for (size_t i = 0; i < oids.size(); i++) {
    auto& replies = (*batch)[i];
    if (Status s = Connection::Check(replies.back()); !s.ok()) {
      if (!errors) return s;
      (*errors)[i] = s;
      continue;
    }
    bool complete = false;
    for (auto& f : replies) {
      if (auto* r = std::get_if<proto::ItemRange>(&f.msg)) {
        for (auto& it : r->items) out[i].push_back(std::move(it));
        complete = r->max == proto::Key{oids[i], CRFS_DIR_INDEX_KEY, ~0ull};
      }
    }
    if (!complete) {
      auto all = c.ItemsOf(oids[i], 0, CRFS_DIR_INDEX_KEY);
      if (!all.ok() && !errors) return all.status();
      if (!all.ok())
        (*errors)[i] = all.status();  // (keeps the items the first reply had)
      else
        out[i] = std::move(*all);
    }
  }
  return out;
}

int Items(Connection& c, const std::string& path) {
  auto ino = Resolve(c, path);
  if (!ino.ok()) return Fail(ino.status());
  const proto::Key k{*ino, 0, 0};
  auto replies = c.Call(proto::ItemQuery{k, k, {*ino, 0xff, ~0ull}, 1 << 20});
  if (!replies.ok()) return Fail(replies.status());
  for (const auto& f : *replies) {
    auto bytes = proto::EncodeFrame(f);
    if (!bytes.ok()) return Fail(bytes.status());
    std::fputs(proto::FormatFrame(f, static_cast<uint32_t>(bytes->size() - proto::kHeaderSize)).c_str(), stdout);
  }
  return Connection::Check(replies->back()).ok() ? 0 : Fail(Connection::Check(replies->back()));
}

// Breadth-first over the tree, a pipelined batch of objects at a time.
int Find(Connection& c, const std::string& path) {
  auto root = c.Lookup(path);
  if (!root.ok()) return Fail(root.status());
  struct Obj {
    uint64_t oid;
    std::string path;
  };
  std::vector<Obj> todo{{*root, path == "/" ? "" : path}};
  size_t objects = 0, failed = 0;
  while (!todo.empty()) {
    std::vector<Obj> batch(todo.end() - static_cast<long>(std::min<size_t>(todo.size(), 256)), todo.end());
    todo.resize(todo.size() - batch.size());
    std::vector<uint64_t> oids;
    for (const Obj& o : batch) oids.push_back(o.oid);
    std::vector<Status> errors;
    auto items = ItemsOfMany(c, oids, &errors);
    if (!items.ok()) return Fail(items.status());
    for (size_t i = 0; i < batch.size(); i++) {
      // As find(1): say what could not be read, go on, and fail at the end.
      if (!errors[i].ok()) {
        std::fprintf(stderr, "crfs: %s: %s\n", batch[i].path.empty() ? "/" : batch[i].path.c_str(),
                     errors[i].ToString().c_str());
        failed++;
      }
      const proto::InodeItem* in = FindInode((*items)[i]);
      if (!in) continue;
      objects++;
      std::printf("%8" PRIu64 " %c%s %3u %6u %6u %10" PRIu64 " %s\n", batch[i].oid, TypeChar(in->mode),
                  Perms(in->mode).c_str(), in->nlink, in->uid, in->gid, in->size,
                  batch[i].path.empty() ? "/" : batch[i].path.c_str());
      for (const auto& it : (*items)[i]) {
        const auto* entries = std::get_if<proto::DirEntries>(&it.body);
        if (it.key.type != CRFS_DIR_INDEX_KEY || !entries) continue;
        todo.push_back({entries->entries[0].location.objectid, batch[i].path + "/" + entries->entries[0].name});
      }
    }
  }
  std::fprintf(stderr, "crfs: %zu objects%s\n", objects,
               failed ? (", " + std::to_string(failed) + " of them not read in full").c_str() : "");
  return failed ? 1 : 0;
}

// Streams a file to `out`, pipelined, checksums verified per block.
int Copy(Connection& c, const std::string& path, std::FILE* out) {
  auto ino = Resolve(c, path);
  if (!ino.ok()) return Fail(ino.status());
  Status s = c.ReadStream(*ino, 0, ~0ull, [out](proto::Bytes b) {
    if (std::fwrite(b.data(), 1, b.size(), out) != b.size()) return Status(crfs::Code::kIo, "write failed");
    return Status::Ok();
  });
  return s.ok() ? 0 : Fail(s);
}

const std::set<std::string> kChanges = {"mkdir",    "put",   "rm",       "mv",   "exch",   "ln",   "chmod", "chown",
                                        "truncate", "touch", "setfattr", "sync", "import", "open", "close", "write"};
bool g_stats = false;  // --stats: frames and bytes the transactions took, on stderr

int Usage() {
  std::fputs(kUsage, stderr);
  return 2;
}

// Commands and how many words (with the command) each takes.
bool ArityOk(const std::vector<std::string>& a) {
  static const std::map<std::string, std::pair<size_t, size_t>> kArity = {
      {"ping", {1, 1}},     {"ls", {1, 2}},       {"find", {1, 2}},  {"get", {3, 3}},
      {"readlink", {2, 2}}, {"stat", {2, 2}},     {"cat", {2, 2}},   {"items", {2, 2}},
      {"mkdir", {2, 2}},    {"put", {3, 3}},      {"rm", {2, 3}},    {"mv", {3, 3}},
      {"exch", {3, 65}},    {"ln", {3, 4}},       {"chmod", {3, 3}}, {"setfattr", {4, 6}},
      {"chown", {3, 3}},    {"truncate", {3, 3}}, {"touch", {2, 3}}, {"sync", {1, 1}},
      {"import", {3, 3}},   {"open", {2, 3}},     {"close", {2, 2}}, {"write", {3, ~size_t{0}}},
      {"shell", {1, 1}},
  };
  auto arity = a.empty() ? kArity.end() : kArity.find(a[0]);
  if (arity == kArity.end()) {
    if (!a.empty()) std::fprintf(stderr, "crfs: unknown command '%s' (crfs --help lists them)\n", a[0].c_str());
    return false;
  }
  if (a.size() < arity->second.first || a.size() > arity->second.second) {
    std::fprintf(stderr, "crfs: %s: wrong number of arguments (crfs --help shows them)\n", a[0].c_str());
    return false;
  }
  return true;
}

int Change(Connection& c, crfs::client::FileOps& ops, const std::vector<std::string>& a) {
  const std::string& cmd = a[0];
  Status s;
  if (cmd == "mkdir") {
    s = ops.Mkdir(a[1]);
  } else if (cmd == "put") {
    const bool piped = a[1] == "-";
    std::FILE* in = piped ? stdin : std::fopen(a[1].c_str(), "rb");
    if (!in) return Fail(Status(crfs::Code::kIo, a[1] + ": " + std::strerror(errno)));
    struct stat st {};
    const uint32_t mode = !piped && fstat(fileno(in), &st) == 0 ? st.st_mode & 07777 : 0644;
    std::vector<uint8_t> data;
    uint8_t buf[1 << 16];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof(buf), in)) > 0) data.insert(data.end(), buf, buf + n);
    const bool bad = std::ferror(in);
    if (!piped) std::fclose(in);
    if (bad) return Fail(Status(crfs::Code::kIo, a[1] + ": read error"));
    s = ops.Put(a[2], data, mode);
  } else if (cmd == "rm") {
    if (a.size() == 3 && a[1] != "-r") return Usage();
    s = a.size() == 3 ? ops.RemoveTree(a[2]) : ops.Remove(a[1]);
  } else if (cmd == "mv") {
    s = ops.Rename(a[1], a[2]);
  } else if (cmd == "exch") {
    s = ops.Exchange(std::vector<std::string>(a.begin() + 1, a.end()));
  } else if (cmd == "ln") {
    if (a.size() == 4 && a[1] != "-s") return Usage();
    s = a.size() == 4 ? ops.Symlink(a[2], a[3]) : ops.Link(a[1], a[2]);
  } else if (cmd == "chmod") {
    char* end = nullptr;
    const unsigned long mode = std::strtoul(a[1].c_str(), &end, 8);
    if (a[1].empty() || *end || mode > 07777) return Usage();
    s = ops.Chmod(a[2], static_cast<uint32_t>(mode));
  } else if (cmd == "chown") {
    // UID[:GID] or :GID, tenant ids.
    crfs::client::FileOps::Attrs at;
    const std::string& spec = a[1];
    const size_t colon = spec.find(':');
    auto id = [](const std::string& w, std::optional<uint32_t>* out) {
      if (w.empty()) return true;
      char* end = nullptr;
      errno = 0;
      const unsigned long v = std::strtoul(w.c_str(), &end, 10);
      if (*end || errno || v > 0xffffffffUL || w[0] == '-') return false;
      *out = static_cast<uint32_t>(v);
      return true;
    };
    if (!id(spec.substr(0, colon), &at.uid) || (colon != std::string::npos && !id(spec.substr(colon + 1), &at.gid)) ||
        (!at.uid && !at.gid)) {
      return Usage();
    }
    s = ops.SetAttrs(a[2], at);
  } else if (cmd == "truncate") {
    char* end = nullptr;
    errno = 0;
    const unsigned long long size = std::strtoull(a[1].c_str(), &end, 10);
    if (a[1].empty() || *end || errno || a[1][0] == '-') return Usage();
    crfs::client::FileOps::Attrs at;
    at.size = size;
    s = ops.SetAttrs(a[2], at);
  } else if (cmd == "touch") {
    // touch PATH [SECONDS]: both times to now, or to SECONDS since the epoch.
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    proto::Timespec t{static_cast<uint64_t>(now.tv_sec), static_cast<uint32_t>(now.tv_nsec)};
    if (a.size() == 3) {
      char* end = nullptr;
      errno = 0;
      const unsigned long long sec = std::strtoull(a[2].c_str(), &end, 10);
      if (a[2].empty() || *end || errno || a[2][0] == '-') return Usage();
      t = {sec, 0};
    }
    crfs::client::FileOps::Attrs at;
    at.atime = t;
    at.mtime = t;
    s = ops.SetAttrs(a[1], at);
  } else if (cmd == "setfattr") {
    if (a.size() == 6 && a[1] == "-n" && a[3] == "-v") {
      s = ops.SetXattr(a[5], a[2], a[4]);
    } else if (a.size() == 4 && a[1] == "-x") {
      s = ops.RemoveXattr(a[3], a[2]);
    } else {
      return Usage();
    }
  } else if (cmd == "import") {
    uint64_t objects = 0, transactions = 0;
    s = ops.Import(a[1], a[2], 1000, &objects, &transactions);
    if (s.ok()) std::printf("imported %" PRIu64 " objects in %" PRIu64 " transactions\n", objects, transactions);
  } else if (cmd == "sync") {
    auto r = c.Call(proto::Sync{});
    if (!r.ok()) return Fail(r.status());
    s = Connection::Check(r->back());
  } else if (cmd == "open" || cmd == "close") {
    uint32_t flags = CRFS_OPEN_READ;
    if (a.size() == 3) {
      static const std::map<std::string, uint32_t> kModes = {
          {"r", CRFS_OPEN_READ}, {"w", CRFS_OPEN_WRITE}, {"rw", CRFS_OPEN_READ | CRFS_OPEN_WRITE}};
      auto m = kModes.find(a[2]);
      if (m == kModes.end()) return Usage();
      flags = m->second;
    }
    auto ino = Resolve(c, a[1]);
    if (!ino.ok()) return Fail(ino.status());
    auto r = cmd == "open" ? c.Call(proto::Open{*ino, flags}) : c.Call(proto::Close{*ino});
    if (!r.ok()) return Fail(r.status());
    s = Connection::Check(r->back());
    if (s.ok() && cmd == "open") std::printf("%s: objectid %" PRIu64 " open\n", a[1].c_str(), *ino);
  } else if (cmd == "write") {
    char* end = nullptr;
    errno = 0;
    const unsigned long long offset = std::strtoull(a[2].c_str(), &end, 10);
    if (a[2].empty() || *end || errno != 0 || a[2][0] == '-') return Usage();
    std::string text;
    for (size_t i = 3; i < a.size(); i++) text += (i > 3 ? " " : "") + a[i];
    auto ino = Resolve(c, a[1]);
    if (!ino.ok()) return Fail(ino.status());
    s = ops.WriteAt(*ino, offset, std::vector<uint8_t>(text.begin(), text.end()));
  }
  if (g_stats) {
    std::fprintf(stderr,
                 "crfs: sent %" PRIu64 " frames (%" PRIu64 " bytes) to the server; transactions %" PRIu64
                 " frames (%" PRIu64 " bytes)\n",
                 c.frames_sent(), c.bytes_sent(), ops.frames_sent(), ops.bytes_sent());
  }
  return s.ok() ? 0 : Fail(s);
}

// One command on an open session. `ops` carries the generation the session
// has seen from one change to the next.
int Run(Connection& c, crfs::client::FileOps& ops, const std::vector<std::string>& args, const std::string& server) {
  const std::string& cmd = args[0];
  if (cmd == "ping") {
    auto r = c.Call(proto::Ping{});
    if (!r.ok()) return Fail(r.status());
    if (Status s = Connection::Check(r->back()); !s.ok()) return Fail(s);
    std::printf("crfsd at %s: protocol %u, session %016" PRIx64 ", root %" PRIu64 ", generation %" PRIu64 "\n",
                server.c_str(), c.hello().version, c.hello().session_id, c.hello().root_objectid, c.hello().generation);
    return 0;
  }
  if (kChanges.count(cmd)) return Change(c, ops, args);
  if (cmd == "ls") return Ls(c, args.size() > 1 ? args[1] : "/");
  if (cmd == "find") return Find(c, args.size() > 1 ? args[1] : "/");
  if (cmd == "items") return Items(c, args[1]);
  if (cmd == "stat") return Stat(c, args[1]);
  if (cmd == "cat" || (cmd == "get" && args[2] == "-")) return Copy(c, args[1], stdout);
  if (cmd == "readlink") {
    auto obj = c.Lookup(args[1]);
    if (!obj.ok()) return Fail(obj.status());
    auto target = ops.ReadLink(*obj);
    if (!target.ok()) return Fail(target.status());
    std::printf("%s\n", target->c_str());
    return 0;
  }
  // get: never overwrite a local file.
  std::FILE* out = std::fopen(args[2].c_str(), "wbx");
  if (!out) return Fail(Status(crfs::Code::kIo, args[2] + ": " + std::strerror(errno)));
  int rc = Copy(c, args[1], out);
  if (std::fclose(out) != 0 && rc == 0) rc = Fail(Status(crfs::Code::kIo, args[2] + ": close failed"));
  if (rc != 0) std::remove(args[2].c_str());
  return rc;
}

// `crfs shell`: commands from standard input, one session for all of them,
// so objects held open stay held from one line to the next.
int Shell(Connection& c, crfs::client::FileOps& ops, const std::string& server) {
  char* line = nullptr;
  size_t cap = 0;
  int failed = 0;
  unsigned long number = 0;
  while (getline(&line, &cap, stdin) >= 0) {
    number++;
    std::vector<std::string> words;
    std::string word;
    for (const char* p = line; *p && !(*p == '#' && word.empty()); p++) {  // '#' starting a word: a comment
      if (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') {
        if (!word.empty()) words.push_back(std::move(word));
        word.clear();
      } else {
        word += *p;
      }
    }
    if (!word.empty()) words.push_back(std::move(word));
    if (words.empty()) continue;
    int rc = 2;
    if (!ArityOk(words) || words[0] == "shell") {
      std::fprintf(stderr, "crfs: line %lu: unknown command or wrong number of words: %s", number, line);
    } else {
      rc = Run(c, ops, words, server);
      if (rc != 0) std::fprintf(stderr, "crfs: line %lu failed: %s", number, line);
    }
    std::fflush(stdout);
    if (rc != 0) failed = 1;
  }
  std::free(line);
  return failed;
}

}  // namespace

int main(int argc, char** argv) {
  // A server that went away is an error on the connection, not a signal.
  signal(SIGPIPE, SIG_IGN);
  crfs::client::ConnectOptions o;
  std::string server = Env("CRFS_SERVER", "127.0.0.1:7420");
  o.ca = Env("CRFS_CA", "");
  o.cert = Env("CRFS_CERT", "");
  o.key = Env("CRFS_KEY", "");
  std::vector<std::string> args;
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    auto value = [&](std::string* out) {
      if (i + 1 >= argc) return false;
      *out = argv[++i];
      return true;
    };
    if (a == "--help" || a == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    }
    if (a == "--stats") {
      g_stats = true;
      continue;
    }
    if ((a == "--server" && value(&server)) || (a == "--ca" && value(&o.ca)) || (a == "--cert" && value(&o.cert)) ||
        (a == "--key" && value(&o.key))) {
      continue;
    }
    if (std::string secs; a == "--reconnect" && value(&secs)) {
      if (secs.empty() || secs.size() > 4 || secs.find_first_not_of("0123456789") != std::string::npos) {
        std::fprintf(stderr, "crfs: --reconnect takes whole seconds, 0..9999\n");
        return 2;
      }
      o.reconnect_ms = std::stoi(secs) * 1000;
      continue;
    }
    if (std::string bytes; a == "--max-payload" && value(&bytes)) {
      const bool digits =
          !bytes.empty() && bytes.size() <= 7 && bytes.find_first_not_of("0123456789") == std::string::npos;
      const long n = digits ? std::stol(bytes) : 0;
      if (n < CRFS_MIN_PAYLOAD || n > CRFS_MAX_PAYLOAD) {
        std::fprintf(stderr, "crfs: --max-payload takes bytes, %d..%d\n", CRFS_MIN_PAYLOAD, CRFS_MAX_PAYLOAD);
        return 2;
      }
      o.max_payload = static_cast<uint32_t>(n);
      continue;
    }
    if (a.rfind("--", 0) == 0) {
      std::fprintf(stderr, "crfs: unknown or incomplete option %s\n%s", a.c_str(), kUsage);
      return 2;
    }
    args.push_back(a);
  }
  if (args.empty()) return Usage();
  if (!ArityOk(args)) return 2;  // it said which word
  // Where and as whom: each missing piece named (flags or CRFS_* variables).
  for (auto [value, what] : {std::pair{&o.ca, "--ca FILE (or CRFS_CA)"},
                             {&o.cert, "--cert FILE (or CRFS_CERT)"},
                             {&o.key, "--key FILE (or CRFS_KEY)"}}) {
    if (value->empty()) {
      std::fprintf(stderr, "crfs: missing %s\n", what);
      return 2;
    }
  }
  if (!crfs::client::ParseServerAddress(server, &o)) {
    std::fprintf(stderr, "crfs: --server '%s' must be HOST[:PORT] (or set CRFS_SERVER)\n", server.c_str());
    return 2;
  }
  auto conn = Connection::Open(o);
  if (!conn.ok()) return Fail(conn.status());
  crfs::client::FileOps ops(conn->get());
  if (args[0] == "shell") return Shell(**conn, ops, server);
  return Run(**conn, ops, args, server);
}
