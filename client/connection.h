// connection.h - the crfs client library: one TLS session to crfsd.
//
// Connection::Open connects, performs the TLS 1.3 handshake with the
// tenant's client certificate (ALPN crfs/1, the server verified against the
// CA and the host name or IP), sends HELLO and checks the HELLO_REPLY.
// Requests are then synchronous: Call() sends one request and returns its
// replies up to and including the FINAL_REPLY. Every reply is decoded by
// proto's codec; a malformed reply ends the connection with an error.
//
// Errors: Status; a FINAL_REPLY with a nonzero status becomes Code::kRemote
// with the errno's name and number and the server's text.
//
// Not thread-safe: one thread per Connection.
#pragma once

#include <openssl/ssl.h>

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "proto/frame_stream.h"
#include "proto/messages.h"
#include "proto/status.h"

namespace crfs::client {

struct ConnectOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 7420;
  std::string ca;    // PEM: the CA that issued the server's certificate
  std::string cert;  // PEM: this client's certificate
  std::string key;   // PEM: its key
  uint32_t max_payload = CRFS_MAX_PAYLOAD;
  int timeout_ms = 30000;  // per send/receive
  bool send_hello = true;  // false: stop after the TLS handshake (tests)
  // After a lost connection, how long Reconnect() keeps trying (0: it
  // does not). A transaction cut off is then resent (FileOps).
  int reconnect_ms = 0;
  // This client instance's id in HELLO (docs/protocol.md §6.4); all zero:
  // a random one per Connection, kept across its reconnects.
  std::array<uint8_t, 16> client_id{};
};

constexpr uint16_t kDefaultPort = 7420;

// HOST, HOST:PORT, [IPv6], [IPv6]:PORT or a bare IPv6 address into
// o->host and o->port (kDefaultPort when none is given); false if it is
// none of those or the port is not 1..65535.
bool ParseServerAddress(const std::string& server, ConnectOptions* o);

class Connection {
 public:
  static Result<std::unique_ptr<Connection>> Open(const ConnectOptions& options);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  const proto::HelloReply& hello() const { return hello_; }
  const std::array<uint8_t, 16>& client_id() const { return client_id_; }

  // A new session to the same server as the same client instance (same
  // client id, request ids go on), retried for options.reconnect_ms;
  // requests in flight are not resent here (the caller resends).
  Status Reconnect();
  bool can_reconnect() const { return options_.reconnect_ms > 0; }
  uint64_t reconnects() const { return reconnects_; }

  // One request; its replies, the FINAL_REPLY last. A nonzero status in the
  // FINAL_REPLY is still a successful Call (see Check()).
  Result<std::vector<proto::Frame>> Call(proto::Message request);
  // The same with a given request id: the fragments of one transaction
  // share theirs (NewId()), and a retransmission repeats it.
  Result<std::vector<proto::Frame>> CallAs(uint64_t id, proto::Message request);
  uint64_t NewId() { return next_id_++; }

  // Several requests pipelined: all are sent, then all replies collected.
  // result[i] holds the replies to requests[i], its FINAL_REPLY last.
  // Requests should total well under a socket buffer (kMaxPipelineBytes).
  Result<std::vector<std::vector<proto::Frame>>> CallMany(std::vector<proto::Message> requests);
  static constexpr size_t kMaxPipelineBytes = 64 << 10;

  // The items of `objectid` with key types in [min_type, max_type]
  // (following the server's continuations).
  Result<std::vector<proto::Item>> ItemsOf(uint64_t objectid, uint8_t min_type = 0, uint8_t max_type = 0xff);
  // The items with keys in [min, max] of one object (a query is answered
  // for one objectid: protocol.md §7), continuations followed.
  Result<std::vector<proto::Item>> ItemsIn(const proto::Key& min, const proto::Key& max);
  // Up to `len` bytes at `offset` (fewer at end of file), checksums verified.
  Result<std::vector<uint8_t>> Read(uint64_t objectid, uint64_t offset, uint32_t len);
  // Streams bytes [offset, offset + len) (or to end of file) to `sink` in
  // order, each piece's checksums verified first, keeping kReadWindow
  // DATA_READs in flight. Stops at the first error, the sink's included.
  Status ReadStream(uint64_t objectid, uint64_t offset, uint64_t len, const std::function<Status(proto::Bytes)>& sink);
  static constexpr size_t kReadWindow = 16;
  // The objectid of `path` ("/a/b"), looked up from the root one name at a time.
  Result<uint64_t> Lookup(const std::string& path);

  // Raw access for tests: bytes as they are, and one decoded frame.
  Status SendBytes(const std::vector<uint8_t>& bytes);
  Result<proto::Frame> Receive();

  // Frames and bytes sent to the server so far (HELLO included).
  uint64_t frames_sent() const { return frames_sent_; }
  uint64_t bytes_sent() const { return bytes_sent_; }

  // OK if `final` has status 0, else kRemote.
  static Status Check(const proto::Frame& final);

  // The generation of the client's view: the oldest generation a
  // FINAL_REPLY reported since StartView() (0: none since). Everything read
  // since was current then or later, so a transaction built from those
  // reads is based on it.
  void StartView() { view_generation_ = 0; }
  uint64_t view_generation() const { return view_generation_; }

 private:
  explicit Connection(const ConnectOptions& options) : options_(options) {}
  // Dials, handshakes and says HELLO (options_); Drop() undoes it
  // (`graceful`: with close_notify).
  Status Establish();
  void Drop(bool graceful);
  Status Hello(const ConnectOptions& options);

  ConnectOptions options_;
  std::array<uint8_t, 16> client_id_{};
  uint64_t reconnects_ = 0;
  int fd_ = -1;
  SSL_CTX* ctx_ = nullptr;
  SSL* ssl_ = nullptr;
  uint64_t next_id_ = 1;
  uint64_t frames_sent_ = 0, bytes_sent_ = 0;
  proto::FrameAssembler in_;
  proto::HelloReply hello_;
  uint64_t view_generation_ = 0;
};

}  // namespace crfs::client
