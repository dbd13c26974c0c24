// admin_request.cc - the admin socket's request parser (admin_request.h).
#include "server/admin_request.h"

#include <nlohmann/json.hpp>

namespace crfs::server {

namespace {

using nlohmann::json;

struct Known {
  const char* name;
  AdminRequest::Command command;
  bool takes_policy;
};
constexpr Known kCommands[] = {
    {"status", AdminRequest::Command::kStatus, false},
    {"policy.show", AdminRequest::Command::kPolicyShow, false},
    {"policy.check", AdminRequest::Command::kPolicyCheck, true},
    {"policy.apply", AdminRequest::Command::kPolicyApply, true},
    {"reload", AdminRequest::Command::kReload, false},
};

Status Bad(std::string what) { return Status(Code::kBadValue, "admin request: " + std::move(what)); }

}  // namespace

const char* AdminCommandName(AdminRequest::Command c) {
  for (const Known& k : kCommands) {
    if (k.command == c) return k.name;
  }
  return "?";
}

Result<AdminRequest> ParseAdminRequest(std::string_view bytes) {
  if (bytes.size() > kMaxRequestBytes) return Status(Code::kTooLarge, "admin request: larger than 4 MiB");
  // No exceptions: a parse error is a discarded value. Duplicate keys are
  // not detectable after parsing, so they are found with a callback.
  bool duplicate = false;
  std::vector<std::vector<std::string>> seen;  // keys of each open object
  json::parser_callback_t cb = [&](int depth, json::parse_event_t event, json& parsed) {
    if (event == json::parse_event_t::object_start) {
      seen.emplace_back();
    } else if (event == json::parse_event_t::object_end) {
      if (!seen.empty()) seen.pop_back();
    } else if (event == json::parse_event_t::key && !seen.empty()) {
      const std::string k = parsed.get<std::string>();
      for (const std::string& s : seen.back()) duplicate |= s == k;
      seen.back().push_back(k);
    }
    (void)depth;
    return true;
  };
  json j = json::parse(bytes.begin(), bytes.end(), cb, false);
  if (j.is_discarded()) return Bad("not one JSON object");
  if (duplicate) return Bad("a key appears twice");
  if (!j.is_object()) return Bad("not a JSON object");
  auto cmd = j.find("cmd");
  if (cmd == j.end() || !cmd->is_string()) return Bad("cmd: missing or not a string");
  const Known* known = nullptr;
  for (const Known& k : kCommands) {
    if (cmd->get_ref<const std::string&>() == k.name) known = &k;
  }
  if (!known) return Bad("cmd: unknown command \"" + cmd->get<std::string>().substr(0, 64) + "\"");
  AdminRequest r;
  r.command = known->command;
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (it.key() == "cmd") continue;
    if (it.key() == "policy" && known->takes_policy) {
      if (!it->is_string()) return Bad("policy: must be the policy's text (a string)");
      r.policy = it->get<std::string>();
      continue;
    }
    return Bad("unknown key \"" + it.key().substr(0, 64) + "\" for " + known->name);
  }
  if (known->takes_policy && j.find("policy") == j.end()) return Bad(std::string("policy: missing for ") + known->name);
  return r;
}

}  // namespace crfs::server
