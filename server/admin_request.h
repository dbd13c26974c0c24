// admin_request.h - the requests crfsd's admin socket takes (docs/crfsd.md,
// "The admin socket"), and the parser of their bytes.
//
// A request is one JSON object (at most kMaxRequestBytes) that the client
// sends and then ends with shutdown(SHUT_WR); crfsd answers one JSON object
// and closes. The bytes come from a local process that passed the peer
// check (root or the admin group), but are still parsed as untrusted:
// strictly (unknown keys, wrong types and trailing bytes are errors), with
// nlohmann-json's exceptions off. Pure functions: any thread.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "proto/status.h"

namespace crfs::server {

struct AdminRequest {
  enum class Command {
    kStatus,       // {"cmd": "status"}: what crfsd serves (tenants, sessions, policy, audit)
    kPolicyShow,   // {"cmd": "policy.show"}: the policy in force, its text and hash
    kPolicyCheck,  // {"cmd": "policy.check", "policy": TEXT}: validate, change nothing
    kPolicyApply,  // {"cmd": "policy.apply", "policy": TEXT}: validate, persist, swap
    kReload,       // {"cmd": "reload"}: what SIGHUP does (the policy file again)
  };
  Command command = Command::kStatus;
  std::string policy;  // the policy text (check, apply)
};

// The largest request: a policy's text and some room.
constexpr size_t kMaxRequestBytes = 4u << 20;

// Parses one request; an error names what is wrong ("cmd: unknown command
// \"x\"").
Result<AdminRequest> ParseAdminRequest(std::string_view bytes);

// The command's name as the request spells it (for logs and the audit).
const char* AdminCommandName(AdminRequest::Command c);

}  // namespace crfs::server
