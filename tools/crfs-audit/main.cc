// crfs-audit - the auditor's tool for crfsd's audit log (docs/audit.md).
//
// It only reads the log (keygen writes a new key file and nothing else);
// every check re-hashes what is stored and never trusts a stored hash.
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "audit/export.h"
#include "audit/log.h"
#include "audit/merkle.h"
#include "audit/note.h"

namespace {

using namespace crfs::audit;
using json = nlohmann::json;

constexpr char kUsage[] =
    "usage: crfs-audit COMMAND [ARGS]\n"
    "\n"
    "  keygen KEYFILE --origin NAME     write a new Ed25519 signing key (mode 0600) for crfsd\n"
    "                                   and print its verifier key\n"
    "  vkey KEYFILE --origin NAME       print the verifier key of a signing key\n"
    "  verify DIR --key VKEY [--checkpoint FILE] [--allow-unsigned-tail]\n"
    "                                   re-hash every record, check every checkpoint;\n"
    "                                   with a checkpoint you kept, that the log still extends it\n"
    "  checkpoint DIR --key VKEY        print the latest signed checkpoint (verified)\n"
    "  prove DIR INDEX --key VKEY       an inclusion proof of record INDEX in the latest\n"
    "                                   checkpoint (c2sp.org/tlog-proof@v1)\n"
    "  consistency DIR OLD --key VKEY   prove that the log only grew since checkpoint file OLD\n"
    "  query DIR --key VKEY [--tenant T] [--client ID] [--event EV] [--decision allow|deny]\n"
    "        [--path PREFIX] [--rule ID] [--since RFC3339] [--until RFC3339] [--format FORMAT]\n"
    "                                   the records that match, after verifying the log;\n"
    "                                   FORMAT json (the records), table, ecs or ocsf (file\n"
    "                                   events in Elastic Common Schema or OCSF 1001 fields)\n"
    "  follow DIR --key VKEY [the filters and --format of query] [--from INDEX]\n"
    "                                   verify the log, then print records as crfsd appends\n"
    "                                   them (from INDEX, default: the end), each checked\n"
    "                                   against the chain and every new checkpoint; exit 1\n"
    "                                   at the first that does not verify\n"
    "\n"
    "VKEY is the verifier key (NAME+KEYID+KEY) or a file holding it.\n"
    "Exit status: 0 ok, 1 the log or a proof does not verify (or an error), 2 usage.\n";

int Usage() {
  std::fputs(kUsage, stderr);
  return 2;
}

bool ReadFile(const std::string& path, std::string* out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  std::ostringstream ss;
  ss << in.rdbuf();
  *out = ss.str();
  return true;
}

std::optional<Verifier> LoadVerifier(const std::string& arg) {
  std::string text = arg;
  struct stat st;
  if (stat(arg.c_str(), &st) == 0 && S_ISREG(st.st_mode)) {
    if (!ReadFile(arg, &text)) return std::nullopt;
    while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  }
  auto v = Verifier::Parse(text);
  if (!v.ok()) {
    std::fprintf(stderr, "crfs-audit: %s\n", v.status().message().c_str());
    return std::nullopt;
  }
  return *v;
}

int Fail(const std::string& what) {
  std::fprintf(stderr, "crfs-audit: %s\n", what.c_str());
  return 1;
}

int Keygen(const std::vector<std::string>& words, std::map<std::string, std::string>& opts, bool generate) {
  if (words.size() != 1 || !opts.count("origin")) return Usage();
  if (generate) {
    if (crfs::Status s = Signer::Generate(words[0]); !s.ok()) return Fail(s.message());
  }
  auto s = Signer::Load(words[0], opts["origin"]);
  if (!s.ok()) return Fail(s.status().message());
  std::printf("%s\n", s->verifier().vkey().c_str());
  return 0;
}

int VerifyCmd(const std::vector<std::string>& words, std::map<std::string, std::string>& opts, bool allow_tail) {
  if (words.size() != 1 || !opts.count("key")) return Usage();
  auto v = LoadVerifier(opts["key"]);
  if (!v) return 1;
  std::string trusted;
  if (opts.count("checkpoint") && !ReadFile(opts["checkpoint"], &trusted)) {
    return Fail(opts["checkpoint"] + ": " + std::strerror(errno));
  }
  VerifyResult r = Verify(words[0], *v, opts.count("checkpoint") ? &trusted : nullptr);
  size_t errors = 0;
  for (const Finding& f : r.findings) {
    if (allow_tail && f.unsigned_tail) continue;
    std::fprintf(stderr, "%s: %s\n", f.error ? "FAIL" : "warning", f.text.c_str());
    errors += f.error;
  }
  if (errors) {
    std::printf("%s: does not verify: %zu problems (%lu records, %lu checkpoints)\n", words[0].c_str(), errors,
                static_cast<unsigned long>(r.records), static_cast<unsigned long>(r.checkpoints));
    return 1;
  }
  std::printf("%s: verified: %lu records, %lu checkpoints, latest size %lu root %s\n", words[0].c_str(),
              static_cast<unsigned long>(r.records), static_cast<unsigned long>(r.checkpoints),
              static_cast<unsigned long>(r.latest ? r.latest->size : 0),
              r.latest ? Base64Of(r.latest->root).c_str() : "-");
  return 0;
}

int CheckpointCmd(const std::vector<std::string>& words, std::map<std::string, std::string>& opts) {
  if (words.size() != 1 || !opts.count("key")) return Usage();
  auto v = LoadVerifier(opts["key"]);
  if (!v) return 1;
  auto c = LatestCheckpoint(words[0], *v);
  if (!c.ok()) return Fail(c.status().message());
  std::fputs(c->first.c_str(), stdout);
  return 0;
}

int Prove(const std::vector<std::string>& words, std::map<std::string, std::string>& opts) {
  if (words.size() != 2 || !opts.count("key")) return Usage();
  auto v = LoadVerifier(opts["key"]);
  if (!v) return 1;
  char* end = nullptr;
  const unsigned long long index = std::strtoull(words[1].c_str(), &end, 10);
  if (words[1].empty() || *end || words[1][0] == '-') return Usage();
  auto c = LatestCheckpoint(words[0], *v);
  if (!c.ok()) return Fail(c.status().message());
  std::vector<std::string> lines;
  std::vector<Hash> leaves;
  if (crfs::Status s = ReadRecords(words[0], &lines, &leaves); !s.ok()) return Fail(s.message());
  if (index >= c->second.size) {
    return Fail("record " + words[1] + " is not covered by the latest checkpoint (size " +
                std::to_string(c->second.size) + ")");
  }
  std::span<const Hash> tree = std::span<const Hash>(leaves).subspan(0, c->second.size);
  if (RootOf(tree) != c->second.root) return Fail("the log does not match its latest checkpoint: run verify");
  std::vector<Hash> proof = InclusionProof(tree, index);
  if (!VerifyInclusion(index, c->second.size, leaves[index], proof, c->second.root)) return Fail("internal: bad proof");
  std::printf("c2sp.org/tlog-proof@v1\nindex %llu\n", index);
  for (const Hash& h : proof) std::printf("%s\n", Base64Of(h).c_str());
  std::printf("\n%s", c->first.c_str());
  return 0;
}

int Consistency(const std::vector<std::string>& words, std::map<std::string, std::string>& opts) {
  if (words.size() != 2 || !opts.count("key")) return Usage();
  auto v = LoadVerifier(opts["key"]);
  if (!v) return 1;
  std::string old_note;
  if (!ReadFile(words[1], &old_note)) return Fail(words[1] + ": " + std::strerror(errno));
  auto old_text = v->Open(old_note);
  if (!old_text.ok()) return Fail(words[1] + ": " + old_text.status().message());
  auto old_c = Checkpoint::Parse(*old_text);
  if (!old_c.ok()) return Fail(words[1] + ": " + old_c.status().message());
  auto c = LatestCheckpoint(words[0], *v);
  if (!c.ok()) return Fail(c.status().message());
  std::vector<std::string> lines;
  std::vector<Hash> leaves;
  if (crfs::Status s = ReadRecords(words[0], &lines, &leaves); !s.ok()) return Fail(s.message());
  const Checkpoint& now = c->second;
  if (now.size > leaves.size() || RootOf(std::span<const Hash>(leaves).subspan(0, now.size)) != now.root) {
    return Fail("the log does not match its latest checkpoint: run verify");
  }
  if (old_c->size > now.size) {
    return Fail("NOT CONSISTENT: your checkpoint has " + std::to_string(old_c->size) + " records, the latest only " +
                std::to_string(now.size) + ": the log was cut back");
  }
  std::vector<Hash> proof = ConsistencyProof(std::span<const Hash>(leaves).subspan(0, now.size), old_c->size);
  if (!VerifyConsistency(old_c->size, now.size, old_c->root, now.root, proof)) {
    return Fail("NOT CONSISTENT: the log's first " + std::to_string(old_c->size) +
                " records are not those of your checkpoint: history was rewritten");
  }
  std::printf("consistent: size %lu -> %lu\n", static_cast<unsigned long>(old_c->size),
              static_cast<unsigned long>(now.size));
  for (const Hash& h : proof) std::printf("%s\n", Base64Of(h).c_str());
  return 0;
}

// The operations a record names: a transaction's "ops", a read's "op".
std::vector<json> Ops(const json& j) {
  std::vector<json> out;
  if (j.contains("ops") && j["ops"].is_array()) {
    for (const json& op : j["ops"]) {
      if (op.is_object()) out.push_back(op);
    }
  }
  if (j.contains("op") && j["op"].is_object()) out.push_back(j["op"]);
  return out;
}

std::string Str(const json& j, const char* k) {
  return j.contains(k) && j[k].is_string() ? j[k].get<std::string>() : "";
}

// Does record `j` pass query's filters?
bool Matches(const json& j, std::map<std::string, std::string>& opts) {
  auto want = [&](const char* opt, const std::string& have) { return !opts.count(opt) || opts[opt] == have; };
  if (!want("tenant", Str(j, "tenant")) || !want("client", Str(j, "client")) || !want("event", Str(j, "ev")) ||
      !want("decision", Str(j, "decision")) || !want("rule", Str(j, "rule"))) {
    return false;
  }
  if (opts.count("since") && Str(j, "t") < opts["since"]) return false;
  if (opts.count("until") && Str(j, "t") > opts["until"]) return false;
  if (opts.count("path")) {
    bool hit = false;
    for (const json& op : Ops(j)) {
      for (const char* k : {"path", "path2"}) {
        const std::string p = Str(op, k);
        hit = hit || p.compare(0, opts["path"].size(), opts["path"]) == 0;
      }
    }
    if (!hit) return false;
  }
  return true;
}

void PrintTableHeader() {
  std::printf("%6s %-24s %-8s %-6s %-7s %-24s %s\n", "i", "t", "tenant", "decis.", "errno", "rule (or check)",
              "event and operations");
}

// One record in `format` (json, table, ecs, ocsf); line is its stored text.
void Print(const std::string& format, const std::string& line, const json& j) {
  if (format == "json") {
    std::printf("%s\n", line.c_str());
  } else if (format == "ecs" || format == "ocsf") {
    for (const json& e : format == "ecs" ? ToEcs(j) : ToOcsf(j)) {
      std::printf("%s\n", e.dump(-1, ' ', false, json::error_handler_t::replace).c_str());
    }
  } else {
    std::string what = Str(j, "ev");
    for (const json& op : Ops(j)) {
      what += " " + Str(op, "op") + " " + Str(op, "path");
      if (op.contains("path2")) what += " -> " + Str(op, "path2");
    }
    std::printf("%6lu %s %-8s %-6s %-7s %-24s %s\n", static_cast<unsigned long>(j.value("i", uint64_t{0})),
                Str(j, "t").c_str(), Str(j, "tenant").c_str(), Str(j, "decision").c_str(), Str(j, "errno").c_str(),
                (Str(j, "rule").empty() ? Str(j, "by") : Str(j, "rule")).c_str(), what.c_str());
  }
}

bool KnownFormat(const std::string& f) { return f == "json" || f == "table" || f == "ecs" || f == "ocsf"; }

int Query(const std::vector<std::string>& words, std::map<std::string, std::string>& opts) {
  if (words.size() != 1 || !opts.count("key")) return Usage();
  const std::string format = opts.count("format") ? opts["format"] : "json";
  if (!KnownFormat(format)) return Usage();
  auto v = LoadVerifier(opts["key"]);
  if (!v) return 1;
  // Answers come only from a log that verifies (a live tail is allowed:
  // query is for following what happens).
  VerifyResult r = Verify(words[0], *v, nullptr);
  for (const Finding& f : r.findings) {
    if (f.error && !f.unsigned_tail) {
      return Fail("the log does not verify (" + f.text + "): run crfs-audit verify");
    }
  }
  std::vector<std::string> lines;
  std::vector<Hash> leaves;
  if (crfs::Status s = ReadRecords(words[0], &lines, &leaves); !s.ok()) return Fail(s.message());
  size_t shown = 0;
  if (format == "table") PrintTableHeader();
  for (const std::string& line : lines) {
    json j = json::parse(line, nullptr, false);
    if (!j.is_object() || !Matches(j, opts)) continue;
    shown++;
    Print(format, line, j);
  }
  std::fprintf(stderr, "crfs-audit: %zu of %zu records\n", shown, lines.size());
  return 0;
}

// follow: the log verified once, then each record as it is appended --
// checked against the chain (CheckRecord: its index, the hash of the one
// before, canonical form) before it is printed, and each new checkpoint
// checked (signature, and that its root is that of the records so far) as
// it appears. A torn last line is waited for (crfsd may be mid-write).
int Follow(const std::vector<std::string>& words, std::map<std::string, std::string>& opts) {
  if (words.size() != 1 || !opts.count("key")) return Usage();
  const std::string format = opts.count("format") ? opts["format"] : "json";
  if (!KnownFormat(format)) return Usage();
  auto v = LoadVerifier(opts["key"]);
  if (!v) return 1;
  const std::string dir = words[0];
  VerifyResult r = Verify(dir, *v, nullptr);
  for (const Finding& f : r.findings) {
    if (f.error && !f.unsigned_tail) return Fail("the log does not verify (" + f.text + "): run crfs-audit verify");
  }
  std::vector<std::string> lines;
  std::vector<Hash> leaves;
  if (crfs::Status s = ReadRecords(dir, &lines, &leaves); !s.ok()) return Fail(s.message());
  uint64_t from = lines.size();
  if (opts.count("from")) {
    char* end = nullptr;
    from = std::strtoull(opts["from"].c_str(), &end, 10);
    if (opts["from"].empty() || *end || opts["from"][0] == '-') return Usage();
  }
  CompactRange tree;
  Hash prev{};
  uint64_t signed_size = r.latest ? r.latest->size : 0;
  std::string last_note;
  (void)ReadFile(dir + "/checkpoint", &last_note);
  if (format == "table") PrintTableHeader();
  const std::string path = dir + "/records.jsonl";
  std::ifstream in(path, std::ios::binary);
  if (!in) return Fail(path + ": " + std::strerror(errno));
  std::string pending;  // a line without its newline yet
  for (uint64_t i = 0;;) {
    char buf[65536];
    in.read(buf, sizeof(buf));
    const std::streamsize got = in.gcount();
    if (got > 0) {
      pending.append(buf, static_cast<size_t>(got));
      size_t nl;
      while ((nl = pending.find('\n')) != std::string::npos) {
        const std::string line = pending.substr(0, nl);
        pending.erase(0, nl + 1);
        json j;
        if (std::string bad = CheckRecord(line, i, prev, &j); !bad.empty()) {
          return Fail("record " + std::to_string(i) + " (line " + std::to_string(i + 1) + ") " + bad);
        }
        prev = LeafHash(line);
        tree.Append(prev);
        if (i >= from && Matches(j, opts)) {
          Print(format, line, j);
          std::fflush(stdout);
        }
        i++;
      }
      continue;
    }
    in.clear();
    // Caught up: a new checkpoint must sign what is here (or a prefix
    // this follower has not read yet, checked when it has).
    std::string note;
    if (ReadFile(dir + "/checkpoint", &note) && note != last_note) {
      auto text = v->Open(note);
      auto c = text.ok() ? Checkpoint::Parse(*text) : crfs::Result<Checkpoint>(text.status());
      if (!c.ok()) return Fail("the new checkpoint does not verify: " + c.status().message());
      if (c->size < signed_size) {
        return Fail("the new checkpoint covers " + std::to_string(c->size) + " records, an earlier one " +
                    std::to_string(signed_size) + ": the log was cut back");
      }
      if (c->size <= tree.size()) {
        // Its root must be that of the first c->size records: the tree's
        // own when it signs exactly what was read (the usual case), else
        // recomputed from the file.
        bool same = c->size == tree.size() && tree.Root() == c->root;
        if (c->size < tree.size()) {
          std::vector<std::string> l2;
          std::vector<Hash> h2;
          if (crfs::Status s = ReadRecords(dir, &l2, &h2); !s.ok()) return Fail(s.message());
          same = h2.size() >= c->size && RootOf(std::span<const Hash>(h2).subspan(0, c->size)) == c->root;
        }
        if (!same) {
          return Fail("the checkpoint of size " + std::to_string(c->size) +
                      " does not sign the records followed: history was rewritten");
        }
        signed_size = c->size;
        last_note = note;
      }
    }
    usleep(200 * 1000);
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty()) return Usage();
  if (args[0] == "help" || args[0] == "--help" || args[0] == "-h") {
    std::fputs(kUsage, stdout);
    return 0;
  }
  const std::string cmd = args[0];
  static const std::map<std::string, std::set<std::string>> kOptions = {
      {"keygen", {"origin"}},
      {"vkey", {"origin"}},
      {"verify", {"key", "checkpoint"}},
      {"checkpoint", {"key"}},
      {"prove", {"key"}},
      {"consistency", {"key"}},
      {"query", {"key", "tenant", "client", "event", "decision", "path", "rule", "since", "until", "format"}},
      {"follow", {"key", "tenant", "client", "event", "decision", "path", "rule", "since", "until", "format", "from"}},
  };
  auto known = kOptions.find(cmd);
  if (known == kOptions.end()) {
    std::fprintf(stderr, "crfs-audit: unknown command '%s'\n", cmd.c_str());
    return Usage();
  }
  std::vector<std::string> words;
  std::map<std::string, std::string> opts;
  bool allow_tail = false;
  for (size_t i = 1; i < args.size(); i++) {
    const std::string& a = args[i];
    if (cmd == "verify" && a == "--allow-unsigned-tail") {
      allow_tail = true;
    } else if (a.size() > 2 && a.compare(0, 2, "--") == 0) {
      const std::string k = a.substr(2);
      if (!known->second.count(k) || i + 1 >= args.size() || opts.count(k)) {
        std::fprintf(stderr, "crfs-audit: %s: unknown, repeated or incomplete option %s\n", cmd.c_str(), a.c_str());
        return Usage();
      }
      opts[k] = args[++i];
    } else {
      words.push_back(a);
    }
  }
  if (cmd == "keygen" || cmd == "vkey") return Keygen(words, opts, cmd == "keygen");
  if (cmd == "verify") return VerifyCmd(words, opts, allow_tail);
  if (cmd == "checkpoint") return CheckpointCmd(words, opts);
  if (cmd == "prove") return Prove(words, opts);
  if (cmd == "consistency") return Consistency(words, opts);
  if (cmd == "follow") return Follow(words, opts);
  return Query(words, opts);
}
