// server.h - crfsd's listener and event loop.
//
// One thread, one epoll set: the listening socket and every session's
// socket, all non-blocking. A session that stalls (does not send, does not
// read) costs one fd and its buffers and blocks nobody; handshake and idle
// deadlines end such sessions, and max_sessions bounds them (connections
// beyond it are closed at once, logged with a rate limit).
//
// File-system work runs inline in the loop for now (local btrfs, bounded per
// request); the privilege-separated store workers of DESIGN.md §2 will take
// it over without changing Session's interface.
//
// Ownership: Server owns the TLS context, the tenant stores and the
// sessions. Not thread-safe; Run() is called from one thread.
#pragma once

#include <openssl/x509.h>
#include <sys/stat.h>

#include <csignal>
#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <string_view>

#include "audit/log.h"
#include "policy/policy.h"
#include "proto/status.h"
#include "server/admin_socket.h"
#include "server/audit_trail.h"
#include "server/config.h"
#include "server/storage_lock.h"
#include "server/store_worker.h"
#include "server/tenant_store.h"
#include "server/tls_context.h"

namespace crfs::server {

class Session;
class StoreWorker;

class Server {
 public:
  // Loads the TLS material, opens every tenant's subvolume, binds.
  static Result<std::unique_ptr<Server>> Create(ServerConfig config);
  ~Server();

  // Serves until *stop becomes nonzero (set from a signal handler), then
  // stops cleanly: no new connections, every request already read is
  // answered, every tenant synced (DURABLE sent), sessions closed with
  // close_notify. *stop reaching 2, or limits.stop_timeout_ms passing,
  // returns at once with an error and forced_stop() true: the caller then
  // exits without waiting for running transactions (the journal finishes
  // them at the next start).
  // *reload becoming nonzero (SIGHUP) reloads the policy file (ReloadPolicy)
  // and resets it to 0.
  Status Run(volatile sig_atomic_t* stop, volatile sig_atomic_t* reload = nullptr);
  bool forced_stop() const { return forced_stop_; }

  // The bound port (useful when the configuration asked for port 0).
  uint16_t port() const { return port_; }
  const ServerConfig& config() const { return config_; }
  // The policy in force (policy/policy.h): never null once Create returned.
  // A reload swaps it; whoever holds the old one keeps it valid.
  std::shared_ptr<const policy::Policy> policy() const { return policy_; }
  // The audit log (docs/audit.md): never null once Create returned. Shared
  // with the tenants' workers (it is thread-safe).
  audit::AuditLog* audit() const { return audit_.get(); }
  // Appends a security event to the audit log; false (logged) if it could
  // not be written.
  bool Audit(nlohmann::json record);
  // The same for a refused session, within a budget (audit_trail.h:
  // RecordBudget): refusals cost the refused nothing.
  void AuditRefusal(nlohmann::json record);
  // Reads config().policy again: a valid policy replaces the one in force
  // (logged with both hashes), an invalid one is refused with every error
  // logged and the old one stays. Returns what happened.
  Status ReloadPolicy();
  // Puts the policy `text` in force if it is valid and differs from the
  // one in force: recorded in the audit log first ("policy.reload" with
  // `by`, who asked), and, with `persist`, written to config().policy first
  // (atomically: a restart keeps it). A policy with an error, or a change
  // the audit log cannot record, is refused and the one in force stays.
  // *changed: whether it changed. Every diagnostic goes to *diags.
  Status SwapPolicy(std::string text, const nlohmann::json& by, bool persist, std::vector<policy::Diagnostic>* diags,
                    bool* changed);
  // Reads the TLS material again (the CA, the CRL, the server certificate
  // and key): new handshakes use it, and every live session whose
  // certificate the new CRL lists is ended. A failure is logged and the
  // material in force stays. `why`: what asked (for the log). Also run
  // once a second if the CRL file changed (Run).
  void ReloadTls(const char* why);
  // Is `cert` listed in the CRL in force (for a handshake that began under
  // an earlier one)?
  bool Revoked(X509* cert) const;
  // The store of a configured tenant, or nullptr.
  TenantStore* Tenant(std::string_view name);
  // The worker that runs `store`'s transactions (store_worker.h).
  StoreWorker* WorkerOf(const TenantStore* store);
  // The session with serial number `serial`, or nullptr if it has ended.
  Session* FindSession(uint64_t serial);
  // Counts an authenticated session of `tenant`; false if the tenant is at
  // limits.max_sessions_per_tenant. Each true is paired with a Release.
  bool AdmitSession(const std::string& tenant);
  void ReleaseSession(const std::string& tenant);
  // A session accepted from `host` has left the TLS handshake (done,
  // failed or ended); each accepted connection calls it once.
  void HandshakeEnded(const std::string& host);

 private:
  Server(ServerConfig config, std::unique_ptr<TlsContext> tls);
  Status Listen();
  void Accept(int64_t now_ms);
  void Update(Session* s, uint32_t events);
  // Syncs one tenant on its worker (not busy) and tells its sessions.
  void SyncTenant(TenantStore* store, const std::string& name);
  // The clean stop (Run): BeginStop once, then StopStep each turn until it
  // returns true (everything answered, synced and closed).
  void BeginStop(int64_t now);
  bool StopStep(int64_t now);
  // The store whose worker signals on `fd`, or nullptr (a session's fd).
  const TenantStore* StoreOfEventFd(int fd);

  std::unique_ptr<StorageLock> lock_;  // first in, last out: held while anything may write
  ServerConfig config_;
  std::unique_ptr<TlsContext> tls_;
  std::shared_ptr<const policy::Policy> policy_;
  std::string policy_text_;  // policy_'s source, as read or applied
  std::unique_ptr<AdminSocket> admin_;
  // The CRL in force (tls_'s, parsed again for checks of live sessions)
  // and what its file looked like when read (Run checks it once a second).
  X509_CRL* crl_ = nullptr;
  struct stat crl_stat_ {};
  int64_t crl_warned_ms_ = 0;  // the last nextUpdate warning (at most hourly)
  void LoadCrlState();
  // An admin socket request (admin_request.h): decided, answered, audited.
  void HandleAdmin(AdminSocket::Ready r);
  nlohmann::json StatusJson();
  std::unique_ptr<audit::AuditLog> audit_;
  RecordBudget refusals_;  // event loop only
  int64_t last_checkpoint_ms_ = 0;
  void CheckpointAudit();
  std::map<std::string, std::unique_ptr<TenantStore>, std::less<>> tenants_;
  // Declared after tenants_ and before sessions_: sessions ending at
  // shutdown still reach their worker; workers stop before the stores go.
  std::map<const TenantStore*, std::unique_ptr<StoreWorker>> workers_;
  std::map<int, std::unique_ptr<Session>> sessions_;
  std::set<int> paused_;  // sessions' fds out of epoll until their tenant's worker is done
  std::map<std::string, uint32_t, std::less<>> tenant_sessions_;
  uint32_t handshakes_ = 0;                             // sessions in kHandshake
  std::map<std::string, uint32_t> handshakes_by_host_;  // of those, by peer address
  int64_t accept_paused_until_ = 0;                     // out of fds: the listener rests
  int listen_fd_ = -1;
  int epoll_fd_ = -1;
  uint16_t port_ = 0;
  uint64_t next_serial_ = 1;
  bool stop_closing_ = false;                 // StopStep: sessions are being closed
  std::set<const TenantStore*> stop_synced_;  // StopStep: synced once already
  bool forced_stop_ = false;
};

}  // namespace crfs::server
