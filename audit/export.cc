// export.cc - ECS and OCSF views of audit records (export.h).
#include "audit/export.h"

#include <cstdio>
#include <ctime>
#include <string>

namespace crfs::audit {

namespace {

using json = nlohmann::json;

std::string Str(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : "";
}

uint64_t Num(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_number_unsigned() ? it->get<uint64_t>() : 0;
}

bool Flag(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_boolean() && it->get<bool>();
}

// The operations a record decided on: a transaction's "ops", a read's "op".
std::vector<json> OpsOf(const json& r) {
  std::vector<json> out;
  if (auto ops = r.find("ops"); ops != r.end() && ops->is_array()) {
    for (const json& op : *ops) {
      if (op.is_object()) out.push_back(op);
    }
  } else if (auto op = r.find("op"); op != r.end() && op->is_object()) {
    out.push_back(*op);
  }
  return out;
}

bool IsFileRecord(const json& r) {
  const std::string ev = Str(r, "ev");
  return ev == "transaction" || ev == "read";
}

// "2026-12-03T14:00:00.123Z" -> milliseconds since 1970; 0 if not that form.
int64_t EpochMs(const std::string& t) {
  struct tm tm {};
  int ms = 0;
  if (t.size() != 24 || std::sscanf(t.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d.%3dZ", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                                    &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &ms) != 7) {
    return 0;
  }
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  return static_cast<int64_t>(timegm(&tm)) * 1000 + ms;
}

// An operation's ECS event.type (file category's allowed values).
const char* EcsType(const std::string& op) {
  if (op == "create" || op == "mkdir" || op == "symlink" || op == "mknod" || op == "link" || op == "snapshot") {
    return "creation";
  }
  if (op == "unlink" || op == "rmdir") return "deletion";
  if (op == "read" || op == "readdir" || op == "open") return "access";
  return "change";
}

// OCSF 1001 activity_id and its name.
std::pair<int, const char*> OcsfActivity(const std::string& op) {
  if (op == "create" || op == "mkdir" || op == "symlink" || op == "mknod" || op == "link") return {1, "Create"};
  if (op == "read" || op == "readdir") return {2, "Read"};
  if (op == "write" || op == "truncate") return {3, "Update"};
  if (op == "unlink" || op == "rmdir") return {4, "Delete"};
  if (op == "rename" || op == "exchange") return {5, "Rename"};
  if (op == "utimes" || op == "setxattr" || op == "removexattr") return {6, "Set Attributes"};
  if (op == "chmod" || op == "chown") return {7, "Set Security"};
  if (op == "open") return {14, "Open"};
  return {99, "Other"};
}

// OCSF file type_id.
std::pair<int, const char*> OcsfFileType(const std::string& type) {
  if (type == "file") return {1, "Regular File"};
  if (type == "dir") return {2, "Folder"};
  if (type == "chardev") return {3, "Character Device"};
  if (type == "blockdev") return {4, "Block Device"};
  if (type == "fifo") return {6, "Named Pipe"};
  if (type == "socket") return {5, "Local Socket"};
  if (type == "symlink") return {7, "Symbolic Link"};
  return {0, "Unknown"};
}

std::string NameOf(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

// Did what the record tells of succeed? "success", "failure" or "unknown".
std::string Outcome(const json& r) {
  const std::string ev = Str(r, "ev"), decision = Str(r, "decision");
  if (decision == "deny" || ev == "session.refused" || ev == "policy.refused" || ev == "admin.refused" ||
      ev == "session.revoked") {
    return "failure";
  }
  if (ev == "transaction.result") return Flag(r, "applied") ? "success" : "failure";
  if (decision == "allow" || ev == "policy.reload" || ev == "session.start" || ev == "session.end" ||
      ev == "crfsd.start" || ev == "crfsd.stop") {
    return "success";
  }
  return "unknown";
}

// What crfs knows that ECS has no field for.
json CrfsFields(const json& r) {
  json c = json::object();
  for (const char* k : {"tenant", "session", "txn", "by", "policy", "warned", "suppressed", "of", "gen", "restored"}) {
    if (r.contains(k)) c[k] = r[k];
  }
  c["record"] = Num(r, "i");
  c["event"] = Str(r, "ev");
  return c;
}

json EcsBase(const json& r) {
  json e{{"@timestamp", Str(r, "t")},
         {"ecs", {{"version", "8.11.0"}}},
         {"observer", {{"vendor", "crfs"}, {"product", "crfsd"}, {"type", "file-server"}}},
         {"event",
          {{"kind", "event"},
           {"module", "crfs"},
           {"dataset", "crfs.audit"},
           {"sequence", Num(r, "i")},
           {"outcome", Outcome(r)}}},
         {"crfs", CrfsFields(r)}};
  if (!Str(r, "reason").empty()) e["event"]["reason"] = Str(r, "reason");
  if (!Str(r, "errno").empty()) e["error"] = {{"code", Str(r, "errno")}};
  if (!Str(r, "rule").empty()) e["rule"] = {{"id", Str(r, "rule")}, {"ruleset", Str(r, "policy")}};
  if (r.contains("uid")) e["user"] = {{"id", std::to_string(Num(r, "uid"))}};
  if (r.contains("gid")) e["group"] = {{"id", std::to_string(Num(r, "gid"))}};
  if (!Str(r, "cert").empty() || !Str(r, "client").empty()) {
    json tls = {{"client", json::object()}};
    if (!Str(r, "cert").empty()) tls["client"]["hash"] = {{"sha256", Str(r, "cert")}};
    if (!Str(r, "client").empty()) tls["client"]["x509"] = {{"alternative_names", {Str(r, "client")}}};
    e["tls"] = std::move(tls);
  }
  if (const std::string peer = Str(r, "peer"); !peer.empty()) {
    const size_t colon = peer.rfind(':');
    e["source"] = {{"address", colon == std::string::npos ? peer : peer.substr(0, colon)}};
  }
  return e;
}

}  // namespace

std::vector<json> ToEcs(const json& r) {
  std::vector<json> out;
  if (!r.is_object()) return out;
  const std::string ev = Str(r, "ev");
  if (IsFileRecord(r)) {
    for (const json& op : OpsOf(r)) {
      json e = EcsBase(r);
      const std::string name = Str(op, "op");
      e["event"]["category"] = {"file"};
      e["event"]["type"] = {EcsType(name)};
      e["event"]["action"] = name;
      json file{{"path", Str(op, "path")}, {"name", NameOf(Str(op, "path"))}};
      if (!Str(op, "type").empty()) file["type"] = Str(op, "type");  // ECS: file, dir, symlink (and crfs's others)
      if (!Str(op, "perms").empty()) file["mode"] = Str(op, "perms");
      if (op.contains("size")) file["size"] = op["size"];
      if (!Str(op, "xattr").empty()) file["attributes"] = {Str(op, "xattr")};
      e["file"] = std::move(file);
      // The other end of a rename, exchange or link (ECS has no standard field).
      if (!Str(op, "path2").empty()) e["crfs"]["path2"] = Str(op, "path2");
      out.push_back(std::move(e));
    }
    return out;
  }
  json e = EcsBase(r);
  e["event"]["action"] = ev;
  if (ev == "transaction.result") {
    e["event"]["category"] = {"file"};
    e["event"]["type"] = {"info"};
  } else if (ev.rfind("session.", 0) == 0) {
    e["event"]["category"] =
        ev == "session.refused" || ev == "session.revoked" ? json{"authentication", "session"} : json{"session"};
    e["event"]["type"] = {ev == "session.start" ? "start" : ev == "session.end" ? "end" : "denied"};
  } else if (ev.rfind("policy.", 0) == 0) {
    e["event"]["category"] = {"configuration"};
    e["event"]["type"] = {"change"};
  } else if (ev == "admin.refused") {
    e["event"]["category"] = {"configuration"};
    e["event"]["type"] = {"denied"};
  } else if (ev == "crfsd.start" || ev == "crfsd.stop") {
    e["event"]["category"] = {"process"};
    e["event"]["type"] = {ev == "crfsd.start" ? "start" : "end"};
  } else {
    e["event"]["category"] = {"file"};
    e["event"]["type"] = {"info"};
  }
  out.push_back(std::move(e));
  return out;
}

std::vector<json> ToOcsf(const json& r) {
  std::vector<json> out;
  if (!r.is_object() || !IsFileRecord(r)) return out;
  const bool failed = Outcome(r) == "failure";
  for (const json& op : OpsOf(r)) {
    const auto [activity, activity_name] = OcsfActivity(Str(op, "op"));
    const auto [type_id, type_name] = OcsfFileType(Str(op, "type"));
    json file{{"path", Str(op, "path")}, {"name", NameOf(Str(op, "path"))}, {"type_id", type_id}, {"type", type_name}};
    if (op.contains("size")) file["size"] = op["size"];
    json e{{"class_uid", 1001},
           {"class_name", "File System Activity"},
           {"category_uid", 1},
           {"category_name", "System Activity"},
           {"activity_id", activity},
           {"activity_name", activity_name},
           {"type_uid", 100100 + activity},
           {"time", EpochMs(Str(r, "t"))},
           {"severity_id", failed ? 3 : 1},
           {"severity", failed ? "Medium" : "Informational"},
           {"status_id", failed ? 2 : 1},
           {"status", failed ? "Failure" : "Success"},
           {"file", std::move(file)},
           {"actor", {{"user", {{"uid", std::to_string(Num(r, "uid"))}}}}},
           {"metadata",
            {{"version", "1.1.0"},
             {"product", {{"name", "crfsd"}, {"vendor_name", "crfs"}}},
             {"log_name", "crfs.audit"},
             {"sequence", Num(r, "i")}}},
           {"unmapped", CrfsFields(r)}};
    if (!Str(r, "errno").empty()) e["status_code"] = Str(r, "errno");
    if (!Str(r, "reason").empty()) e["status_detail"] = Str(r, "reason");
    if (!Str(r, "rule").empty()) e["unmapped"]["rule"] = Str(r, "rule");
    if (!Str(r, "client").empty()) e["actor"]["user"]["name"] = Str(r, "client");
    if (!Str(op, "path2").empty()) e["file_result"] = {{"path", Str(op, "path2")}, {"name", NameOf(Str(op, "path2"))}};
    if (!Str(op, "perms").empty()) e["unmapped"]["perms"] = Str(op, "perms");
    if (!Str(op, "xattr").empty()) e["unmapped"]["xattr"] = Str(op, "xattr");
    out.push_back(std::move(e));
  }
  return out;
}

}  // namespace crfs::audit
