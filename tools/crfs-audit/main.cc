// crfs-audit - the auditor's tool for crfsd's audit log (docs/audit.md).
//
// It only reads the log (keygen writes a new key file and nothing else);
// every check re-hashes what is stored and never trusts a stored hash.
#include <sys/stat.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

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
    "        [--path PREFIX] [--rule ID] [--since RFC3339] [--until RFC3339] [--format json|table]\n"
    "                                   the records that match, after verifying the log\n"
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

int Query(const std::vector<std::string>& words, std::map<std::string, std::string>& opts) {
  if (words.size() != 1 || !opts.count("key")) return Usage();
  const std::string format = opts.count("format") ? opts["format"] : "json";
  if (format != "json" && format != "table") return Usage();
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
  auto str = [](const json& j, const char* k) {
    return j.contains(k) && j[k].is_string() ? j[k].get<std::string>() : "";
  };
  size_t shown = 0;
  if (format == "table") {
    std::printf("%6s %-24s %-8s %-6s %-7s %-24s %s\n", "i", "t", "tenant", "decis.", "errno", "rule (or check)",
                "event and operations");
  }
  for (const std::string& line : lines) {
    json j = json::parse(line, nullptr, false);
    if (!j.is_object()) continue;
    auto want = [&](const char* opt, const std::string& have) { return !opts.count(opt) || opts[opt] == have; };
    if (!want("tenant", str(j, "tenant")) || !want("client", str(j, "client")) || !want("event", str(j, "ev")) ||
        !want("decision", str(j, "decision")) || !want("rule", str(j, "rule"))) {
      continue;
    }
    if (opts.count("since") && str(j, "t") < opts["since"]) continue;
    if (opts.count("until") && str(j, "t") > opts["until"]) continue;
    if (opts.count("path")) {
      bool hit = false;
      for (const json& op : Ops(j)) {
        for (const char* k : {"path", "path2"}) {
          const std::string p = str(op, k);
          hit = hit || p.compare(0, opts["path"].size(), opts["path"]) == 0;
        }
      }
      if (!hit) continue;
    }
    shown++;
    if (format == "json") {
      std::printf("%s\n", line.c_str());
    } else {
      std::string what = str(j, "ev");
      for (const json& op : Ops(j)) {
        what += " " + str(op, "op") + " " + str(op, "path");
        if (op.contains("path2")) what += " -> " + str(op, "path2");
      }
      std::printf("%6lu %s %-8s %-6s %-7s %-24s %s\n", static_cast<unsigned long>(j.value("i", uint64_t{0})),
                  str(j, "t").c_str(), str(j, "tenant").c_str(), str(j, "decision").c_str(), str(j, "errno").c_str(),
                  (str(j, "rule").empty() ? str(j, "by") : str(j, "rule")).c_str(), what.c_str());
    }
  }
  std::fprintf(stderr, "crfs-audit: %zu of %zu records\n", shown, lines.size());
  return 0;
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
  return Query(words, opts);
}
