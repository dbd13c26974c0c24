// crfsd's audit records (server/audit_trail.h): names that are not UTF-8
// are kept, escaped, and a record of them can always be written.
#include "server/audit_trail.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "audit/log.h"

namespace {

using crfs::server::ActionJson;
using crfs::server::AuditedRecord;
using crfs::server::AuditText;
using nlohmann::json;

TEST(AuditText, KeepsUtf8AndEscapesEverythingElseLosslessly) {
  EXPECT_EQ(AuditText("/a/caf\xc3\xa9 \xf0\x9f\x98\x80"), "/a/caf\xc3\xa9 \xf0\x9f\x98\x80");
  EXPECT_EQ(AuditText("bad\xff\xfe"), "bad\\xff\\xfe");
  EXPECT_EQ(AuditText("back\\slash"), "back\\x5cslash");                     // so "\x41" in a name is not "A"
  EXPECT_EQ(AuditText("\xc0\xaf"), "\\xc0\\xaf");                            // overlong '/'
  EXPECT_EQ(AuditText("\xed\xa0\x80"), "\\xed\\xa0\\x80");                   // a surrogate
  EXPECT_EQ(AuditText("\xf4\x90\x80\x80"), "\\xf4\\x90\\x80\\x80");          // past U+10FFFF
  EXPECT_EQ(AuditText("\xe2\x82"), "\\xe2\\x82");                            // cut short
  EXPECT_EQ(AuditText(std::string("nul\0x", 5)), std::string("nul\0x", 5));  // JSON escapes it
}

TEST(AuditText, AnyNameMakesAWritableRecord) {
  std::string all;
  for (int c = 0; c < 256; c++) all.push_back(static_cast<char>(c));
  crfs::policy::Action a;
  a.op = crfs::policy::OpKind::kCreate;
  a.path = all;
  a.perms = 04755;
  const nlohmann::json j = ActionJson(a);
  EXPECT_EQ(j["perms"], "4755");
  EXPECT_NO_THROW((void)j.dump(-1, ' ', true));
}

// A start finds the decision record a journal carries in the log, or
// appends it again (a power cut lost the log's tail) saying where it first
// stood; the journal's copy must be this tenant's transaction record.
class JournaledRecords : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/crfs-audit-trail-test.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    ASSERT_TRUE(crfs::audit::Signer::Generate(dir_ + "/key.pem").ok());
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::unique_ptr<crfs::audit::AuditLog> Open(const std::string& name) {
    auto s = crfs::audit::Signer::Load(dir_ + "/key.pem", "test.crfs/audit");
    std::string note;
    auto log = crfs::audit::AuditLog::Open(dir_ + "/" + name, std::move(*s), &note);
    EXPECT_TRUE(log.ok()) << log.status().message();
    return log.ok() ? std::move(*log) : nullptr;
  }
  std::vector<json> Records(const std::string& name) {
    std::ifstream in(dir_ + "/" + name + "/records.jsonl");
    std::vector<json> out;
    for (std::string l; std::getline(in, l);) out.push_back(json::parse(l));
    return out;
  }
  std::string dir_;
};

TEST_F(JournaledRecords, ALostDecisionIsRestoredWithWhereItStoodAndItsResult) {
  AuditedRecord kept;
  {
    auto log = Open("before");
    ASSERT_TRUE(log);
    auto a = log->AppendRecord(json{{"ev", "transaction"},
                                    {"tenant", "acme"},
                                    {"txn", 7},
                                    {"session", 3},
                                    {"ops", json::array({json{{"op", "mkdir"}, {"path", "/d"}}})}});
    ASSERT_TRUE(a.ok());
    kept = AuditedRecord{a->index, a->leaf, a->line};
    bool restored = true;
    auto at = crfs::server::EnsureDecisionRecorded(log.get(), "acme", kept, &restored);
    ASSERT_TRUE(at.ok());
    EXPECT_EQ(*at, kept.index);
    EXPECT_FALSE(restored) << "the log has it";
  }
  // Another log (the tail with the record lost): appended again.
  auto log = Open("after");
  ASSERT_TRUE(log);
  ASSERT_TRUE(log->Append(json{{"ev", "crfsd.start"}}).ok());
  bool restored = false;
  auto at = crfs::server::EnsureDecisionRecorded(log.get(), "acme", kept, &restored);
  ASSERT_TRUE(at.ok()) << at.status().message();
  EXPECT_TRUE(restored);
  EXPECT_EQ(*at, 1u);
  ASSERT_TRUE(crfs::server::RecordJournaledResult(log.get(), "acme", kept, *at, 99, 0).ok());
  ASSERT_TRUE(crfs::server::RecordJournaledResult(log.get(), "acme", kept, *at, 99, ENOSPC).ok());
  const json before = json::parse(kept.line);
  const std::vector<json> r = Records("after");
  ASSERT_EQ(r.size(), 4u);
  EXPECT_EQ(r[1]["ops"], before["ops"]);
  EXPECT_EQ(r[1]["txn"], 7);
  EXPECT_EQ(r[1]["restored"],
            (json{{"from", "journal"}, {"i", before["i"]}, {"prev", before["prev"]}, {"t", before["t"]}}));
  EXPECT_EQ(r[2]["ev"], "transaction.result");
  EXPECT_EQ(r[2]["of"], 1);
  EXPECT_EQ(r[2]["by"], "journal");
  EXPECT_EQ(r[2]["applied"], true);
  EXPECT_EQ(r[2]["gen"], 99);
  EXPECT_EQ(r[2]["txn"], 7);
  EXPECT_EQ(r[3]["applied"], false);
  EXPECT_EQ(r[3]["errno"], "ENOSPC");
  // Not this tenant's, not a transaction, not JSON: the start fails.
  for (const std::string& line :
       {kept.line, std::string(R"({"ev":"session.start","tenant":"acme"})"), std::string("{\"ev\":\"transaction\",")}) {
    AuditedRecord bad{100, {}, line};
    EXPECT_FALSE(crfs::server::EnsureDecisionRecorded(log.get(), "beta", bad, &restored).ok()) << line;
  }
  EXPECT_EQ(Records("after").size(), 4u) << "nothing appended for a bad copy";
}

}  // namespace
