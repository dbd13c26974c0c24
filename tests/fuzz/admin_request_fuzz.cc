// libFuzzer target: the admin socket's request parser (server/admin_request.h)
// on untrusted bytes. Oracle: no crash, leak or over-read; a request that
// parses names a known command, carries a policy text exactly when its
// command takes one, and parses again to the same from its own JSON form.
#include <cstdint>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string_view>

#include "server/admin_request.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace crfs::server;
  auto r = ParseAdminRequest(std::string_view(reinterpret_cast<const char*>(data), size));
  if (!r.ok()) return 0;
  const std::string name = AdminCommandName(r->command);
  if (name == "?") abort();
  const bool takes =
      r->command == AdminRequest::Command::kPolicyCheck || r->command == AdminRequest::Command::kPolicyApply;
  if (!takes && !r->policy.empty()) abort();
  nlohmann::json again{{"cmd", name}};
  if (takes) again["policy"] = r->policy;
  auto back = ParseAdminRequest(again.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
  if (!back.ok() || back->command != r->command) abort();
  return 0;
}
