// crfsd's audit records (server/audit_trail.h): names that are not UTF-8
// are kept, escaped, and a record of them can always be written.
#include "server/audit_trail.h"

#include <gtest/gtest.h>

#include <string>

namespace {

using crfs::server::ActionJson;
using crfs::server::AuditText;

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

}  // namespace
