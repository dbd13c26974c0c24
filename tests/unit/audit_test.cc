// Unit tests of the audit library (audit/): the Merkle tree against an
// independent recursive reference and RFC 6962's test vectors, the signed
// note format against golang.org/x/mod/sumdb/note's published example,
// checkpoints and verifier keys (strict parsing), and the log on disk
// (append, checkpoint, verify, and what tampering each check catches).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <openssl/sha.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "audit/export.h"
#include "audit/log.h"
#include "audit/merkle.h"
#include "audit/note.h"

namespace {

using namespace crfs::audit;
using nlohmann::json;

Hash Sha(const std::string& s) {
  Hash h;
  SHA256(reinterpret_cast<const unsigned char*>(s.data()), s.size(), h.data());
  return h;
}
std::string Str(const Hash& h) { return std::string(h.begin(), h.end()); }

// RFC 9162 §2.1, written from the text as recursion over the leaves'
// data (not their hashes), independently of audit/merkle.cc.
size_t Split(size_t n) {
  size_t k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}
Hash Mth(const std::vector<std::string>& d, size_t lo, size_t hi) {
  if (hi == lo) return Sha("");
  if (hi - lo == 1) return Sha(std::string(1, '\0') + d[lo]);
  const size_t k = Split(hi - lo);
  return Sha("\x01" + Str(Mth(d, lo, lo + k)) + Str(Mth(d, lo + k, hi)));
}
std::vector<Hash> Path(size_t m, const std::vector<std::string>& d, size_t lo, size_t hi) {
  if (hi - lo <= 1) return {};
  const size_t k = Split(hi - lo);
  std::vector<Hash> p;
  if (m < k) {
    p = Path(m, d, lo, lo + k);
    p.push_back(Mth(d, lo + k, hi));
  } else {
    p = Path(m - k, d, lo + k, hi);
    p.push_back(Mth(d, lo, lo + k));
  }
  return p;
}
std::vector<Hash> SubProof(size_t m, const std::vector<std::string>& d, size_t lo, size_t hi, bool b) {
  const size_t n = hi - lo;
  if (m == n) return b ? std::vector<Hash>{} : std::vector<Hash>{Mth(d, lo, hi)};
  const size_t k = Split(n);
  std::vector<Hash> p;
  if (m <= k) {
    p = SubProof(m, d, lo, lo + k, b);
    p.push_back(Mth(d, lo + k, hi));
  } else {
    p = SubProof(m - k, d, lo + k, hi, false);
    p.push_back(Mth(d, lo, lo + k));
  }
  return p;
}

std::vector<std::string> Leaves(size_t n) {
  std::vector<std::string> d;
  for (size_t i = 0; i < n; i++) d.push_back("record " + std::to_string(i * 7919));
  return d;
}
std::vector<Hash> Hashed(const std::vector<std::string>& d) {
  std::vector<Hash> h;
  for (const std::string& s : d) h.push_back(LeafHash(s));
  return h;
}

TEST(Merkle, RootsAreThoseOfRfc6962sTestVectors) {
  // certificate-transparency's merkle_tree_test inputs and roots.
  const std::vector<std::string> in = {"",
                                       std::string(1, '\0'),
                                       "\x10",
                                       "\x20\x21",
                                       "\x30\x31",
                                       "\x40\x41\x42\x43",
                                       "\x50\x51\x52\x53\x54\x55\x56\x57",
                                       "\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f"};
  const char* roots[] = {"6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                         "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
                         "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
                         "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                         "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
                         "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
                         "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
                         "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"};
  std::vector<Hash> leaves;
  CompactRange cr;
  for (size_t n = 1; n <= in.size(); n++) {
    leaves.push_back(LeafHash(in[n - 1]));
    cr.Append(leaves.back());
    EXPECT_EQ(HexOf(RootOf(leaves)), roots[n - 1]) << n;
    EXPECT_EQ(HexOf(cr.Root()), roots[n - 1]) << n;
  }
  EXPECT_EQ(HexOf(EmptyRoot()), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(HexOf(RootOf({})), HexOf(EmptyRoot()));
}

TEST(Merkle, EveryProofOfEveryTreeUpTo64LeavesIsTheReferencesAndVerifies) {
  const std::vector<std::string> all = Leaves(64);
  for (size_t n = 1; n <= 64; n++) {
    const std::vector<std::string> d(all.begin(), all.begin() + n);
    const std::vector<Hash> h = Hashed(d);
    const Hash root = RootOf(h);
    ASSERT_EQ(root, Mth(d, 0, n)) << n;
    for (size_t i = 0; i < n; i++) {
      const std::vector<Hash> p = InclusionProof(h, i);
      ASSERT_EQ(p, Path(i, d, 0, n)) << n << " " << i;
      ASSERT_TRUE(VerifyInclusion(i, n, h[i], p, root)) << n << " " << i;
      // Wrong leaf, index, size or root; any element changed; one short or long.
      EXPECT_FALSE(VerifyInclusion(i, n, LeafHash("other"), p, root));
      if (n > 1) {
        EXPECT_FALSE(VerifyInclusion((i + 1) % n, n, h[i], p, root)) << n << " " << i;
      }
      // (A wrong size alone may verify where the paths have the same shape:
      // the size is bound by the checkpoint that signs it with the root.
      // Against the root of a bigger tree, the proof must fail.)
      {
        std::vector<Hash> bigger = h;
        bigger.push_back(LeafHash("next"));
        EXPECT_FALSE(VerifyInclusion(i, n + 1, h[i], p, RootOf(bigger))) << n << " " << i;
      }
      EXPECT_FALSE(VerifyInclusion(i, n, h[i], p, LeafHash("root")));
      EXPECT_FALSE(VerifyInclusion(n, n, h[i], p, root));
      for (size_t k = 0; k < p.size(); k++) {
        std::vector<Hash> bad = p;
        bad[k][0] ^= 1;
        EXPECT_FALSE(VerifyInclusion(i, n, h[i], bad, root)) << n << " " << i << " " << k;
      }
      std::vector<Hash> longer = p;
      longer.push_back(root);
      EXPECT_FALSE(VerifyInclusion(i, n, h[i], longer, root));
      if (!p.empty()) {
        EXPECT_FALSE(VerifyInclusion(i, n, h[i], std::span<const Hash>(p).first(p.size() - 1), root));
      }
    }
    for (size_t m = 1; m <= n; m++) {
      const std::vector<Hash> p = ConsistencyProof(h, m);
      const std::vector<Hash> want = m == n ? std::vector<Hash>{} : SubProof(m, d, 0, n, true);
      ASSERT_EQ(p, want) << m << " -> " << n;
      const Hash old_root = RootOf(std::span<const Hash>(h).first(m));
      ASSERT_TRUE(VerifyConsistency(m, n, old_root, root, p)) << m << " -> " << n;
      EXPECT_FALSE(VerifyConsistency(m, n, LeafHash("x"), root, p)) << m << " -> " << n;
      if (m < n) {
        EXPECT_FALSE(VerifyConsistency(m, n, old_root, LeafHash("x"), p)) << m << " -> " << n;
        for (size_t k = 0; k < p.size(); k++) {
          std::vector<Hash> bad = p;
          bad[k][31] ^= 0x80;
          EXPECT_FALSE(VerifyConsistency(m, n, old_root, root, bad)) << m << " -> " << n << " " << k;
        }
        EXPECT_FALSE(VerifyConsistency(m, n, old_root, root, {})) << m << " -> " << n;
      }
    }
    EXPECT_FALSE(VerifyConsistency(n + 1, n, root, root, {}));  // a tree never shrinks
  }
}

TEST(Base64, IsStrictAndCanonical) {
  std::vector<uint8_t> out;
  EXPECT_TRUE(FromBase64("AQID", &out));
  EXPECT_EQ(out, (std::vector<uint8_t>{1, 2, 3}));
  EXPECT_TRUE(FromBase64("AQ==", &out));
  EXPECT_EQ(out, std::vector<uint8_t>{1});
  for (const char* bad : {"AQ", "AQ=", "AR==", "A===", "AQI", "AQ=\n", " AQID", "AQ-D", "AQ_D", "====", "AQ==AQ=="}) {
    EXPECT_FALSE(FromBase64(bad, &out)) << bad;
  }
  EXPECT_EQ(Base64Of(std::vector<uint8_t>{1, 2, 3, 4}), "AQIDBA==");
}

// golang.org/x/mod/sumdb/note's example: the key, the text and the note.
constexpr char kPeterVkey[] = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
constexpr char kPeterSeed[] = "AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";  // 0x01 || Ed25519 seed
constexpr char kPeterText[] =
    "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
constexpr char kPeterNote[] =
    "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n\n"
    "\xe2\x80\x94 PeterNeumann "
    "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";

class TempDir : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/crfs-audit-test.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string Path(const std::string& name) const { return dir_ + "/" + name; }
  // A PEM PKCS#8 file of an Ed25519 seed (RFC 8410's prefix), mode 0600.
  std::string SeedKey(const std::vector<uint8_t>& seed) {
    std::vector<uint8_t> der = {0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06,
                                0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20};
    der.insert(der.end(), seed.begin(), seed.end());
    const std::string path = Path("seed.pem");
    const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    const std::string pem = "-----BEGIN PRIVATE KEY-----\n" + Base64Of(der) + "\n-----END PRIVATE KEY-----\n";
    EXPECT_EQ(write(fd, pem.data(), pem.size()), static_cast<ssize_t>(pem.size()));
    close(fd);
    return path;
  }
  std::string dir_;
};

using Note = TempDir;

TEST_F(Note, SigningReproducesGosPublishedExampleByteForByte) {
  std::vector<uint8_t> raw;
  ASSERT_TRUE(FromBase64(kPeterSeed, &raw));
  ASSERT_EQ(raw.size(), 33u);
  auto s = Signer::Load(SeedKey(std::vector<uint8_t>(raw.begin() + 1, raw.end())), "PeterNeumann");
  ASSERT_TRUE(s.ok()) << s.status().message();
  EXPECT_EQ(s->verifier().vkey(), kPeterVkey);
  auto note = s->Sign(kPeterText);
  ASSERT_TRUE(note.ok());
  EXPECT_EQ(*note, kPeterNote);
}

TEST_F(Note, OpenAcceptsTheExampleAndRefusesEveryAlteration) {
  auto v = Verifier::Parse(kPeterVkey);
  ASSERT_TRUE(v.ok()) << v.status().message();
  EXPECT_EQ(v->name(), "PeterNeumann");
  EXPECT_EQ(v->key_id(), 0xc74f20a3u);
  auto text = v->Open(kPeterNote);
  ASSERT_TRUE(text.ok()) << text.status().message();
  EXPECT_EQ(*text, kPeterText);
  const std::string note = kPeterNote;
  std::vector<std::string> bad = {
      "",
      kPeterText,                                                                 // no signature
      note.substr(0, note.size() - 1),                                            // no final newline
      std::string(note).replace(note.find("cryptography"), 1, "C"),               // the text changed
      std::string(note).replace(note.find("x08go"), 1, "y"),                      // the signature changed
      std::string(note).replace(note.find("\xe2\x80\x94"), 3, "-"),               // not an em dash
      std::string(note).replace(note.find("PeterNeumann x"), 12, "PaulNeumann"),  // another name
      "\n" + note,                                                                // empty first line... of text
  };
  for (size_t i = 0; i < bad.size(); i++) {
    EXPECT_FALSE(v->Open(bad[i]).ok()) << i;
  }
}

TEST(Verifier, ParseRefusesEveryMangledKey) {
  const std::string k = kPeterVkey;
  ASSERT_TRUE(Verifier::Parse(k).ok());
  // Every proper substring, and every byte changed (as Go's note_test does).
  for (size_t i = 0; i <= k.size(); i++) {
    for (size_t j = i + 1; j <= k.size(); j++) {
      if (i == 0 && j == k.size()) continue;
      EXPECT_FALSE(Verifier::Parse(k.substr(i, j - i)).ok()) << k.substr(i, j - i);
    }
  }
  for (size_t i = 0; i < k.size(); i++) {
    std::string m = k;
    m[i] = static_cast<char>(m[i] + 1);
    EXPECT_FALSE(Verifier::Parse(m).ok()) << m;
  }
}

TEST(Checkpoint, TextRoundTripsAndParseIsStrict) {
  Checkpoint c{"example.org/log", 7, LeafHash("x")};
  auto p = Checkpoint::Parse(c.Text());
  ASSERT_TRUE(p.ok()) << p.status().message();
  EXPECT_EQ(p->origin, c.origin);
  EXPECT_EQ(p->size, 7u);
  EXPECT_EQ(p->root, c.root);
  const std::string root = Base64Of(c.root);
  for (const std::string& bad :
       {std::string("example.org/log\n7\n") + root,          // no final newline
        std::string("example.org/log\n07\n") + root + "\n",  // leading zero
        std::string("example.org/log\n-7\n") + root + "\n", std::string("example.org/log\n7 \n") + root + "\n",
        std::string("example.org/log\n18446744073709551616\n") + root + "\n",
        std::string("example.org/log\n7\n") + root.substr(4) + "\n",  // short root
        std::string("example.org/log\n7\n") + root + "\nextension\n", std::string("\n7\n") + root + "\n",
        std::string("example.org/log\n\n") + root + "\n", std::string("example.org/log\n7\n\n")}) {
    EXPECT_FALSE(Checkpoint::Parse(bad).ok()) << bad;
  }
}

class Log : public TempDir {
 protected:
  void SetUp() override {
    TempDir::SetUp();
    ASSERT_TRUE(Signer::Generate(Path("key.pem")).ok());
    auto s = Signer::Load(Path("key.pem"), "test.crfs/audit");
    ASSERT_TRUE(s.ok()) << s.status().message();
    vkey_ = s->verifier().vkey();
  }
  std::unique_ptr<AuditLog> Open(std::string* note = nullptr) {
    std::string ignored;
    auto s = Signer::Load(Path("key.pem"), "test.crfs/audit");
    auto log = AuditLog::Open(Path("log"), std::move(*s), note ? note : &ignored);
    if (!log.ok()) {
      error_ = log.status().message();
      return nullptr;
    }
    return std::move(*log);
  }
  // A log of n records, all checkpointed.
  void Write(size_t n) {
    auto log = Open();
    ASSERT_TRUE(log);
    for (size_t i = 0; i < n; i++) {
      auto r = log->Append(json{{"ev", "test"}, {"n", i}, {"name", "caf\xc3\xa9\n\x1b"}});
      ASSERT_TRUE(r.ok()) << r.status().message();
      EXPECT_EQ(*r, i);
      if (i % 3 == 2) {
        ASSERT_TRUE(log->SignCheckpoint().ok());
      }
    }
    ASSERT_TRUE(log->SignCheckpoint().ok());
  }
  VerifyResult Check(const std::string* trusted = nullptr) {
    auto v = Verifier::Parse(vkey_);
    EXPECT_TRUE(v.ok());
    return Verify(Path("log"), *v, trusted);
  }
  std::vector<std::string> Lines(const std::string& file) {
    std::ifstream in(Path("log/" + file));
    std::vector<std::string> out;
    for (std::string l; std::getline(in, l);) out.push_back(l);
    return out;
  }
  void Rewrite(const std::string& file, const std::vector<std::string>& lines) {
    std::ofstream out(Path("log/" + file), std::ios::trunc);
    for (const std::string& l : lines) out << l << "\n";
  }
  static std::string Findings(const VerifyResult& r) {
    std::string s;
    for (const Finding& f : r.findings) s += f.text + "\n";
    return s;
  }
  std::string vkey_, error_;
};

// What a start asks the log about the records its journals carry: is
// record i the one with this leaf hash, and which decisions have results
// from record i on -- answered for the records read at Open and those
// appended since, and no longer once the start is over.
TEST_F(Log, AtAStartTheLogSaysWhichRecordsItHoldsAndWhichHaveResults) {
  Write(4);
  auto log = Open();
  ASSERT_TRUE(log) << error_;
  auto d = log->AppendRecord(json{{"ev", "transaction"}, {"tenant", "acme"}});
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->index, 4u);
  EXPECT_EQ(d->leaf, LeafHash(d->line));
  ASSERT_TRUE(log->Append(json{{"ev", "transaction.result"}, {"of", 4}, {"applied", true}}).ok());
  ASSERT_TRUE(log->Append(json{{"ev", "transaction.result"}, {"of", 2}}).ok());
  EXPECT_TRUE(log->Holds(4, d->leaf));
  EXPECT_FALSE(log->Holds(3, d->leaf)) << "another record at that index";
  EXPECT_FALSE(log->Holds(7, d->leaf)) << "past the end";
  const std::vector<std::string> lines = Lines("records.jsonl");
  ASSERT_EQ(lines.size(), 7u);
  EXPECT_EQ(lines[4], d->line);
  EXPECT_TRUE(log->Holds(0, LeafHash(lines[0]))) << "a record read at Open";
  auto results = log->ResultsSince(3);
  ASSERT_TRUE(results.ok());
  EXPECT_EQ(*results, (std::set<uint64_t>{2, 4}));
  results = log->ResultsSince(6);
  ASSERT_TRUE(results.ok());
  EXPECT_EQ(*results, (std::set<uint64_t>{2}));
  log->ForgetStartLeaves();
  EXPECT_FALSE(log->Holds(4, d->leaf));
  results = log->ResultsSince(0);
  ASSERT_TRUE(results.ok());
  EXPECT_TRUE(results->empty());
}

TEST_F(Log, AWrittenLogVerifiesAndRecordsAreCanonical) {
  Write(10);
  const VerifyResult r = Check();
  EXPECT_TRUE(r.ok()) << Findings(r);
  EXPECT_EQ(r.records, 10u);
  EXPECT_EQ(r.checkpoints, 5u);  // of the empty log, after 3, 6, 9 and 10
  ASSERT_TRUE(r.latest);
  EXPECT_EQ(r.latest->size, 10u);
  const std::vector<std::string> lines = Lines("records.jsonl");
  ASSERT_EQ(lines.size(), 10u);
  // Sorted keys, no spaces, ASCII only: the escapes of the name.
  EXPECT_EQ(lines[0].find(' '), std::string::npos);
  EXPECT_NE(lines[0].find("\"name\":\"caf\\u00e9\\n\\u001b\""), std::string::npos) << lines[0];
  EXPECT_EQ(lines[0].rfind("{\"ev\":\"test\",\"i\":0,", 0), 0u) << lines[0];
  EXPECT_NE(lines[0].find("\"prev\":\"" + std::string(64, '0') + "\""), std::string::npos);
  EXPECT_NE(lines[1].find("\"prev\":\"" + HexOf(LeafHash(lines[0])) + "\""), std::string::npos);
  struct stat st;
  ASSERT_EQ(stat(Path("log").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
}

TEST_F(Log, ReopeningContinuesTheChain) {
  Write(4);
  {
    auto log = Open();
    ASSERT_TRUE(log) << error_;
    EXPECT_EQ(log->size(), 4u);
    auto r = log->Append(json{{"ev", "again"}});
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(*r, 4u);
    ASSERT_TRUE(log->SignCheckpoint().ok());
  }
  const VerifyResult r = Check();
  EXPECT_TRUE(r.ok()) << Findings(r);
  EXPECT_EQ(r.records, 5u);
}

TEST_F(Log, EachTamperingIsNamedByVerifyAndRefusedByOpen) {
  Write(9);
  const std::vector<std::string> good = Lines("records.jsonl");
  struct Case {
    const char* what;
    std::vector<std::string> lines;
    const char* finding;
  };
  std::vector<Case> cases;
  {
    std::vector<std::string> l = good;
    l[4].replace(l[4].find("\"n\":4"), 5, "\"n\":5");
    cases.push_back({"a field changed", l, "record 5 (line 6)"});
  }
  {
    std::vector<std::string> l = good;
    l.erase(l.begin() + 3);
    cases.push_back({"a record deleted", l, "record 3 (line 4)"});
  }
  {
    std::vector<std::string> l = good;
    std::swap(l[1], l[2]);
    cases.push_back({"two records swapped", l, "record 1 (line 2)"});
  }
  {
    std::vector<std::string> l = good;
    l.pop_back();
    cases.push_back({"the last record cut off", l, "records were removed from the end"});
  }
  {
    std::vector<std::string> l = good;
    json j = json::parse(l.back());
    json forged{{"ev", "forged"}, {"i", 9}, {"prev", HexOf(LeafHash(l.back()))}, {"t", j["t"]}};
    l.push_back(forged.dump(-1, ' ', true));
    cases.push_back({"a well-formed record appended (adopted by Open, as after a crash)", l,
                     "are not covered by a signed checkpoint"});
  }
  {
    std::vector<std::string> l = good;
    l[0] = json::parse(l[0]).dump(1);  // same content, not canonical
    l[0].erase(std::remove(l[0].begin(), l[0].end(), '\n'), l[0].end());
    cases.push_back({"a record re-encoded", l, "record 0 (line 1)"});
  }
  for (const Case& c : cases) {
    Rewrite("records.jsonl", c.lines);
    const VerifyResult r = Check();
    EXPECT_FALSE(r.ok()) << c.what;
    EXPECT_NE(Findings(r).find(c.finding), std::string::npos) << c.what << ":\n" << Findings(r);
    std::string note;
    if (std::string(c.what).find("adopted") != std::string::npos) {
      EXPECT_TRUE(Open(&note)) << error_;
      EXPECT_NE(note.find("adopted records 9..9"), std::string::npos) << note;
    } else {
      EXPECT_FALSE(Open()) << c.what;
    }
  }
  Rewrite("records.jsonl", good);
  EXPECT_TRUE(Check().ok());
}

TEST_F(Log, ARewriteResignedWithTheRealKeyIsCaughtByTheCheckpointTheAuditorKept) {
  Write(6);
  std::string kept;
  {
    std::ifstream in(Path("log/checkpoint"));
    std::stringstream ss;
    ss << in.rdbuf();
    kept = ss.str();
  }
  // The operator (who has the key) rewrites history from scratch, self-consistently.
  std::filesystem::remove_all(Path("log"));
  {
    auto log = Open();
    ASSERT_TRUE(log);
    for (int i = 0; i < 8; i++) ASSERT_TRUE(log->Append(json{{"ev", "rewritten"}, {"n", i}}).ok());
    ASSERT_TRUE(log->SignCheckpoint().ok());
  }
  EXPECT_TRUE(Check().ok()) << "self-consistent on its own";
  const VerifyResult r = Check(&kept);
  EXPECT_FALSE(r.ok());
  EXPECT_NE(Findings(r).find("history was rewritten"), std::string::npos) << Findings(r);
}

TEST_F(Log, CheckpointsOfAnotherKeyOrThatShrinkAreRefused) {
  Write(6);
  // Another key's checkpoint appended.
  ASSERT_TRUE(Signer::Generate(Path("other.pem")).ok());
  auto other = Signer::Load(Path("other.pem"), "test.crfs/audit");
  ASSERT_TRUE(other.ok());
  std::vector<std::string> cps = Lines("checkpoints.jsonl");
  const std::vector<std::string> good = cps;
  auto note = other->Sign(Checkpoint{"test.crfs/audit", 6, RootOf(std::vector<Hash>{})}.Text());
  ASSERT_TRUE(note.ok());
  cps.push_back(json{{"note", *note}}.dump(-1, ' ', true));
  Rewrite("checkpoints.jsonl", cps);
  VerifyResult r = Check();
  EXPECT_FALSE(r.ok());
  EXPECT_NE(Findings(r).find("checkpoint 4 (checkpoints.jsonl line 4)"), std::string::npos) << Findings(r);
  // A smaller checkpoint after a larger one (its own key: the log was cut and re-signed).
  auto s = Signer::Load(Path("key.pem"), "test.crfs/audit");
  std::vector<Hash> leaves;
  std::vector<std::string> lines;
  ASSERT_TRUE(ReadRecords(Path("log"), &lines, &leaves).ok());
  auto small = s->Sign(Checkpoint{"test.crfs/audit", 2, RootOf(std::span<const Hash>(leaves).first(2))}.Text());
  cps = good;
  cps.push_back(json{{"note", *small}}.dump(-1, ' ', true));
  Rewrite("checkpoints.jsonl", cps);
  r = Check();
  EXPECT_NE(Findings(r).find("is smaller than the one before"), std::string::npos) << Findings(r);
}

TEST_F(Log, ATornLastLineIsCutAtOpenAndAFailedAppendLeavesNothing) {
  Write(3);
  {
    std::ofstream out(Path("log/records.jsonl"), std::ios::app);
    out << "{\"ev\":\"half";  // a crash mid-append
  }
  EXPECT_FALSE(Check().ok());
  std::string note;
  auto log = Open(&note);
  ASSERT_TRUE(log) << error_;
  EXPECT_NE(note.find("torn"), std::string::npos) << note;
  ASSERT_TRUE(log->Append(json{{"ev", "after"}}).ok());
  ASSERT_TRUE(log->SignCheckpoint().ok());
  const VerifyResult r = Check();
  EXPECT_TRUE(r.ok()) << Findings(r);
  EXPECT_EQ(r.records, 4u);
  EXPECT_FALSE(log->Append(json::array()).ok());  // not an object
}

TEST_F(Log, AKeyOthersCanReadIsNotUsed) {
  ASSERT_EQ(chmod(Path("key.pem").c_str(), 0640), 0);
  auto s = Signer::Load(Path("key.pem"), "test.crfs/audit");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("chmod 600"), std::string::npos) << s.status().message();
  EXPECT_FALSE(Signer::Generate(Path("key.pem")).ok()) << "never overwrites a key";
  EXPECT_FALSE(Signer::Load(Path("key.pem"), "bad name").ok());
}

// Records as SIEMs ingest them (audit/export.h): one file event per
// operation, with the ECS and OCSF 1001 fields docs/audit.md names.
TEST(Export, FileEventsInEcsAndOcsf) {
  const json denied = json::parse(R"({"cert":"ab12","client":"spiffe://d/tenant/acme/client/alice","decision":"deny",
    "errno":"EPERM","ev":"transaction","gid":0,"i":41,"ops":[{"op":"create","path":"/bin/tool","perms":"4755",
    "type":"file"},{"op":"rename","path":"/a/x","path2":"/b/y","type":"dir"}],"policy":"ff","prev":"00",
    "reason":"setuid","rule":"no-setuid","session":3,"t":"2026-12-03T14:00:00.123Z","tenant":"acme","txn":9,"uid":0})");
  const std::vector<json> ecs = ToEcs(denied);
  ASSERT_EQ(ecs.size(), 2u);
  EXPECT_EQ(ecs[0]["@timestamp"], "2026-12-03T14:00:00.123Z");
  EXPECT_EQ(ecs[0]["event"]["category"], json::array({"file"}));
  EXPECT_EQ(ecs[0]["event"]["type"], json::array({"creation"}));
  EXPECT_EQ(ecs[0]["event"]["action"], "create");
  EXPECT_EQ(ecs[0]["event"]["outcome"], "failure");
  EXPECT_EQ(ecs[0]["event"]["sequence"], 41);
  EXPECT_EQ(ecs[0]["file"]["path"], "/bin/tool");
  EXPECT_EQ(ecs[0]["file"]["name"], "tool");
  EXPECT_EQ(ecs[0]["file"]["mode"], "4755");
  EXPECT_EQ(ecs[0]["rule"]["id"], "no-setuid");
  EXPECT_EQ(ecs[0]["error"]["code"], "EPERM");
  EXPECT_EQ(ecs[0]["user"]["id"], "0");
  EXPECT_EQ(ecs[0]["tls"]["client"]["hash"]["sha256"], "ab12");
  EXPECT_EQ(ecs[0]["tls"]["client"]["x509"]["alternative_names"], json::array({"spiffe://d/tenant/acme/client/alice"}));
  EXPECT_EQ(ecs[0]["crfs"]["tenant"], "acme");
  EXPECT_EQ(ecs[1]["event"]["type"], json::array({"change"}));
  EXPECT_EQ(ecs[1]["crfs"]["path2"], "/b/y");

  const std::vector<json> ocsf = ToOcsf(denied);
  ASSERT_EQ(ocsf.size(), 2u);
  EXPECT_EQ(ocsf[0]["class_uid"], 1001);
  EXPECT_EQ(ocsf[0]["activity_id"], 1);
  EXPECT_EQ(ocsf[0]["type_uid"], 100101);
  EXPECT_EQ(ocsf[0]["time"], int64_t{1796306400123});
  EXPECT_EQ(ocsf[0]["status_id"], 2);
  EXPECT_EQ(ocsf[0]["status_code"], "EPERM");
  EXPECT_EQ(ocsf[0]["file"]["type_id"], 1);
  EXPECT_EQ(ocsf[0]["actor"]["user"]["name"], "spiffe://d/tenant/acme/client/alice");
  EXPECT_EQ(ocsf[1]["activity_id"], 5);
  EXPECT_EQ(ocsf[1]["file"]["type_id"], 2);
  EXPECT_EQ(ocsf[1]["file_result"]["path"], "/b/y");

  // Other records: ECS gets them in their category, OCSF (file events only) does not.
  const json start = json::parse(R"({"ev":"session.start","i":1,"peer":"127.0.0.1:5000","t":"2026-12-03T14:00:00.000Z",
    "tenant":"acme"})");
  ASSERT_EQ(ToEcs(start).size(), 1u);
  EXPECT_EQ(ToEcs(start)[0]["event"]["category"], json::array({"session"}));
  EXPECT_EQ(ToEcs(start)[0]["event"]["type"], json::array({"start"}));
  EXPECT_EQ(ToEcs(start)[0]["source"]["address"], "127.0.0.1");
  EXPECT_TRUE(ToOcsf(start).empty());
  const json result = json::parse(R"({"applied":true,"ev":"transaction.result","gen":5,"i":2,"of":1})");
  EXPECT_EQ(ToEcs(result)[0]["event"]["outcome"], "success");
  // Junk never throws.
  for (const char* junk : {"[]", "7", R"({"ev":"transaction","ops":[1,"x",{"op":7}]})", R"({"ev":"read","op":[]})",
                           R"({"ev":"transaction","uid":"x","i":-1,"t":5,"ops":[{"op":"create","size":"big"}]})",
                           R"({"ev":"transaction.result","applied":"yes"})"}) {
    EXPECT_NO_THROW((void)ToEcs(json::parse(junk))) << junk;
    EXPECT_NO_THROW((void)ToOcsf(json::parse(junk))) << junk;
  }
}

TEST(CheckRecord, RefusesWhatIsNotARecordAtItsPlace) {
  const Hash zero{};
  const std::string t = "\"t\":\"2026-12-03T10:00:00.000Z\"";
  const std::string prev = "\"prev\":\"" + std::string(64, '0') + "\"";
  EXPECT_EQ(CheckRecord("{\"ev\":\"x\",\"i\":0," + prev + "," + t + "}", 0, zero), "");
  for (const std::string& bad : {std::string("{\"ev\":\"x\",\"i\":1,") + prev + "," + t + "}",     // wrong index
                                 std::string("{\"ev\":\"x\",\"i\":0,\"prev\":\"00\",") + t + "}",  // wrong prev
                                 std::string("{\"i\":0,") + prev + "," + t + "}",                  // no ev
                                 std::string("{\"ev\":\"x\",\"i\":0,") + prev + "}",               // no t
                                 std::string("{\"i\":0,\"ev\":\"x\",") + prev + "," + t + "}",     // keys unsorted
                                 std::string("{\"ev\": \"x\",\"i\":0,") + prev + "," + t + "}",    // a space
                                 std::string("{\"ev\":\"x\",\"i\":0,") + prev + "," + t + "}x",    // trailing bytes
                                 std::string("[]"), std::string(""), std::string("{")}) {
    EXPECT_NE(CheckRecord(bad, 0, zero), "") << bad;
  }
}

}  // namespace
