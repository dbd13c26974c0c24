// config.h - crfsd's configuration file (JSON), documented in
// docs/crfsd.md. Parsing is strict: unknown keys, wrong types and values
// out of range are errors that name the key ("tenants.acme.id_map.count:
// must be 1..4294967295").
//
// Value types; thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "proto/status.h"
#include "server/idmap.h"

namespace crfs::server {

// Who a client certificate acts as inside its tenant (tenant ids).
struct ClientCredentials {
  uint32_t uid = 0;
  uint32_t gid = 0;
};

struct TenantConfig {
  std::string name;
  IdMapConfig ids;
  // By client name (the certificate's .../client/<name>). A client not
  // listed acts as the tenant's root (uid 0, gid 0).
  std::map<std::string, ClientCredentials> clients;

  ClientCredentials CredentialsOf(const std::string& client) const {
    auto it = clients.find(client);
    return it == clients.end() ? ClientCredentials{} : it->second;
  }
};

// What a transaction survives (docs/crfsd.md "Durability"):
//   kCrash  a crash of crfsd: all or nothing; a power cut may leave one
//           partly applied and lose what was not reported durable.
//   kPower  (default) also a power cut: its journal record is on stable
//           storage (fdatasync) before its first operation; applied but not
//           yet durable transactions may be lost whole, never in part.
//   kSync   every answer is durable (syncfs before TRANS_REPLY).
enum class Durability { kCrash, kPower, kSync };

struct ServerConfig {
  std::string listen_host = "127.0.0.1";
  uint16_t listen_port = 7420;
  std::string storage_root;  // a mounted btrfs; tenants live in <root>/tenants/<name>
  std::string trust_domain;  // the SPIFFE trust domain client identities must be in
  std::string tls_ca;        // PEM: the CA that issues client certificates
  std::string tls_crl;       // PEM: its CRL (required: revocation is not optional)
  std::string tls_cert;      // PEM: the server's certificate
  std::string tls_key;       // PEM: the server's key
  std::string policy;        // the policy file (docs/policy.md); relative paths are relative to crfsd.json's directory
  // The audit log (docs/audit.md): its directory, the Ed25519 key that signs
  // its checkpoints, the log's name (origin) and how often a grown log is
  // checkpointed. Relative paths are relative to crfsd.json's directory.
  std::string audit_dir, audit_key, audit_origin;
  uint32_t audit_checkpoint_ms = 1000;
  // The admin socket (admin_socket.h; docs/crfsd.md, "The admin socket"):
  // its path (default <storage_root>/crfsd.sock; relative paths are
  // relative to crfsd.json's directory) and the group besides root that
  // may use it ("" none).
  std::string admin_socket, admin_group;
  uint32_t max_sessions = 4096;
  uint32_t max_sessions_per_tenant = 1024;
  uint32_t handshake_timeout_ms = 10000;
  uint32_t idle_timeout_ms = 600000;
  // Pre-authentication: TLS handshakes in progress at once, in all and from
  // one peer address; more connections are closed at once (SECURITY.md §4).
  uint32_t max_handshakes = 1024;
  uint32_t max_handshakes_per_address = 16;
  // SIGTERM: how long crfsd may take to finish, answer and sync what it has
  // taken before it exits anyway (a second SIGTERM ends it at once).
  uint32_t stop_timeout_ms = 30000;
  uint32_t max_open_per_session = 1024;             // objects one session holds open (OPEN)
  uint32_t max_known_objects_per_tenant = 1 << 18;  // names a tenant's object table keeps (tenant_store.h)
  uint32_t max_unnamed_per_tenant = 4096;           // open objects without names a tenant's store keeps fds of
  Durability durability = Durability::kPower;
  std::vector<TenantConfig> tenants;

  const TenantConfig* FindTenant(std::string_view name) const;
};

Result<ServerConfig> ParseConfig(std::string_view json_text);
Result<ServerConfig> LoadConfig(const std::string& path);

}  // namespace crfs::server
