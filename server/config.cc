#include "server/config.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "server/identity.h"

namespace crfs::server {
namespace {

using json = nlohmann::json;

// Reads the members of one JSON object, remembering which keys were used so
// that Finish() can refuse the ones nobody asked for.
class Fields {
 public:
  Fields(const json& j, std::string path) : j_(j), path_(std::move(path)) {}

  Status Check() const {
    if (!j_.is_object()) return Err(path_, "must be an object");
    return Status::Ok();
  }

  Status Str(const char* key, std::string* out, bool required) {
    const json* v = Get(key, required);
    if (!v) return missing_;
    if (!v->is_string() || v->get_ref<const std::string&>().empty()) {
      return Err(Path(key), "must be a non-empty string");
    }
    *out = v->get<std::string>();
    return Status::Ok();
  }

  Status U32(const char* key, uint32_t* out, uint64_t min, uint64_t max) {
    const json* v = Get(key, false);
    if (!v) return missing_;
    if (!v->is_number_unsigned() || v->get<uint64_t>() < min || v->get<uint64_t>() > max) {
      return Err(Path(key), "must be an integer in " + std::to_string(min) + ".." + std::to_string(max));
    }
    *out = static_cast<uint32_t>(v->get<uint64_t>());
    return Status::Ok();
  }

  Status Bool(const char* key, bool* out) {
    const json* v = Get(key, false);
    if (!v) return missing_;
    if (!v->is_boolean()) return Err(Path(key), "must be true or false");
    *out = v->get<bool>();
    return Status::Ok();
  }

  // The sub-object at `key`; nullptr with *s OK if it is optional and absent.
  const json* Object(const char* key, bool required, Status* s) {
    const json* v = Get(key, required);
    *s = v ? (v->is_object() ? Status::Ok() : Err(Path(key), "must be an object")) : missing_;
    return s->ok() ? v : nullptr;
  }

  Status Finish() const {
    for (auto it = j_.begin(); it != j_.end(); ++it) {
      if (!seen_.count(it.key())) return Err(Path(it.key()), "unknown key");
    }
    return Status::Ok();
  }

  std::string Path(const std::string& key) const { return path_.empty() ? key : path_ + "." + key; }

  static Status Err(const std::string& path, const std::string& msg) {
    return Status(Code::kInvalidArgument, "config: " + path + ": " + msg);
  }

 private:
  // nullptr with missing_ set to an error if required, else OK.
  const json* Get(const char* key, bool required) {
    seen_.insert(key);
    auto it = j_.find(key);
    if (it == j_.end()) {
      missing_ = required ? Err(Path(key), "missing") : Status::Ok();
      return nullptr;
    }
    return &*it;
  }

  const json& j_;
  std::string path_;
  std::set<std::string> seen_;
  Status missing_;
};

Status ParseListen(const std::string& listen, ServerConfig* c) {
  size_t colon = listen.rfind(':');
  if (colon == std::string::npos || colon == 0) return Fields::Err("listen", "must be HOST:PORT");
  std::string host = listen.substr(0, colon), port = listen.substr(colon + 1);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  if (port.empty() || port.size() > 5 || port.find_first_not_of("0123456789") != std::string::npos ||
      std::stoul(port) > 65535) {
    return Fields::Err("listen", "port must be 0..65535 (0: any free port, see crfsd --port-file)");
  }
  c->listen_host = host;
  c->listen_port = static_cast<uint16_t>(std::stoul(port));
  return Status::Ok();
}

Status ParseTenant(const std::string& name, const json& j, TenantConfig* t) {
  const std::string path = "tenants." + name;
  if (!IsValidName(name)) return Fields::Err(path, "tenant names are 1-63 of a-z 0-9 '-'");
  t->name = name;
  Fields f(j, path);
  CRFS_RETURN_IF_ERROR(f.Check());
  Status s;
  const json* ids = f.Object("id_map", true, &s);
  CRFS_RETURN_IF_ERROR(s);
  Fields m(*ids, path + ".id_map");
  constexpr uint64_t kMax = std::numeric_limits<uint32_t>::max();
  t->ids.count = 0;
  CRFS_RETURN_IF_ERROR(m.U32("uid_base", &t->ids.uid_base, 1, kMax));
  CRFS_RETURN_IF_ERROR(m.U32("gid_base", &t->ids.gid_base, 1, kMax));
  CRFS_RETURN_IF_ERROR(m.U32("count", &t->ids.count, 1, kMax));
  if (t->ids.count == 0) return Fields::Err(m.Path("count"), "missing");
  if (t->ids.uid_base == 0 || t->ids.gid_base == 0) {
    return Fields::Err(m.Path("uid_base"),
                       "uid_base and gid_base are required and nonzero (host root is never mapped)");
  }
  if (uint64_t{t->ids.uid_base} + t->ids.count - 1 > kMax || uint64_t{t->ids.gid_base} + t->ids.count - 1 > kMax) {
    return Fields::Err(m.Path("count"), "base + count passes 2^32");
  }
  CRFS_RETURN_IF_ERROR(m.U32("squash_id", &t->ids.squash_id, 0, kMax));
  CRFS_RETURN_IF_ERROR(m.Bool("root_squash", &t->ids.root_squash));
  std::string unmapped = "refuse";
  CRFS_RETURN_IF_ERROR(m.Str("unmapped", &unmapped, false));
  if (unmapped != "refuse" && unmapped != "squash") return Fields::Err(m.Path("unmapped"), "must be refuse or squash");
  t->ids.refuse_unmapped = unmapped == "refuse";
  CRFS_RETURN_IF_ERROR(m.Finish());
  const json* clients = f.Object("clients", false, &s);
  CRFS_RETURN_IF_ERROR(s);
  if (clients) {
    for (auto it = clients->begin(); it != clients->end(); ++it) {
      const std::string cpath = path + ".clients." + it.key();
      if (!IsValidName(it.key())) return Fields::Err(cpath, "client names are 1-63 of a-z 0-9 '-'");
      Fields c(it.value(), cpath);
      CRFS_RETURN_IF_ERROR(c.Check());
      ClientCredentials cred{~0u, ~0u};
      CRFS_RETURN_IF_ERROR(c.U32("uid", &cred.uid, 0, t->ids.count - 1));
      CRFS_RETURN_IF_ERROR(c.U32("gid", &cred.gid, 0, t->ids.count - 1));
      if (cred.uid == ~0u || cred.gid == ~0u) return Fields::Err(cpath, "uid and gid are required (tenant ids)");
      CRFS_RETURN_IF_ERROR(c.Finish());
      t->clients[it.key()] = cred;
    }
  }
  return f.Finish();
}

// Two tenants sharing host ids would own each other's files: every pair of
// tenants' uid ranges and gid ranges must be disjoint.
Status CheckDisjointIdRanges(const std::vector<TenantConfig>& tenants) {
  for (size_t i = 0; i < tenants.size(); i++) {
    for (size_t j = i + 1; j < tenants.size(); j++) {
      const IdMapConfig &a = tenants[i].ids, &b = tenants[j].ids;
      auto overlap = [&](uint32_t base_a, uint32_t base_b) {
        return uint64_t{base_a} < uint64_t{base_b} + b.count && uint64_t{base_b} < uint64_t{base_a} + a.count;
      };
      for (const char* which : {"uid", "gid"}) {
        const bool uid = which[0] == 'u';
        if (!overlap(uid ? a.uid_base : a.gid_base, uid ? b.uid_base : b.gid_base)) continue;
        return Fields::Err("tenants." + tenants[j].name + ".id_map",
                           std::string("host ") + which + "s overlap those of tenant " + tenants[i].name +
                               " (each tenant needs host ids of its own)");
      }
    }
  }
  return Status::Ok();
}

}  // namespace

const TenantConfig* ServerConfig::FindTenant(std::string_view name) const {
  for (const TenantConfig& t : tenants) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

Result<ServerConfig> ParseConfig(std::string_view text) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    return Status(Code::kInvalidArgument, std::string("config: not valid JSON: ") + e.what());
  }
  ServerConfig c;
  Fields f(j, "");
  CRFS_RETURN_IF_ERROR(f.Check());
  std::string listen = "127.0.0.1:7420";
  CRFS_RETURN_IF_ERROR(f.Str("listen", &listen, false));
  CRFS_RETURN_IF_ERROR(ParseListen(listen, &c));
  CRFS_RETURN_IF_ERROR(f.Str("storage_root", &c.storage_root, true));
  if (c.storage_root.front() != '/') return Fields::Err("storage_root", "must be an absolute path");
  CRFS_RETURN_IF_ERROR(f.Str("trust_domain", &c.trust_domain, true));
  if (!IsValidTrustDomain(c.trust_domain)) return Fields::Err("trust_domain", "must be a lower-case DNS name");
  CRFS_RETURN_IF_ERROR(f.Str("policy", &c.policy, true));
  Status as;
  if (const json* audit = f.Object("audit", true, &as)) {
    Fields a(*audit, "audit");
    CRFS_RETURN_IF_ERROR(a.Str("dir", &c.audit_dir, true));
    CRFS_RETURN_IF_ERROR(a.Str("key", &c.audit_key, true));
    CRFS_RETURN_IF_ERROR(a.Str("origin", &c.audit_origin, true));
    for (unsigned char ch : c.audit_origin) {
      if (ch <= 0x20 || ch == '+' || ch >= 0x7f) {
        return Fields::Err("audit.origin", "no spaces, '+' or non-ASCII (it names the log's key: example.org/audit)");
      }
    }
    CRFS_RETURN_IF_ERROR(a.U32("checkpoint_interval_ms", &c.audit_checkpoint_ms, 100, 3600000));
    CRFS_RETURN_IF_ERROR(a.Finish());
  }
  CRFS_RETURN_IF_ERROR(as);
  Status ad;
  if (const json* admin = f.Object("admin", false, &ad)) {
    Fields a(*admin, "admin");
    CRFS_RETURN_IF_ERROR(a.Str("socket", &c.admin_socket, false));
    CRFS_RETURN_IF_ERROR(a.Str("group", &c.admin_group, false));
    if (c.admin_socket.size() >= 100) return Fields::Err("admin.socket", "must be shorter than 100 bytes (sun_path)");
    CRFS_RETURN_IF_ERROR(a.Finish());
  }
  CRFS_RETURN_IF_ERROR(ad);
  if (c.admin_socket.empty()) c.admin_socket = c.storage_root + "/crfsd.sock";
  std::string durability = "power";
  CRFS_RETURN_IF_ERROR(f.Str("durability", &durability, false));
  if (durability == "crash") {
    c.durability = Durability::kCrash;
  } else if (durability == "power") {
    c.durability = Durability::kPower;
  } else if (durability == "sync") {
    c.durability = Durability::kSync;
  } else {
    return Fields::Err("durability", "must be crash, power or sync");
  }
  Status s;
  if (const json* tls = f.Object("tls", true, &s)) {
    Fields t(*tls, "tls");
    CRFS_RETURN_IF_ERROR(t.Str("ca", &c.tls_ca, true));
    CRFS_RETURN_IF_ERROR(t.Str("crl", &c.tls_crl, true));
    CRFS_RETURN_IF_ERROR(t.Str("cert", &c.tls_cert, true));
    CRFS_RETURN_IF_ERROR(t.Str("key", &c.tls_key, true));
    CRFS_RETURN_IF_ERROR(t.Finish());
  }
  CRFS_RETURN_IF_ERROR(s);
  if (const json* limits = f.Object("limits", false, &s)) {
    Fields l(*limits, "limits");
    CRFS_RETURN_IF_ERROR(l.U32("max_sessions", &c.max_sessions, 1, 1 << 20));
    CRFS_RETURN_IF_ERROR(l.U32("max_sessions_per_tenant", &c.max_sessions_per_tenant, 1, 1 << 20));
    CRFS_RETURN_IF_ERROR(l.U32("handshake_timeout_ms", &c.handshake_timeout_ms, 100, 600000));
    CRFS_RETURN_IF_ERROR(l.U32("idle_timeout_ms", &c.idle_timeout_ms, 1000, 86400000));
    CRFS_RETURN_IF_ERROR(l.U32("max_handshakes", &c.max_handshakes, 1, 1 << 20));
    CRFS_RETURN_IF_ERROR(l.U32("max_handshakes_per_address", &c.max_handshakes_per_address, 1, 1 << 20));
    CRFS_RETURN_IF_ERROR(l.U32("stop_timeout_ms", &c.stop_timeout_ms, 0, 3600000));
    CRFS_RETURN_IF_ERROR(l.U32("max_open_per_session", &c.max_open_per_session, 1, 1 << 16));
    CRFS_RETURN_IF_ERROR(l.U32("max_unnamed_per_tenant", &c.max_unnamed_per_tenant, 1, 1 << 16));
    CRFS_RETURN_IF_ERROR(l.U32("max_known_objects_per_tenant", &c.max_known_objects_per_tenant, 64, 1u << 28));
    CRFS_RETURN_IF_ERROR(l.Finish());
  }
  CRFS_RETURN_IF_ERROR(s);
  const json* tenants = f.Object("tenants", true, &s);
  CRFS_RETURN_IF_ERROR(s);
  for (auto it = tenants->begin(); it != tenants->end(); ++it) {
    TenantConfig t;
    CRFS_RETURN_IF_ERROR(ParseTenant(it.key(), it.value(), &t));
    c.tenants.push_back(std::move(t));
  }
  CRFS_RETURN_IF_ERROR(f.Finish());
  CRFS_RETURN_IF_ERROR(CheckDisjointIdRanges(c.tenants));
  return c;
}

Result<ServerConfig> LoadConfig(const std::string& path) {
  std::ifstream in(path);
  if (!in) return Status(Code::kIo, "config: cannot read " + path + ": " + std::strerror(errno));
  std::stringstream ss;
  ss << in.rdbuf();
  if (ss.str().size() > (1 << 20)) return Status(Code::kTooLarge, "config: " + path + " is larger than 1 MiB");
  Result<ServerConfig> c = ParseConfig(ss.str());
  if (c.ok()) {
    const size_t slash = path.rfind('/');
    for (std::string* p : {&c->policy, &c->audit_dir, &c->audit_key, &c->admin_socket}) {
      if (p->front() != '/' && slash != std::string::npos) *p = path.substr(0, slash + 1) + *p;
    }
  }
  return c;
}

}  // namespace crfs::server
