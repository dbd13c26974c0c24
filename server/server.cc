#include "server/server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <grp.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/pem.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "server/admin_request.h"
#include "server/config_check.h"
#include "server/log.h"
#include "server/pki_check.h"
#include "server/session.h"
#include "server/store_worker.h"

namespace crfs::server {
namespace {

int64_t NowMs() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1000 + ts.tv_nsec / 1000000;
}

// The peer's numeric address, and with its port ("192.0.2.7:51820").
std::string PeerHost(const struct sockaddr_storage& ss) {
  char host[INET6_ADDRSTRLEN] = "?";
  getnameinfo(reinterpret_cast<const struct sockaddr*>(&ss), sizeof(ss), host, sizeof(host), nullptr, 0,
              NI_NUMERICHOST);
  return host;
}

std::string PeerName(const struct sockaddr_storage& ss) {
  char serv[8] = "?";
  getnameinfo(reinterpret_cast<const struct sockaddr*>(&ss), sizeof(ss), nullptr, 0, serv, sizeof(serv),
              NI_NUMERICSERV);
  return PeerHost(ss) + ":" + serv;
}

// The policy file's text (docs/policy.md: at most 4 MiB).
Result<std::string> ReadPolicyText(const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status(Code::kIo, "policy " + path + ": " + strerror(errno));
  std::string text;
  char buf[65536];
  ssize_t n;
  while ((n = read(fd, buf, sizeof(buf))) > 0 && text.size() <= kMaxRequestBytes) {
    text.append(buf, static_cast<size_t>(n));
  }
  const int e = errno;
  close(fd);
  if (n < 0) return Status(Code::kIo, "policy " + path + ": " + strerror(e));
  if (text.size() > kMaxRequestBytes) return Status(Code::kTooLarge, "policy " + path + ": larger than 4 MiB");
  return text;
}

// Writes `path` whole and fsyncs it (0600: crfsd's).
Status WriteFileSynced(const std::string& path, const std::string& text) {
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return Status(Code::kIo, path + ": " + strerror(errno));
  size_t off = 0;
  while (off < text.size()) {
    const ssize_t n = write(fd, text.data() + off, text.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    off += static_cast<size_t>(n);
  }
  const bool ok = off == text.size() && fsync(fd) == 0;
  const int e = errno;
  close(fd);
  if (!ok) {
    unlink(path.c_str());
    return Status(Code::kIo, path + ": " + strerror(e));
  }
  return Status::Ok();
}

// rename(2), then fsync of the directory.
Status RenameSynced(const std::string& from, const std::string& to) {
  if (rename(from.c_str(), to.c_str()) != 0) return Status(Code::kIo, "rename to " + to + ": " + strerror(errno));
  const size_t slash = to.rfind('/');
  const std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : to.substr(0, slash);
  const int fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return Status(Code::kIo, dir + ": " + strerror(errno));
  const bool ok = fsync(fd) == 0;
  close(fd);
  return ok ? Status::Ok() : Status(Code::kIo, "fsync " + dir + ": " + strerror(errno));
}

}  // namespace

Result<std::unique_ptr<Server>> Server::Create(ServerConfig config) {
  for (const Finding& f : CheckServerConfig(config, time(nullptr))) {
    if (f.severity == Finding::kError) return Status(Code::kInvalidArgument, f.text);
    Log(f.severity == Finding::kWarning ? LogLevel::kWarning : LogLevel::kInfo, "%s", f.text.c_str());
  }
  // Before any journal is read: one crfsd per storage root.
  auto lock = StorageLock::Acquire(config.storage_root);
  if (!lock.ok()) return lock.status();
  auto tls = TlsContext::Create(config.tls_ca, config.tls_crl, config.tls_cert, config.tls_key);
  if (!tls.ok()) return tls.status();
  std::vector<policy::Diagnostic> diags;
  auto text = ReadPolicyText(config.policy);
  if (!text.ok()) return text.status();
  auto pol = policy::Policy::Parse(*text, &diags);
  for (const policy::Diagnostic& d : diags) {
    Log(d.error ? LogLevel::kError : LogLevel::kWarning, "policy %s: %s", config.policy.c_str(), d.ToString().c_str());
  }
  if (!pol.ok()) return Status(pol.status().code(), "policy " + config.policy + ": " + pol.status().message());
  std::unique_ptr<Server> s(new Server(std::move(config), std::move(*tls)));
  s->policy_ = std::move(*pol);
  s->policy_text_ = std::move(*text);
  Log(LogLevel::kInfo, "policy %s: %zu rules, sha256 %s", s->config_.policy.c_str(), s->policy_->rule_count(),
      s->policy_->sha256().c_str());
  // The audit log before anything is served: a log that does not verify
  // against its own latest checkpoint is not extended (audit/log.h).
  auto signer = audit::Signer::Load(s->config_.audit_key, s->config_.audit_origin);
  if (!signer.ok()) return signer.status();
  std::string note;
  auto log = audit::AuditLog::Open(s->config_.audit_dir, std::move(*signer), &note);
  if (!log.ok()) return log.status();
  s->audit_ = std::move(*log);
  if (!note.empty()) Log(LogLevel::kWarning, "audit log %s: %s", s->config_.audit_dir.c_str(), note.c_str());
  Log(LogLevel::kInfo, "audit log %s: %llu records, verifier key %s", s->config_.audit_dir.c_str(),
      static_cast<unsigned long long>(s->audit_->size()), s->audit_->verifier().vkey().c_str());
  if (!s->Audit({{"ev", "crfsd.start"},
                 {"pid", getpid()},
                 {"policy", s->policy_->sha256()},
                 {"policy_file", s->config_.policy}})) {
    return Status(Code::kIo, "audit log " + s->config_.audit_dir + ": cannot be written");
  }
  s->CheckpointAudit();
  s->lock_ = std::move(*lock);
  // Did the machine restart since crfsd last ran here (a power cut, say)?
  // Unknown counts as yes: replay then trusts less of the journal.
  const std::string before = s->lock_->previous().boot, now = StorageLock::CurrentBootId();
  const bool rebooted = before.empty() || now.empty() || before != now;
  for (const TenantConfig& t : s->config_.tenants) {
    auto store = TenantStore::Open(s->config_.storage_root, t, rebooted, s->audit_.get());
    if (!store.ok()) return store.status();
    (*store)->SetOpenLimits(s->config_.max_open_per_session, s->config_.max_unnamed_per_tenant);
    (*store)->SetTableLimit(s->config_.max_known_objects_per_tenant);
    (*store)->SetDurability(s->config_.durability);
    auto worker = StoreWorker::Start();
    if (!worker.ok()) return worker.status();
    s->workers_.emplace(store->get(), std::move(*worker));
    s->tenants_.emplace(t.name, std::move(*store));
  }
  // Every journal's records are found (or restored) by now.
  s->audit_->ForgetStartLeaves();
  // What the configuration lets crfsd hold open at once, against its fd
  // limit: sessions, and per tenant the directory cache and the fds of
  // open objects without names (plus journals, listener, epoll, logs).
  struct rlimit nofile {};
  const uint64_t need =
      uint64_t{s->config_.max_sessions} +
      s->config_.tenants.size() * (TenantStore::kDirCacheMax + s->config_.max_unnamed_per_tenant + 2) + 64;
  if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur != RLIM_INFINITY && need > nofile.rlim_cur) {
    Log(LogLevel::kWarning,
        "limits: up to %llu fds may be needed (max_sessions, and per tenant %zu cached directories and "
        "max_unnamed_per_tenant), but the fd limit is %llu: requests will fail with EMFILE near it; lower the "
        "limits or raise LimitNOFILE",
        static_cast<unsigned long long>(need), TenantStore::kDirCacheMax,
        static_cast<unsigned long long>(nofile.rlim_cur));
  }
  CRFS_RETURN_IF_ERROR(s->Listen());
  std::optional<gid_t> admins;
  if (!s->config_.admin_group.empty()) {
    const struct group* g = getgrnam(s->config_.admin_group.c_str());
    if (!g) return Status(Code::kInvalidArgument, "admin.group: no group " + s->config_.admin_group);
    admins = g->gr_gid;
  }
  auto admin = AdminSocket::Open(s->config_.admin_socket, admins, s->epoll_fd_);
  if (!admin.ok()) return admin.status();
  s->admin_ = std::move(*admin);
  s->LoadCrlState();
  s->crl_warned_ms_ = NowMs();  // CheckServerConfig warned at start
  for (auto& [store, worker] : s->workers_) {
    struct epoll_event ev {};
    ev.events = EPOLLIN;
    ev.data.fd = worker->event_fd();
    if (epoll_ctl(s->epoll_fd_, EPOLL_CTL_ADD, worker->event_fd(), &ev) != 0) {
      return Status(Code::kIo, std::string("epoll_ctl worker: ") + strerror(errno));
    }
  }
  return s;
}

Server::Server(ServerConfig config, std::unique_ptr<TlsContext> tls)
    : config_(std::move(config)), tls_(std::move(tls)) {}

Server::~Server() {
  // Every running transaction finishes and is answered (as far as its
  // session can still be written to) before anything goes.
  for (auto& [store, worker] : workers_) {
    while (worker->busy()) worker->Drain();
  }
  sessions_.clear();
  admin_.reset();
  if (crl_) X509_CRL_free(crl_);
  if (epoll_fd_ >= 0) close(epoll_fd_);
  if (listen_fd_ >= 0) close(listen_fd_);
}

void Server::HandshakeEnded(const std::string& host) {
  auto it = handshakes_by_host_.find(host);
  if (it != handshakes_by_host_.end() && --it->second == 0) handshakes_by_host_.erase(it);
  if (handshakes_ > 0) handshakes_--;
}

bool Server::AdmitSession(const std::string& tenant) {
  uint32_t& n = tenant_sessions_[tenant];
  if (n >= config_.max_sessions_per_tenant) return false;
  n++;
  return true;
}

void Server::ReleaseSession(const std::string& tenant) {
  auto it = tenant_sessions_.find(tenant);
  if (it != tenant_sessions_.end() && it->second > 0) it->second--;
}

TenantStore* Server::Tenant(std::string_view name) {
  auto it = tenants_.find(name);
  return it == tenants_.end() ? nullptr : it->second.get();
}

Status Server::Listen() {
  struct addrinfo hints {};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV;
  struct addrinfo* ai = nullptr;
  const std::string port = std::to_string(config_.listen_port);
  int rc = getaddrinfo(config_.listen_host.c_str(), port.c_str(), &hints, &ai);
  if (rc != 0) return Status(Code::kInvalidArgument, "listen address " + config_.listen_host + ": " + gai_strerror(rc));
  listen_fd_ = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int one = 1;
  if (listen_fd_ < 0 || setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
      bind(listen_fd_, ai->ai_addr, ai->ai_addrlen) != 0 || listen(listen_fd_, 1024) != 0) {
    int e = errno;
    freeaddrinfo(ai);
    return Status(Code::kIo, "listen on " + config_.listen_host + ":" + port + ": " + strerror(e));
  }
  freeaddrinfo(ai);
  struct sockaddr_storage bound {};
  socklen_t len = sizeof(bound);
  getsockname(listen_fd_, reinterpret_cast<struct sockaddr*>(&bound), &len);
  port_ = ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<struct sockaddr_in6*>(&bound)->sin6_port
                                            : reinterpret_cast<struct sockaddr_in*>(&bound)->sin_port);
  epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
  if (epoll_fd_ < 0) return Status(Code::kIo, std::string("epoll_create1: ") + strerror(errno));
  struct epoll_event ev {};
  ev.events = EPOLLIN;
  ev.data.fd = listen_fd_;
  if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, listen_fd_, &ev) != 0) return Status(Code::kIo, "epoll_ctl listen");
  return Status::Ok();
}

void Server::Accept(int64_t now_ms) {
  for (;;) {
    struct sockaddr_storage ss {};
    socklen_t len = sizeof(ss);
    int fd = accept4(listen_fd_, reinterpret_cast<struct sockaddr*>(&ss), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EMFILE || errno == ENFILE) {
        // The pending connection stays readable on a level-triggered
        // listener: rest it for a moment instead of spinning.
        LogPeer(LogLevel::kError, "accept: %s: not accepting for 100 ms", strerror(errno));
        struct epoll_event ev {};
        ev.data.fd = listen_fd_;
        epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, listen_fd_, &ev);
        accept_paused_until_ = now_ms + 100;
      }
      return;
    }
    const std::string peer = PeerName(ss), host = PeerHost(ss);
    if (sessions_.size() >= config_.max_sessions) {
      LogPeer(LogLevel::kWarning, "refusing %s: %u sessions open (limits.max_sessions)", peer.c_str(),
              config_.max_sessions);
      close(fd);
      continue;
    }
    // Before authentication a peer is only an address: bound what one
    // address, and all of them, may have in the handshake, so that nobody
    // fills max_sessions with connections that never authenticate.
    uint32_t& from_host = handshakes_by_host_[host];
    if (handshakes_ >= config_.max_handshakes || from_host >= config_.max_handshakes_per_address) {
      LogPeer(LogLevel::kWarning, "refusing %s: %u TLS handshakes in progress from %s, %u in all (limits.%s)",
              peer.c_str(), from_host, host.c_str(), handshakes_,
              handshakes_ >= config_.max_handshakes ? "max_handshakes" : "max_handshakes_per_address");
      if (from_host == 0) handshakes_by_host_.erase(host);
      close(fd);
      continue;
    }
    from_host++;
    handshakes_++;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    SSL* ssl = SSL_new(tls_->ctx());
    if (!ssl || SSL_set_fd(ssl, fd) != 1) {
      LogPeer(LogLevel::kError, "SSL_new: %s", TlsErrorString().c_str());
      SSL_free(ssl);
      close(fd);
      HandshakeEnded(host);
      continue;
    }
    SSL_set_accept_state(ssl);
    auto session = std::make_unique<Session>(this, fd, ssl, peer, host, next_serial_++, now_ms);
    struct epoll_event ev {};
    ev.events = EPOLLIN;
    ev.data.fd = fd;
    if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) != 0) continue;  // session (and fd) freed here
    Session* s = session.get();
    sessions_.emplace(fd, std::move(session));
    Update(s, s->Drive(now_ms));
  }
}

StoreWorker* Server::WorkerOf(const TenantStore* store) {
  auto it = workers_.find(store);
  return it == workers_.end() ? nullptr : it->second.get();
}

const TenantStore* Server::StoreOfEventFd(int fd) {
  for (auto& [store, worker] : workers_) {
    if (worker->event_fd() == fd) return store;
  }
  return nullptr;
}

Session* Server::FindSession(uint64_t serial) {
  for (auto& [fd, s] : sessions_) {
    if (s->serial() == serial) return s.get();
  }
  return nullptr;
}

void Server::Update(Session* s, uint32_t events) {
  const int fd = s->fd();
  const bool was_paused = paused_.count(fd) > 0;
  if (events == 0 || events == Session::kPaused) {
    if (!was_paused) epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);
    if (events == 0) {
      paused_.erase(fd);
      sessions_.erase(fd);
    } else {
      paused_.insert(fd);
    }
    return;
  }
  struct epoll_event ev {};
  ev.events = events;
  ev.data.fd = fd;
  epoll_ctl(epoll_fd_, was_paused ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, fd, &ev);
  paused_.erase(fd);
}

void Server::SyncTenant(TenantStore* st, const std::string& tenant) {
  // The syncfs runs on the tenant's worker (it can take a while); the
  // completion drives the tenant's sessions, which sends the DURABLEs.
  struct Job {
    uint64_t durable = 0;
    RequestError err;
    bool ok = false;
  };
  auto job = std::make_shared<Job>();
  audit::AuditLog* log = audit_.get();
  WorkerOf(st)->Submit(
      [job, st, log] { job->ok = SyncAuditFirst(log, &job->err) && st->Sync(&job->durable, &job->err); },
      [this, job, st, tenant] {
        if (!job->ok) {
          Log(LogLevel::kError, "tenant %s: sync: %s", tenant.c_str(), job->err.text.c_str());
          return;
        }
        for (auto& [fd, s] : sessions_) {
          if (s->tenant() == st) s->NotifyDurable(job->durable);
        }
      });
}

void Server::BeginStop(int64_t now) {
  Log(LogLevel::kInfo,
      "stopping: no new connections; answering what %zu sessions have sent, then syncing (at most %u ms; a second "
      "SIGTERM stops at once)",
      sessions_.size(), config_.stop_timeout_ms);
  if (listen_fd_ >= 0) {
    epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, listen_fd_, nullptr);
    close(listen_fd_);
    listen_fd_ = -1;
  }
  accept_paused_until_ = 0;
  std::vector<Session*> all;
  for (auto& [fd, s] : sessions_) all.push_back(s.get());
  for (Session* s : all) {
    s->StopReading();
    Update(s, s->Drive(now));
  }
}

bool Server::StopStep(int64_t now) {
  if (!stop_closing_) {
    for (auto& [store, worker] : workers_) {
      if (worker->busy()) return false;  // a transaction or sync runs: its completion drives its sessions
    }
    std::vector<Session*> holding;
    for (auto& [fd, s] : sessions_) {
      if (s->holding()) holding.push_back(s.get());
    }
    for (Session* s : holding) Update(s, s->Drive(now));
    if (!holding.empty()) return false;
    // Everything taken is answered: make it durable, once per tenant.
    bool submitted = false;
    for (auto& [name, store] : tenants_) {
      if (store->DurableGeneration() >= store->Generation() || !stop_synced_.insert(store.get()).second) continue;
      SyncTenant(store.get(), name);
      submitted = true;
    }
    if (submitted) return false;
    stop_closing_ = true;
    std::vector<Session*> all;
    for (auto& [fd, s] : sessions_) all.push_back(s.get());
    for (Session* s : all) {
      s->Close("crfsd stopping");
      Update(s, s->Drive(now));
    }
  }
  return sessions_.empty();
}

bool Server::Audit(nlohmann::json record) {
  auto i = audit_->Append(std::move(record));
  if (i.ok()) return true;
  Log(LogLevel::kError, "audit log: %s", i.status().message().c_str());
  return false;
}

void Server::AuditRefusal(nlohmann::json record) {
  uint64_t suppressed = 0;
  if (!refusals_.Take(&suppressed)) return;
  if (suppressed) record["suppressed"] = suppressed;
  (void)Audit(std::move(record));
}

void Server::CheckpointAudit() {
  last_checkpoint_ms_ = NowMs();
  auto c = audit_->SignCheckpoint();
  if (!c.ok()) Log(LogLevel::kError, "audit log: checkpoint: %s", c.status().message().c_str());
}

Status Server::ReloadPolicy() {
  auto text = ReadPolicyText(config_.policy);
  if (!text.ok()) {
    Log(LogLevel::kError, "policy reload refused, the policy in force stays (sha256 %s): %s", policy_->sha256().c_str(),
        text.status().message().c_str());
    return text.status();
  }
  std::vector<policy::Diagnostic> diags;
  bool changed = false;
  return SwapPolicy(std::move(*text), nlohmann::json{{"signal", "SIGHUP"}}, false, &diags, &changed);
}

Status Server::SwapPolicy(std::string text, const nlohmann::json& by, bool persist,
                          std::vector<policy::Diagnostic>* diags, bool* changed) {
  *changed = false;
  auto pol = policy::Policy::Parse(text, diags);
  for (const policy::Diagnostic& d : *diags) {
    Log(d.error ? LogLevel::kError : LogLevel::kWarning, "policy %s: %s", config_.policy.c_str(), d.ToString().c_str());
  }
  if (!pol.ok()) {
    Log(LogLevel::kError, "policy reload refused, the policy in force stays (sha256 %s): %s", policy_->sha256().c_str(),
        pol.status().message().c_str());
    (void)Audit({{"ev", "policy.refused"},
                 {"policy", policy_->sha256()},
                 {"file", config_.policy},
                 {"by", by},
                 {"error", AuditText(pol.status().message())}});
    return pol.status();
  }
  if ((*pol)->sha256() == policy_->sha256()) {
    Log(LogLevel::kInfo, "policy %s unchanged (sha256 %s)", config_.policy.c_str(), policy_->sha256().c_str());
    return Status::Ok();
  }
  // Applied through the admin socket: the file says so too, before
  // anything else does (a restart keeps what is in force).
  const std::string tmp = config_.policy + ".crfsd-new";
  if (persist) {
    if (Status s = WriteFileSynced(tmp, text); !s.ok()) {
      Log(LogLevel::kError, "policy apply refused: %s; the policy in force stays", s.message().c_str());
      return s;
    }
  }
  // A policy change no audit record tells of does not happen.
  if (!Audit({{"ev", "policy.reload"},
              {"old", policy_->sha256()},
              {"new", (*pol)->sha256()},
              {"file", config_.policy},
              {"by", by},
              {"rules", (*pol)->rule_count()}})) {
    if (persist) unlink(tmp.c_str());
    Log(LogLevel::kError, "policy reload refused: the audit log cannot be written; the policy in force stays");
    return Status(Code::kIo, "the audit log cannot be written; the policy in force stays");
  }
  if (persist) {
    if (Status s = RenameSynced(tmp, config_.policy); !s.ok()) {
      // Recorded, in force from now on, but not in the file: said loudly.
      Log(LogLevel::kError, "policy %s: %s: the applied policy is in force but a restart loads the old file",
          config_.policy.c_str(), s.message().c_str());
    }
  }
  Log(LogLevel::kInfo, "policy %s %s: sha256 %s -> %s, %zu rules", config_.policy.c_str(),
      persist ? "applied" : "reloaded", policy_->sha256().c_str(), (*pol)->sha256().c_str(), (*pol)->rule_count());
  policy_ = std::move(*pol);
  policy_text_ = std::move(text);
  *changed = true;
  return Status::Ok();
}

void Server::LoadCrlState() {
  if (stat(config_.tls_crl.c_str(), &crl_stat_) != 0) crl_stat_ = {};
  X509_CRL* crl = nullptr;
  if (FILE* f = fopen(config_.tls_crl.c_str(), "r")) {
    crl = PEM_read_X509_CRL(f, nullptr, nullptr, nullptr);
    fclose(f);
  }
  if (crl_) X509_CRL_free(crl_);
  crl_ = crl;
  // Which CRL is in force, and whether it is about to go stale (after its
  // nextUpdate every new session is refused: fail closed).
  auto info = InspectCrl(config_.tls_crl, config_.tls_ca);
  if (!info.ok()) {
    Log(LogLevel::kError, "CRL %s: %s", config_.tls_crl.c_str(), info.status().message().c_str());
    return;
  }
  const int64_t now = time(nullptr);
  Log(LogLevel::kInfo, "CRL %s: number %s, %zu revoked, next update %s", config_.tls_crl.c_str(),
      info->number.empty() ? "(none)" : info->number.c_str(), info->entries,
      info->next_update ? (std::to_string((info->next_update - now) / 3600) + " h from now").c_str() : "none");
}

bool Server::Revoked(X509* cert) const {
  X509_REVOKED* entry = nullptr;
  return crl_ && cert && X509_CRL_get0_by_cert(crl_, &entry, cert) == 1;
}

void Server::ReloadTls(const char* why) {
  auto tls = TlsContext::Create(config_.tls_ca, config_.tls_crl, config_.tls_cert, config_.tls_key);
  if (!tls.ok()) {
    Log(LogLevel::kError, "TLS reload (%s) refused, the material in force stays: %s", why,
        tls.status().message().c_str());
    if (stat(config_.tls_crl.c_str(), &crl_stat_) != 0) crl_stat_ = {};  // not retried until it changes again
    return;
  }
  // Sessions made from the old context keep it alive (OpenSSL counts).
  tls_ = std::move(*tls);
  LoadCrlState();
  Log(LogLevel::kInfo, "TLS material reloaded (%s)", why);
  std::vector<Session*> revoked;
  for (auto& [fd, s] : sessions_) {
    if (s->CertificateIn(crl_)) revoked.push_back(s.get());
  }
  for (Session* s : revoked) {
    s->EndRevoked();
    Update(s, s->Drive(NowMs()));  // closes it (close_notify) once what it read is answered
  }
}

nlohmann::json Server::StatusJson() {
  nlohmann::json tenants = nlohmann::json::array();
  for (const auto& [name, store] : tenants_) {
    auto n = tenant_sessions_.find(name);
    tenants.push_back({{"name", name},
                       {"generation", store->Generation()},
                       {"durable", store->DurableGeneration()},
                       {"sessions", n == tenant_sessions_.end() ? 0u : n->second}});
  }
  return {{"ok", true},
          {"pid", getpid()},
          {"listen", config_.listen_host + ":" + std::to_string(port_)},
          {"storage_root", config_.storage_root},
          {"sessions", sessions_.size()},
          {"tenants", std::move(tenants)},
          {"policy", {{"file", config_.policy}, {"sha256", policy_->sha256()}, {"rules", policy_->rule_count()}}},
          {"audit",
           {{"dir", config_.audit_dir},
            {"records", audit_->size()},
            {"errno", audit_->last_errno() ? ErrnoName(audit_->last_errno()) : ""}}}};
}

void Server::HandleAdmin(AdminSocket::Ready r) {
  const nlohmann::json by{{"uid", r.peer.uid},
                          {"gid", r.peer.gid},
                          {"pid", r.peer.pid},
                          {"command", AuditText(r.peer.command)},
                          {"via", "admin socket"}};
  auto refuse = [&](const char* errname, const std::string& why) {
    admin_->Answer(r.fd, {{"ok", false}, {"errno", errname}, {"error", why}});
  };
  if (!r.peer.allowed) {
    Log(LogLevel::kWarning, "admin socket: refused uid %u gid %u pid %d (%s): not root or the admin group", r.peer.uid,
        r.peer.gid, r.peer.pid, r.peer.command.c_str());
    AuditRefusal({{"ev", "admin.refused"}, {"by", by}, {"reason", "not root or the admin group"}});
    return refuse("EACCES", "crfsd's admin socket serves root" +
                                (config_.admin_group.empty() ? std::string() : " and group " + config_.admin_group) +
                                " only");
  }
  if (r.too_large) return refuse("E2BIG", "the request is larger than 4 MiB");
  auto req = ParseAdminRequest(r.bytes);
  if (!req.ok()) return refuse("EINVAL", req.status().message());
  nlohmann::json who = by;
  who["cmd"] = AdminCommandName(req->command);
  auto diagnostics = [](const std::vector<policy::Diagnostic>& diags) {
    nlohmann::json out = nlohmann::json::array();
    for (const policy::Diagnostic& d : diags) {
      out.push_back(
          {{"error", d.error}, {"where", d.where}, {"line", d.line}, {"message", d.message}, {"text", d.ToString()}});
    }
    return out;
  };
  switch (req->command) {
    case AdminRequest::Command::kStatus: return admin_->Answer(r.fd, StatusJson());
    case AdminRequest::Command::kPolicyShow:
      return admin_->Answer(r.fd, {{"ok", true},
                                   {"file", config_.policy},
                                   {"sha256", policy_->sha256()},
                                   {"rules", policy_->rule_count()},
                                   {"text", policy_text_}});
    case AdminRequest::Command::kPolicyCheck: {
      std::vector<policy::Diagnostic> diags;
      auto pol = policy::Policy::Parse(req->policy, &diags);
      nlohmann::json a{{"ok", pol.ok()}, {"diagnostics", diagnostics(diags)}, {"in_force", policy_->sha256()}};
      if (pol.ok()) {
        a["sha256"] = (*pol)->sha256();
        a["rules"] = (*pol)->rule_count();
      } else {
        a["error"] = pol.status().message();
      }
      return admin_->Answer(r.fd, a);
    }
    case AdminRequest::Command::kPolicyApply:
    case AdminRequest::Command::kReload: {
      std::vector<policy::Diagnostic> diags;
      bool changed = false;
      const std::string old = policy_->sha256();
      Status s;
      if (req->command == AdminRequest::Command::kPolicyApply) {
        s = SwapPolicy(std::move(req->policy), who, true, &diags, &changed);
      } else if (auto text = ReadPolicyText(config_.policy); !text.ok()) {
        s = text.status();
      } else {
        s = SwapPolicy(std::move(*text), who, false, &diags, &changed);
      }
      nlohmann::json a{{"ok", s.ok()},
                       {"changed", changed},
                       {"old", old},
                       {"new", policy_->sha256()},
                       {"diagnostics", diagnostics(diags)},
                       {"file", config_.policy}};
      if (!s.ok()) a["error"] = s.message() + "; the policy in force stays";
      return admin_->Answer(r.fd, a);
    }
  }
}

Status Server::Run(volatile sig_atomic_t* stop, volatile sig_atomic_t* reload) {
  Log(LogLevel::kInfo, "listening on %s:%u (%zu tenants, storage %s)", config_.listen_host.c_str(), port_,
      tenants_.size(), config_.storage_root.c_str());
  std::vector<struct epoll_event> events(256);
  int64_t last_sweep = NowMs();
  bool stopping = false;
  int64_t stop_deadline = 0;
  for (;;) {
    if (reload && *reload) {
      *reload = 0;
      (void)ReloadPolicy();  // logged either way
      ReloadTls("SIGHUP");
    }
    if (*stop && !stopping) {
      stopping = true;
      stop_deadline = NowMs() + config_.stop_timeout_ms;
      BeginStop(NowMs());
    }
    if (stopping) {
      if (*stop >= 2 || NowMs() >= stop_deadline) {
        forced_stop_ = true;
        return Status(Code::kIo, std::string(*stop >= 2 ? "second signal" : "limits.stop_timeout_ms passed") +
                                     ": stopping at once with " + std::to_string(sessions_.size()) +
                                     " sessions open; a transaction cut short is finished from its journal at the "
                                     "next start");
      }
      if (StopStep(NowMs())) break;
    }
    int n = epoll_wait(epoll_fd_, events.data(), static_cast<int>(events.size()),
                       stopping               ? 50
                       : accept_paused_until_ ? 100
                                              : 1000);
    if (n < 0 && errno != EINTR) return Status(Code::kIo, std::string("epoll_wait: ") + strerror(errno));
    const int64_t now = NowMs();
    if (accept_paused_until_ && now >= accept_paused_until_) {
      struct epoll_event ev {};
      ev.events = EPOLLIN;
      ev.data.fd = listen_fd_;
      epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, listen_fd_, &ev);
      accept_paused_until_ = 0;
    }
    for (int i = 0; i < n; i++) {
      const int fd = events[i].data.fd;
      if (fd == listen_fd_) {
        Accept(now);
        continue;
      }
      if (admin_ && admin_->Owns(fd)) {
        std::vector<AdminSocket::Ready> ready;
        admin_->OnEvent(fd, now, &ready);
        for (AdminSocket::Ready& r : ready) HandleAdmin(std::move(r));
        continue;
      }
      if (const TenantStore* store = StoreOfEventFd(fd)) {
        // A transaction finished: answer it, then let the tenant's sessions
        // dispatch what they held back meanwhile.
        if (!WorkerOf(store)->TakeCompletion()) continue;
        std::vector<Session*> tenant_sessions;
        for (auto& [sfd, s] : sessions_) {
          if (s->tenant() == store) tenant_sessions.push_back(s.get());
        }
        for (Session* s : tenant_sessions) Update(s, s->Drive(now));
        continue;
      }
      auto it = sessions_.find(fd);
      if (it == sessions_.end()) continue;
      Session* s = it->second.get();
      Update(s, s->Drive(now));
    }
    if (now - last_checkpoint_ms_ >= config_.audit_checkpoint_ms) CheckpointAudit();
    if (now - last_sweep >= 1000) {
      last_sweep = now;
      // Durability: what was applied is synced about once a second, and
      // the sessions that committed it are told (an unsolicited DURABLE).
      for (auto& [name, store] : tenants_) {
        StoreWorker* worker = WorkerOf(store.get());
        if (worker->busy()) continue;  // the worker's: next sweep
        if (store->DurableGeneration() >= store->Generation()) continue;
        SyncTenant(store.get(), name);
      }
      if (admin_) admin_->Expire(now);
      // A new CRL is in force within a second of its file changing.
      struct stat st {};
      if (stat(config_.tls_crl.c_str(), &st) == 0 &&
          (st.st_ino != crl_stat_.st_ino || st.st_mtim.tv_sec != crl_stat_.st_mtim.tv_sec ||
           st.st_mtim.tv_nsec != crl_stat_.st_mtim.tv_nsec || st.st_size != crl_stat_.st_size)) {
        ReloadTls("the CRL file changed");
      }
      if (now - crl_warned_ms_ >= 3600 * 1000) {
        crl_warned_ms_ = now;
        if (auto info = InspectCrl(config_.tls_crl, config_.tls_ca); info.ok() && info->next_update) {
          const int64_t left = info->next_update - time(nullptr);
          if (left <= 0) {
            Log(LogLevel::kError,
                "CRL %s is past its nextUpdate: every new session is refused until a new CRL is "
                "installed",
                config_.tls_crl.c_str());
          } else if (left < 7 * 86400) {
            Log(LogLevel::kWarning,
                "CRL %s: nextUpdate in %lld h; after it every new session is refused (crfs-pki crl)",
                config_.tls_crl.c_str(), static_cast<long long>(left / 3600));
          }
        }
      }
      std::vector<Session*> done;
      for (auto& [fd, s] : sessions_) {
        s->CheckDeadline(now);
        if (s->state() == Session::State::kDone) done.push_back(s.get());
      }
      for (Session* s : done) Update(s, 0);
    }
  }
  (void)Audit({{"ev", "crfsd.stop"}, {"pid", getpid()}});
  CheckpointAudit();
  Log(LogLevel::kInfo, "stopped: every request taken was answered and every tenant synced");
  return Status::Ok();
}

}  // namespace crfs::server
