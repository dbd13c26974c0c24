#include "server/session.h"

#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "proto/checksum.h"
#include "proto/codec.h"
#include "proto/snoop.h"
#include "server/log.h"
#include "server/server.h"
#include "server/store_worker.h"
#include "server/tenant_store.h"
#include "server/tls_context.h"

namespace crfs::server {
namespace {

using proto::Frame;

}  // namespace

// Who may send a message type, and when.
enum class Session::Allowed { kNever, kFirst, kAfterHello };

struct Session::Route {
  Allowed allowed;
  void (Session::*handle)(const Frame&);
};

// The dispatch table: entry t-1 is message type t. Server-to-client types
// are kNever: a client sending one is a protocol error.
const Session::Route& Session::RouteFor(uint16_t type) {
  static const Route kRoutes[] = {
      /* FINAL_REPLY */ {Allowed::kNever, nullptr},
      /* ITEM_QUERY  */ {Allowed::kAfterHello, &Session::OnItemQuery},
      /* ITEM_RANGE  */ {Allowed::kNever, nullptr},
      /* LOCK        */ {Allowed::kAfterHello, &Session::OnNotImplemented},
      /* GRANT       */ {Allowed::kNever, nullptr},
      /* TRANS_FRAG  */ {Allowed::kAfterHello, &Session::OnTransFrag},
      /* REVOKE      */ {Allowed::kNever, nullptr},
      /* RELEASE     */ {Allowed::kAfterHello, &Session::OnNotImplemented},
      /* HELLO       */ {Allowed::kFirst, &Session::OnHello},
      /* HELLO_REPLY */ {Allowed::kNever, nullptr},
      /* DATA_READ   */ {Allowed::kAfterHello, &Session::OnDataRead},
      /* DATA        */ {Allowed::kNever, nullptr},
      /* DATA_WRITE  */ {Allowed::kAfterHello, &Session::OnNotImplemented},
      /* SNAPSHOT    */ {Allowed::kAfterHello, &Session::OnNotImplemented},
      /* PING        */ {Allowed::kAfterHello, &Session::OnPing},
      /* TRANS_REPLY */ {Allowed::kNever, nullptr},
      /* SYNC        */ {Allowed::kAfterHello, &Session::OnSync},
      /* DURABLE     */ {Allowed::kNever, nullptr},
      /* TREE_QUERY  */ {Allowed::kAfterHello, &Session::OnTreeQuery},
      /* OPEN        */ {Allowed::kAfterHello, &Session::OnOpen},
      /* CLOSE       */ {Allowed::kAfterHello, &Session::OnClose},
  };
  static_assert(sizeof(kRoutes) / sizeof(kRoutes[0]) == CRFS_MSG_TYPE_MAX);
  return kRoutes[type - 1];
}

Session::Session(Server* server, int fd, SSL* ssl, std::string peer, std::string host, uint64_t serial, int64_t now_ms)
    : server_(server),
      fd_(fd),
      ssl_(ssl),
      peer_(std::move(peer)),
      host_(std::move(host)),
      serial_(serial),
      deadline_ms_(now_ms + server->config().handshake_timeout_ms) {}

Session::~Session() {
  if (tenant_) {
    // The store may be the worker's right now (a transaction of another
    // session): let go of this session's open objects once it is free.
    TenantStore* store = tenant_;
    const uint64_t serial = serial_;
    server_->WorkerOf(store)->AfterJob([store, serial] { store->CloseAllHeld(serial); });
    if (audited_) {
      (void)server_->Audit({{"ev", "session.end"},
                            {"session", serial_},
                            {"tenant", id_.tenant},
                            {"reason", end_reason_},
                            {"frames_in", frames_in_},
                            {"frames_out", frames_out_}});
    }
    Log(LogLevel::kInfo, "session %llu ended: %s (tenant %s client %s, %llu frames in, %llu out)",
        static_cast<unsigned long long>(serial_), end_reason_.c_str(), id_.tenant.c_str(), id_.client.c_str(),
        static_cast<unsigned long long>(frames_in_), static_cast<unsigned long long>(frames_out_));
  }
  if (admitted_) server_->ReleaseSession(id_.tenant);
  LeaveHandshake();
  SSL_free(ssl_);
  close(fd_);
}

uint32_t Session::Drive(int64_t now_ms) {
  io_wants_read_ = io_wants_write_ = false;
  if (state_ == State::kHandshake) Handshake(now_ms);
  if (state_ != State::kHandshake) LeaveHandshake();
  // Requests decrypted but not yet read sit inside the SSL object, where
  // epoll cannot see them: keep going while they make progress.
  for (int round = 0; round < 64 && (state_ == State::kAwaitHello || state_ == State::kReady); round++) {
    const uint64_t before = frames_in_;
    Flush();
    ReadFrames(now_ms);
    Flush();
    const bool more = SSL_has_pending(ssl_) && out_.size() - out_pos_ < kOutputHighWater;
    if (!more || frames_in_ == before) break;
  }
  if (state_ == State::kClosing) {
    Flush();
    if (out_pos_ == out_.size()) Shutdown();
  }
  return WantedEvents();
}

void Session::StopReading() {
  stop_reading_ = true;
  if (state_ == State::kHandshake) state_ = State::kDone;
}

void Session::LeaveHandshake() {
  if (!in_handshake_) return;
  in_handshake_ = false;
  server_->HandshakeEnded(host_);
}

void Session::CheckDeadline(int64_t now_ms) {
  if (state_ == State::kDone || now_ms < deadline_ms_) return;
  if (state_ == State::kHandshake) {
    LogPeer(LogLevel::kWarning, "session %llu from %s: TLS handshake timed out",
            static_cast<unsigned long long>(serial_), peer_.c_str());
    state_ = State::kDone;
    return;
  }
  End("idle timeout");
  state_ = State::kDone;  // a peer that does not read gets no graceful close
}

uint32_t Session::WantedEvents() const {
  switch (state_) {
    case State::kDone: return 0;
    case State::kHandshake: return io_wants_write_ ? EPOLLOUT : EPOLLIN;
    default: break;
  }
  uint32_t ev = 0;
  if (out_pos_ < out_.size() || io_wants_write_) ev |= EPOLLOUT;
  if (held_ || stop_reading_) {
    // Nothing to read until the store is free (the server drives this
    // session again then), or ever again (crfsd is stopping). With output
    // left: one wake-up at most for it; without: kPaused, no events at all
    // (a hung-up peer would otherwise wake the loop over and over).
    return ev ? ev | EPOLLONESHOT : kPaused;
  }
  if (io_wants_read_ || (state_ != State::kClosing && out_.size() - out_pos_ < kOutputHighWater)) ev |= EPOLLIN;
  return ev ? ev : EPOLLIN;
}

void Session::Handshake(int64_t now_ms) {
  ERR_clear_error();
  int r = SSL_accept(ssl_);
  if (r != 1) {
    int e = SSL_get_error(ssl_, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
      (e == SSL_ERROR_WANT_WRITE ? io_wants_write_ : io_wants_read_) = true;
      return;
    }
    long verify = SSL_get_verify_result(ssl_);
    std::string why =
        verify != X509_V_OK ? std::string("certificate: ") + X509_verify_cert_error_string(verify) : TlsErrorString();
    if (why.empty()) why = e == SSL_ERROR_SYSCALL ? "connection closed" : "error " + std::to_string(e);
    LogPeer(LogLevel::kWarning, "session %llu from %s: TLS handshake failed: %s",
            static_cast<unsigned long long>(serial_), peer_.c_str(), why.c_str());
    state_ = State::kDone;
    return;
  }
  const unsigned char* alpn = nullptr;
  unsigned int alpn_len = 0;
  SSL_get0_alpn_selected(ssl_, &alpn, &alpn_len);
  X509* cert = SSL_get0_peer_certificate(ssl_);
  auto id = IdentityFromCertificate(cert);
  std::string refusal;
  if (alpn_len != sizeof(kAlpn) - 1 || std::memcmp(alpn, kAlpn + 1, alpn_len) != 0) {
    refusal = "ALPN crfs/1 not negotiated";
  } else if (SSL_version(ssl_) != TLS1_3_VERSION) {
    refusal = "not TLS 1.3";
  } else if (!id.ok()) {
    refusal = id.status().message();
  } else if (id->trust_domain != server_->config().trust_domain) {
    refusal = "trust domain " + id->trust_domain + " is not " + server_->config().trust_domain;
  } else if (!(tenant_ = server_->Tenant(id->tenant))) {
    refusal = "unknown tenant '" + id->tenant + "'";
  } else if (server_->Revoked(cert)) {
    // Its handshake was checked against a CRL that a reload replaced since.
    refusal = "certificate revoked (by the CRL loaded during its handshake)";
  } else if (!(admitted_ = server_->AdmitSession(id->tenant))) {
    refusal = "tenant " + id->tenant + " has too many sessions (limits.max_sessions_per_tenant)";
  }
  fingerprint_ = CertificateFingerprint(cert);
  if (!refusal.empty()) {
    LogPeer(LogLevel::kWarning, "session %llu from %s: refused: %s (cert sha256 %s)",
            static_cast<unsigned long long>(serial_), peer_.c_str(), refusal.c_str(), fingerprint_.c_str());
    server_->AuditRefusal({{"ev", "session.refused"},
                           {"session", serial_},
                           {"peer", peer_},
                           {"cert", fingerprint_},
                           {"client", id.ok() ? id->uri : std::string()},
                           {"reason", refusal}});
    tenant_ = nullptr;
    state_ = State::kClosing;
    return;
  }
  id_ = *id;
  credentials_ = server_->config().FindTenant(id_.tenant)->CredentialsOf(id_.client);
  Log(LogLevel::kInfo, "session %llu from %s: tenant %s client %s cert sha256 %s",
      static_cast<unsigned long long>(serial_), peer_.c_str(), id_.tenant.c_str(), id_.client.c_str(),
      fingerprint_.c_str());
  // A session no record tells of is not served.
  if (!server_->Audit({{"ev", "session.start"},
                       {"session", serial_},
                       {"peer", peer_},
                       {"tenant", id_.tenant},
                       {"client", id_.uri},
                       {"cert", fingerprint_},
                       {"uid", credentials_.uid},
                       {"gid", credentials_.gid}})) {
    end_reason_ = "the audit log cannot be written";
    state_ = State::kClosing;
    return;
  }
  audited_ = true;
  state_ = State::kAwaitHello;
  deadline_ms_ = now_ms + server_->config().idle_timeout_ms;
}

void Session::ReadFrames(int64_t now_ms) {
  uint8_t buf[16384];
  if (held_) {
    if (StoreBusy() || !(state_ == State::kAwaitHello || state_ == State::kReady)) return;
    proto::Frame f = std::move(*held_);
    held_.reset();
    payload_bytes_ = held_payload_bytes_;
    Dispatch(f);
  }
  while (!held_ && !stop_reading_ && (state_ == State::kAwaitHello || state_ == State::kReady) &&
         out_.size() - out_pos_ < kOutputHighWater) {
    ERR_clear_error();
    int n = SSL_read(ssl_, buf, static_cast<int>(std::min(sizeof(buf), in_.Wanted())));
    if (n <= 0) {
      int e = SSL_get_error(ssl_, n);
      if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        (e == SSL_ERROR_WANT_WRITE ? io_wants_write_ : io_wants_read_) = true;
        return;
      }
      end_reason_ = e == SSL_ERROR_ZERO_RETURN ? "client closed the session" : "connection lost";
      state_ = e == SSL_ERROR_ZERO_RETURN ? State::kClosing : State::kDone;
      return;
    }
    Status s = in_.Push(proto::Bytes(buf, static_cast<size_t>(n)));
    if (!s.ok()) return ProtocolError(s.ToString(), in_.header());
    auto frame = in_.Pop();
    if (!frame.ok()) return ProtocolError(frame.status().ToString(), in_.header());
    if (!*frame) continue;
    frames_in_++;
    deadline_ms_ = now_ms + server_->config().idle_timeout_ms;
    payload_bytes_ = in_.header() ? in_.header()->bytes : 0;
    if (StoreBusy()) {  // every handler may need the store: wait for it
      held_ = std::move(**frame);
      held_payload_bytes_ = payload_bytes_;
      return;
    }
    Dispatch(**frame);
  }
}

void Session::Flush() {
  while (out_pos_ < out_.size()) {
    ERR_clear_error();
    int n = SSL_write(ssl_, out_.data() + out_pos_, static_cast<int>(std::min<size_t>(out_.size() - out_pos_, 16384)));
    if (n <= 0) {
      int e = SSL_get_error(ssl_, n);
      if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
        (e == SSL_ERROR_WANT_WRITE ? io_wants_write_ : io_wants_read_) = true;
        break;
      }
      if (end_reason_.empty()) end_reason_ = "connection lost while writing";
      state_ = State::kDone;
      return;
    }
    out_pos_ += static_cast<size_t>(n);
  }
  if (out_pos_ == out_.size()) {
    out_.clear();
    out_pos_ = 0;
  } else if (out_pos_ > (1 << 20)) {
    out_.erase(out_.begin(), out_.begin() + static_cast<long>(out_pos_));
    out_pos_ = 0;
  }
}

void Session::Shutdown() {
  ERR_clear_error();
  SSL_shutdown(ssl_);  // sends close_notify; the peer's is not awaited
  state_ = State::kDone;
}

bool Session::CertificateIn(X509_CRL* crl) const {
  if (state_ == State::kHandshake || !crl) return false;
  X509* cert = SSL_get0_peer_certificate(ssl_);
  X509_REVOKED* entry = nullptr;
  return cert && X509_CRL_get0_by_cert(crl, &entry, cert) == 1;
}

void Session::EndRevoked() {
  Log(LogLevel::kWarning, "session %llu (tenant %s client %s): its certificate (sha256 %s) is revoked: ended",
      static_cast<unsigned long long>(serial_), id_.tenant.c_str(), id_.client.c_str(), fingerprint_.c_str());
  (void)server_->Audit({{"ev", "session.revoked"},
                        {"session", serial_},
                        {"tenant", id_.tenant},
                        {"client", id_.uri},
                        {"cert", fingerprint_}});
  End("certificate revoked");
}

void Session::End(const std::string& why) {
  if (end_reason_.empty()) end_reason_ = why;
  if (state_ != State::kDone) state_ = State::kClosing;
}

bool Session::Send(uint64_t id, uint32_t info, proto::Message msg) {
  auto bytes = proto::EncodeFrame(Frame{id, info, std::move(msg)});
  bool ok = bytes.ok();
  if (!ok) {
    // Our own reply does not encode: a server bug, reported to the client.
    Log(LogLevel::kError, "session %llu: cannot encode reply: %s", static_cast<unsigned long long>(serial_),
        bytes.status().ToString().c_str());
    bytes =
        proto::EncodeFrame(Frame{id, EIO, proto::FinalReply{"server could not encode its reply", FinalGeneration()}});
    if (!bytes.ok()) {
      End("reply encoding failed");
      return false;
    }
  }
  out_.insert(out_.end(), bytes->begin(), bytes->end());
  frames_out_++;
  return ok;
}

bool Session::StoreBusy() const { return tenant_ && server_->WorkerOf(tenant_)->busy(); }

uint64_t Session::FinalGeneration() const { return hello_done_ && tenant_ && !StoreBusy() ? tenant_->Generation() : 0; }

void Session::Final(uint64_t id, int err, const std::string& text) {
  // Details quote client-sent names: as the decoder prints them, so the
  // text is always UTF-8 (ASCII) on one line (protocol.md §4).
  Send(id, static_cast<uint32_t>(err),
       proto::FinalReply{proto::EscapeText(text, CRFS_MAX_ERROR_TEXT), FinalGeneration()});
}

void Session::ProtocolError(const std::string& why, const std::optional<proto::Header>& header) {
  LogPeer(LogLevel::kWarning, "session %llu from %s (tenant %s): protocol error, ending session: %s",
          static_cast<unsigned long long>(serial_), peer_.c_str(), id_.tenant.c_str(), why.c_str());
  // A FINAL_REPLY needs the request's id; without a decoded header there is
  // none, and the connection just closes.
  if (header && header->id != 0) Final(header->id, EPROTO, why);
  End("protocol error: " + why);
}

void Session::Dispatch(const Frame& f) {
  const uint16_t type = proto::MessageType(f.msg);
  const Route& route = RouteFor(type);
  const char* name = proto::MessageTypeName(type);
  switch (route.allowed) {
    case Allowed::kNever:
      return ProtocolError(std::string("a client may not send ") + name, proto::Header{f.id, 0, 0, type});
    case Allowed::kFirst:
      if (state_ != State::kAwaitHello) return ProtocolError("second HELLO", proto::Header{f.id, 0, 0, type});
      break;
    case Allowed::kAfterHello:
      if (state_ != State::kReady) return ProtocolError("first request must be HELLO", proto::Header{f.id, 0, 0, type});
      break;
  }
  (this->*route.handle)(f);
}

void Session::OnHello(const Frame& f) {
  const auto& h = std::get<proto::Hello>(f.msg);
  if (h.version_min > CRFS_PROTO_VERSION) {
    Final(f.id, EPROTONOSUPPORT, "this server speaks protocol version 1 only");
    return End("no common protocol version");
  }
  if (!h.capability.empty()) {
    // Fail closed: a capability may restrict what the session may do, and
    // this server cannot verify one yet.
    Final(f.id, EOPNOTSUPP, "this server does not accept capabilities yet");
    return End("capability offered");
  }
  proto::HelloReply r;
  r.version = CRFS_PROTO_VERSION;
  r.features = 0;
  max_payload_ = std::min<uint32_t>(h.max_payload, CRFS_MAX_PAYLOAD);
  r.max_payload = max_payload_;
  // The session's limit governs both directions (protocol.md §3): a client
  // frame past it is refused before it is buffered, as one past the
  // protocol's limit is.
  in_.set_max_payload(max_payload_);
  r.lease_ms = 30000;
  if (RAND_bytes(reinterpret_cast<unsigned char*>(&r.session_id), sizeof(r.session_id)) != 1) r.session_id = serial_;
  r.root_objectid = CRFS_ROOT_OBJECTID;
  r.generation = tenant_->Generation();
  r.uid = credentials_.uid;
  r.gid = credentials_.gid;
  client_key_.client = id_.client;
  client_key_.id = h.client_id;
  has_client_id_ = !IsZero(h.client_id);
  if (!Send(f.id, 0, r)) return End("HELLO_REPLY did not encode");
  hello_done_ = true;
  Final(f.id, 0);
  state_ = State::kReady;
}

void Session::OnPing(const Frame& f) { Final(f.id, 0); }

void Session::OnItemQuery(const Frame& f) {
  proto::ItemQuery q = std::get<proto::ItemQuery>(f.msg);
  q.bytes = std::min<uint32_t>(q.bytes, max_payload_);
  std::vector<proto::ItemRange> ranges;
  RequestError err;
  const policy::OpKind op =
      tenant_->KnownType(q.key.objectid) == CRFS_FT_DIR ? policy::OpKind::kReaddir : policy::OpKind::kRead;
  // A refusal holds back the contents only: the object's inode stays
  // visible, as with a directory the user may not read.
  RequestError denied;
  const bool allowed = PolicyAllowsRead(op, q.key.objectid, &denied);
  if (!tenant_->Query(serial_, credentials_, q, allowed ? nullptr : &denied, &ranges, &err)) {
    return Final(f.id, err.err, err.text);
  }
  SendRanges(f.id, std::move(ranges));
}

void Session::SendRanges(uint64_t id, std::vector<proto::ItemRange> ranges) {
  for (auto& r : ranges) {
    if (!Send(id, 0, std::move(r))) return;
  }
  Final(id, 0);
}

void Session::OnTreeQuery(const Frame& f) {
  proto::TreeQuery q = std::get<proto::TreeQuery>(f.msg);
  q.bytes = std::min<uint32_t>(q.bytes, max_payload_);
  std::vector<proto::ItemRange> ranges;
  RequestError err;
  if (!PolicyAllowsRead(policy::OpKind::kReaddir, q.objectid, &err)) return Final(f.id, err.err, err.text);
  const PolicyCheck check = Check();
  if (!tenant_->TreeQuery(credentials_, &check, q, &ranges, &err)) return Final(f.id, err.err, err.text);
  SendRanges(f.id, std::move(ranges));
}

void Session::OnDataRead(const Frame& f) {
  const proto::DataRead& r = std::get<proto::DataRead>(f.msg);
  // A full DATA frame (64 KiB + checksums) fits every legal max_payload.
  static_assert(CRFS_MIN_PAYLOAD >= sizeof(struct crfs_msg_data) + CRFS_MAX_DATA_BYTES + 4 * 16);
  std::vector<proto::Data> data;
  RequestError err;
  if (!PolicyAllowsRead(policy::OpKind::kRead, r.objectid, &err)) return Final(f.id, err.err, err.text);
  if (!tenant_->Read(serial_, credentials_, r, &data, &err)) return Final(f.id, err.err, err.text);
  for (auto& d : data) {
    if (!Send(f.id, 0, std::move(d))) return;
  }
  Final(f.id, 0);
}

void Session::OnTransFrag(const Frame& f) {
  const auto& frag = std::get<proto::TransFrag>(f.msg);
  Transaction t;
  RequestError err;
  switch (transactions_.Add(f.id, frag, payload_bytes_, &t, &err)) {
    case TransactionAssembler::Outcome::kNeedMore: return Final(f.id, 0);  // buffered (protocol.md §6.1)
    case TransactionAssembler::Outcome::kRefused: return Final(f.id, err.err, err.text);
    case TransactionAssembler::Outcome::kComplete: break;
  }
  // Its TRANS_REPLY must fit this session's frames (protocol.md §3).
  t.max_reply_map = std::min<size_t>(CRFS_MAX_TRANS_MAP, (max_payload_ - 16) / 16);
  // A transaction answered before, in this session or (applied) in an
  // earlier one of this client instance: the same answer, no second
  // application (protocol.md §6.4) -- if it is the same transaction.
  const BodyDigest digest = TransactionDigest(t);
  const Answer* before = nullptr;
  Answer kept;
  if (auto done = answered_.find(f.id); done != answered_.end()) {
    before = &done->second;
  } else if (const StoredAnswer* a = has_client_id_ ? tenant_->AnswerTo(client_key_, f.id) : nullptr) {
    kept.err = a->err;
    kept.text = a->text;
    kept.reply = a->reply;
    kept.digest = a->digest;
    if (kept.err == 0 && kept.reply.generation <= tenant_->DurableGeneration()) {
      kept.reply.flags |= CRFS_TRANS_R_DURABLE;
    } else if (kept.err == 0) {
      awaiting_durable_ = std::max(awaiting_durable_, kept.reply.generation);
    }
    before = &kept;
  }
  if (before) {
    if (before->digest != digest) {
      return Final(f.id, EEXIST,
                   "transaction id " + std::to_string(f.id) +
                       " was used for another transaction (answered before; ids are not reused)");
    }
    if (before->err == 0 && !Send(f.id, 0, before->reply)) return;
    return Final(f.id, before->err, before->text);
  }
  err = ValidateTransaction(t, tenant_->ids());
  if (err.err != 0) {
    Answer a;
    a.err = err.err;
    a.text = err.text;
    a.digest = digest;
    return Answered(f.id, std::move(a));
  }
  // The commit runs on the tenant's store worker; this session, and every
  // other of the tenant, holds its next frame until the answer is sent.
  struct Job {
    Transaction t;
    std::optional<StoredAnswer> who_txn;
    CommitResult result;
    RequestError err;
    bool ok = false;
  };
  auto job = std::make_shared<Job>();
  job->t = std::move(t);
  if (has_client_id_) {
    job->who_txn.emplace();
    job->who_txn->who = client_key_;
    job->who_txn->txn = f.id;
    job->who_txn->digest = digest;
  }
  TenantStore* store = tenant_;
  Server* server = server_;
  const uint64_t serial = serial_, id = f.id;
  const ClientCredentials who = credentials_;
  server_->WorkerOf(store)->Submit(
      [job, store, serial, who, check = Check()] {
        job->ok =
            store->Commit(job->t, serial, who, job->who_txn ? &*job->who_txn : nullptr, check, &job->result, &job->err);
      },
      [job, server, serial, id, digest] {
        Session* s = server->FindSession(serial);
        if (!s) return;  // ended meanwhile: nobody to answer (a resend gets the kept answer)
        Answer a;
        a.digest = digest;
        if (job->ok) {
          a.reply.generation = job->result.generation;
          a.reply.flags = CRFS_TRANS_R_APPLIED | (job->result.durable ? CRFS_TRANS_R_DURABLE : 0);
          a.reply.map = std::move(job->result.map);
          if (!job->result.durable) s->awaiting_durable_ = std::max(s->awaiting_durable_, job->result.generation);
        } else {
          a.err = job->err.err;
          a.text = job->err.text;
        }
        s->Answered(id, std::move(a));
      });
}

void Session::Answered(uint64_t id, Answer a) {
  // Bounded in count and in map entries (a map may hold 65,536).
  answered_entries_ += a.reply.map.size();
  while (!answered_order_.empty() &&
         (answered_order_.size() >= kAnswersRemembered || answered_entries_ > kAnswerEntriesRemembered)) {
    auto old = answered_.find(answered_order_.front());
    answered_entries_ -= old->second.reply.map.size();
    answered_.erase(old);
    answered_order_.pop_front();
  }
  answered_order_.push_back(id);
  const Answer& kept = answered_.emplace(id, std::move(a)).first->second;
  if (kept.err == 0 && !Send(id, 0, kept.reply)) return;
  Final(id, kept.err, kept.text);
}

bool Session::NotifyDurable(uint64_t generation) {
  if (awaiting_durable_ == 0 || awaiting_durable_ > generation || state_ != State::kReady) return false;
  awaiting_durable_ = 0;
  return Send(0, 0, proto::Durable{generation});
}

void Session::OnSync(const Frame& f) {
  // syncfs can take a while: on the tenant's worker, like a commit.
  struct Job {
    uint64_t generation = 0;
    RequestError err;
    bool ok = false;
  };
  auto job = std::make_shared<Job>();
  TenantStore* store = tenant_;
  Server* server = server_;
  const uint64_t serial = serial_, id = f.id;
  audit::AuditLog* log = server_->audit();
  server_->WorkerOf(store)->Submit(
      [job, store, log] { job->ok = SyncAuditFirst(log, &job->err) && store->Sync(&job->generation, &job->err); },
      [job, server, serial, id] {
        Session* s = server->FindSession(serial);
        if (!s) return;
        if (!job->ok) return s->Final(id, job->err.err, job->err.text);
        if (s->awaiting_durable_ <= job->generation) s->awaiting_durable_ = 0;
        if (!s->Send(id, 0, proto::Durable{job->generation})) return;
        s->Final(id, 0);
      });
}

PolicyCheck Session::Check() const {
  return PolicyCheck{server_->policy(), id_.tenant,       id_.uri, credentials_.uid,
                     credentials_.gid,  server_->audit(), serial_, fingerprint_};
}

bool Session::PolicyAllowsRead(policy::OpKind op, uint64_t ino, RequestError* err) {
  std::shared_ptr<const policy::Policy> pol = server_->policy();
  if (const RequestError* known = reads_.Find(pol, tenant_->paths_epoch(), ino, op)) {
    *err = *known;
    return known->err == 0;
  }
  RequestError e;
  PolicyCheck check = Check();
  check.policy = std::move(pol);
  const bool ok = tenant_->PolicyPermitsRead(check, op, ino, &e);
  reads_.Remember(ino, op, e);
  *err = e;
  return ok;
}

void Session::OnOpen(const Frame& f) {
  const auto& m = std::get<proto::Open>(f.msg);
  RequestError err;
  if (!PolicyAllowsRead(policy::OpKind::kOpen, m.objectid, &err)) return Final(f.id, err.err, err.text);
  if (!tenant_->HoldOpen(serial_, credentials_, m.objectid, m.flags, &err)) return Final(f.id, err.err, err.text);
  Final(f.id, 0);
}

void Session::OnClose(const Frame& f) {
  const auto& m = std::get<proto::Close>(f.msg);
  RequestError err;
  if (!tenant_->CloseHeld(serial_, m.objectid, &err)) return Final(f.id, err.err, err.text);
  Final(f.id, 0);
}

void Session::OnNotImplemented(const Frame& f) {
  Final(f.id, EOPNOTSUPP,
        std::string(proto::MessageTypeName(proto::MessageType(f.msg))) + " is not implemented by this server yet");
}

}  // namespace crfs::server
