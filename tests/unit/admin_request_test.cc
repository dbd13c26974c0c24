// The admin socket's request parser (server/admin_request.h): every
// command, and every malformed request refused with what is wrong.
#include "server/admin_request.h"

#include <gtest/gtest.h>

#include <string>

namespace crfs::server {
namespace {

TEST(AdminRequest, EveryCommandParses) {
  struct Case {
    const char* text;
    AdminRequest::Command command;
  } cases[] = {
      {R"({"cmd":"status"})", AdminRequest::Command::kStatus},
      {R"({"cmd":"policy.show"})", AdminRequest::Command::kPolicyShow},
      {R"({"cmd":"reload"})", AdminRequest::Command::kReload},
      {R"( {"policy":"{}","cmd":"policy.check"} )", AdminRequest::Command::kPolicyCheck},
      {R"({"cmd":"policy.apply","policy":"{\"version\":1}"})", AdminRequest::Command::kPolicyApply},
  };
  for (const Case& c : cases) {
    auto r = ParseAdminRequest(c.text);
    ASSERT_TRUE(r.ok()) << c.text << ": " << r.status().message();
    EXPECT_EQ(r->command, c.command) << c.text;
    EXPECT_NE(std::string(AdminCommandName(r->command)), "?");
    EXPECT_NE(std::string(c.text).find(AdminCommandName(r->command)), std::string::npos) << "its name is its cmd";
  }
  EXPECT_EQ(ParseAdminRequest(R"({"cmd":"policy.apply","policy":"{\"version\":1}"})")->policy, R"({"version":1})");
}

TEST(AdminRequest, MalformedRequestsAreRefusedSayingWhy) {
  struct Case {
    std::string text;
    const char* says;
  } cases[] = {
      {"", "not one JSON object"},
      {"{", "not one JSON object"},
      {R"({"cmd":"status"} {})", "not one JSON object"},
      {"[]", "not a JSON object"},
      {R"("status")", "not a JSON object"},
      {"{}", "cmd: missing"},
      {R"({"cmd":7})", "cmd: missing or not a string"},
      {R"({"cmd":"rm -rf"})", "unknown command \"rm -rf\""},
      {R"({"cmd":"status","policy":"x"})", "unknown key \"policy\" for status"},
      {R"({"cmd":"status","verbose":true})", "unknown key \"verbose\""},
      {R"({"cmd":"policy.apply"})", "policy: missing for policy.apply"},
      {R"({"cmd":"policy.apply","policy":{}})", "policy: must be the policy's text"},
      {R"({"cmd":"status","cmd":"reload"})", "a key appears twice"},
      {R"({"cmd":"policy.check","policy":"a","policy":"b"})", "a key appears twice"},
      {std::string(R"({"cmd":"status)") + '\0' + R"("})", "not one JSON object"},
  };
  for (const Case& c : cases) {
    auto r = ParseAdminRequest(c.text);
    ASSERT_FALSE(r.ok()) << c.text;
    EXPECT_NE(r.status().message().find(c.says), std::string::npos) << c.text << ": " << r.status().message();
  }
  const std::string huge = R"({"cmd":"policy.check","policy":")" + std::string(kMaxRequestBytes, 'x') + "\"}";
  EXPECT_EQ(ParseAdminRequest(huge).status().code(), Code::kTooLarge);
}

}  // namespace
}  // namespace crfs::server
