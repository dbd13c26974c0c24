// session.h - one client connection: TLS handshake, identity, framing and
// request dispatch, driven by the event loop (server.h).
//
// States: kHandshake -> kAwaitHello -> kReady -> kClosing -> kDone.
//  - kHandshake: non-blocking TLS accept; on success the peer certificate's
//    SPIFFE identity must name this server's trust domain and a configured
//    tenant, else the session ends (logged).
//  - kAwaitHello: only HELLO is accepted.
//  - kReady: requests of the dispatch table (session.cc) are served.
//  - kClosing: queued output is flushed, close_notify sent, then kDone.
// A frame that does not decode, or a message a client may not send, is a
// protocol error: EPROTO to that request (if its header decoded), then
// kClosing. Request errors (ENOENT, ...) are FINAL_REPLYs; the session goes on.
//
// Output is buffered; above kOutputHighWater the session stops reading
// requests until the client has taken its replies, so a client that does
// not read cannot make crfsd buffer without bound.
//
// Transactions commit on the tenant's store worker (store_worker.h); while
// one runs, every session of that tenant holds the next frame it decodes
// (held_) and reads nothing more, so requests are still answered in order
// and never touch a store the worker owns; sessions of other tenants go on.
//
// Not thread-safe: owned and driven by one event loop thread.
#pragma once

#include <openssl/ssl.h>
#include <sys/epoll.h>
#include <sys/types.h>

#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "proto/frame_stream.h"
#include "proto/messages.h"
#include "server/answers.h"
#include "server/config.h"
#include "server/identity.h"
#include "server/policy_gate.h"
#include "server/transaction.h"

namespace crfs::server {

class Server;
class TenantStore;

class Session {
 public:
  enum class State { kHandshake, kAwaitHello, kReady, kClosing, kDone };

  // `peer` is the address with its port, `host` without (for the
  // server's per-address handshake count, server.h).
  Session(Server* server, int fd, SSL* ssl, std::string peer, std::string host, uint64_t serial, int64_t now_ms);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // Makes all the progress possible without blocking; returns the epoll
  // events to wait for next (0 once kDone; kPaused: none until the server
  // drives it again, after its tenant's store worker finished).
  static constexpr uint32_t kPaused = EPOLLONESHOT;
  uint32_t Drive(int64_t now_ms);
  // Ends the session if its handshake or idle deadline has passed.
  void CheckDeadline(int64_t now_ms);
  // crfsd is stopping (SIGTERM): a session in its handshake ends at once;
  // any other reads no more requests, but still dispatches the frame it
  // holds and answers everything it took (the server drives it).
  void StopReading();
  // Ends the session with close_notify once its replies are flushed.
  void Close(const std::string& why) { End(why); }
  // Holds a frame it has read but not yet dispatched.
  bool holding() const { return held_.has_value(); }

  int fd() const { return fd_; }
  uint64_t serial() const { return serial_; }
  State state() const { return state_; }
  TenantStore* tenant() const { return tenant_; }
  // Queues an unsolicited DURABLE if this session has applied transactions
  // up to `generation` that it was not yet told are durable; true if it did
  // (the caller then drives the session to send it).
  bool NotifyDurable(uint64_t generation);

  static constexpr size_t kOutputHighWater = 4 << 20;

 private:
  void Handshake(int64_t now_ms);
  void ReadFrames(int64_t now_ms);
  void Flush();
  void Shutdown();
  uint32_t WantedEvents() const;

  enum class Allowed;
  struct Route;
  static const Route& RouteFor(uint16_t type);
  void Dispatch(const proto::Frame& frame);
  void OnHello(const proto::Frame& f);
  void OnPing(const proto::Frame& f);
  void OnItemQuery(const proto::Frame& f);
  void OnDataRead(const proto::Frame& f);
  void OnTreeQuery(const proto::Frame& f);
  void OnTransFrag(const proto::Frame& f);
  void OnSync(const proto::Frame& f);
  void OnOpen(const proto::Frame& f);
  void OnClose(const proto::Frame& f);
  void OnNotImplemented(const proto::Frame& f);
  // The policy in force and this session's requester, for a commit.
  PolicyCheck Check() const;
  // Read-side policy (policy_gate.h): decided once per object and op until
  // the policy or the tenant's paths change.
  bool PolicyAllowsRead(policy::OpKind op, uint64_t ino, RequestError* err);
  ReadDecisions reads_;

  // Queues a reply; false if it could not be encoded (the request has then
  // been answered with EIO and the handler must stop).
  bool Send(uint64_t id, uint32_t info, proto::Message msg);
  void Final(uint64_t id, int err, const std::string& text = "");
  // The generation a FINAL_REPLY carries: the tenant's once HELLO is answered, else 0.
  uint64_t FinalGeneration() const;
  // A query's answer: the ranges, then FINAL_REPLY 0.
  void SendRanges(uint64_t id, std::vector<proto::ItemRange> ranges);
  void ProtocolError(const std::string& why, const std::optional<proto::Header>& header);
  void End(const std::string& why);

 public:
  // Is this session's client certificate listed in `crl` (a CRL loaded
  // after its handshake)? False during the handshake.
  bool CertificateIn(X509_CRL* crl) const;
  // Ends it for a revoked certificate: logged and audited
  // ("session.revoked"); its requests already read are answered.
  void EndRevoked();

 private:
  Server* server_;
  int fd_;
  SSL* ssl_;
  std::string peer_;
  std::string host_;
  bool in_handshake_ = true;  // counted in the server's handshakes in progress
  void LeaveHandshake();
  uint64_t serial_;
  State state_ = State::kHandshake;
  int64_t deadline_ms_;
  // What the last SSL calls of this Drive() were blocked on.
  bool io_wants_read_ = false;
  bool io_wants_write_ = false;
  bool admitted_ = false;  // counted in the server's per-tenant sessions
  bool hello_done_ = false;
  bool stop_reading_ = false;  // StopReading()

  ClientIdentity id_;
  std::string fingerprint_;
  bool audited_ = false;  // its session.start is in the audit log (and so will its session.end be)
  TenantStore* tenant_ = nullptr;
  ClientCredentials credentials_;            // who this client acts as in its tenant
  ClientKey client_key_;                     // this client instance (HELLO client_id)
  bool has_client_id_ = false;               // client_id was not all zero
  uint32_t max_payload_ = CRFS_MAX_PAYLOAD;  // the client's limit for our replies

  proto::FrameAssembler in_;
  size_t payload_bytes_ = 0;  // of the frame being dispatched
  // A frame read while the tenant's store was busy with a transaction
  // (store_worker.h): dispatched once it is free, before anything else is read.
  std::optional<proto::Frame> held_;
  size_t held_payload_bytes_ = 0;
  bool StoreBusy() const;
  TransactionAssembler transactions_;
  // Answers to this session's finished transactions, by id, for
  // retransmissions (the oldest forgotten first).
  struct Answer {
    int err = 0;
    std::string text;
    proto::TransReply reply;
    BodyDigest digest{};  // of the transaction answered (answers.h)
  };
  // Records and sends the answer to transaction `id` (also for retransmissions).
  void Answered(uint64_t id, Answer a);
  static constexpr size_t kAnswersRemembered = 1024;
  static constexpr size_t kAnswerEntriesRemembered = 1 << 17;  // ~2 MiB of provisional maps
  size_t answered_entries_ = 0;
  std::unordered_map<uint64_t, Answer> answered_;
  uint64_t awaiting_durable_ = 0;  // newest generation applied but not yet reported durable
  std::deque<uint64_t> answered_order_;
  std::vector<uint8_t> out_;
  size_t out_pos_ = 0;
  uint64_t frames_in_ = 0, frames_out_ = 0;
  std::string end_reason_;
};

}  // namespace crfs::server
