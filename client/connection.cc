#include "client/connection.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <deque>
#include <thread>

#include "proto/checksum.h"
#include "proto/codec.h"

namespace crfs::client {
namespace {

constexpr unsigned char kAlpn[] = {6, 'c', 'r', 'f', 's', '/', '1'};

Status TlsFail(const std::string& what) {
  unsigned long e = ERR_get_error();
  char buf[256] = "";
  if (e) ERR_error_string_n(e, buf, sizeof(buf));
  ERR_clear_error();
  return Status(Code::kIo, what + (buf[0] ? std::string(": ") + buf : ""));
}

Result<int> Dial(const ConnectOptions& o) {
  struct addrinfo hints {};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  struct addrinfo* ai = nullptr;
  const std::string port = std::to_string(o.port);
  int rc = getaddrinfo(o.host.c_str(), port.c_str(), &hints, &ai);
  if (rc != 0) return Status(Code::kIo, o.host + ": " + gai_strerror(rc));
  int fd = -1, err = 0;
  for (struct addrinfo* a = ai; a && fd < 0; a = a->ai_next) {
    fd = socket(a->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0 && connect(fd, a->ai_addr, a->ai_addrlen) != 0) {
      err = errno;
      close(fd);
      fd = -1;
    }
  }
  freeaddrinfo(ai);
  if (fd < 0) return Status(Code::kIo, "connect " + o.host + ":" + port + ": " + strerror(err));
  struct timeval tv {
    o.timeout_ms / 1000, (o.timeout_ms % 1000) * 1000
  };
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  return fd;
}

}  // namespace

Result<std::unique_ptr<Connection>> Connection::Open(const ConnectOptions& o) {
  std::unique_ptr<Connection> c(new Connection(o));
  c->client_id_ = o.client_id;
  if (std::all_of(c->client_id_.begin(), c->client_id_.end(), [](uint8_t b) { return b == 0; }) &&
      RAND_bytes(c->client_id_.data(), static_cast<int>(c->client_id_.size())) != 1) {
    return TlsFail("random client id");
  }
  CRFS_RETURN_IF_ERROR(c->Establish());
  return c;
}

void Connection::Drop(bool graceful) {
  if (ssl_) {
    // A lost connection gets no close_notify: writing to it could only fail
    // (or raise SIGPIPE).
    if (!graceful) SSL_set_quiet_shutdown(ssl_, 1);
    SSL_shutdown(ssl_);
    SSL_free(ssl_);
    ssl_ = nullptr;
  }
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
  if (ctx_) SSL_CTX_free(ctx_);
  ctx_ = nullptr;
  in_ = proto::FrameAssembler();
}

Status Connection::Establish() {
  const ConnectOptions& o = options_;
  ctx_ = SSL_CTX_new(TLS_client_method());
  if (!ctx_) return TlsFail("SSL_CTX_new");
  if (SSL_CTX_set_min_proto_version(ctx_, TLS1_3_VERSION) != 1) return TlsFail("TLS 1.3");
  if (SSL_CTX_load_verify_locations(ctx_, o.ca.c_str(), nullptr) != 1) return TlsFail("CA " + o.ca);
  if (!o.cert.empty() && SSL_CTX_use_certificate_chain_file(ctx_, o.cert.c_str()) != 1) {
    return TlsFail("certificate " + o.cert);
  }
  if (!o.key.empty() && SSL_CTX_use_PrivateKey_file(ctx_, o.key.c_str(), SSL_FILETYPE_PEM) != 1) {
    return TlsFail("key " + o.key);
  }
  SSL_CTX_set_verify(ctx_, SSL_VERIFY_PEER, nullptr);
  SSL_CTX_set_read_ahead(ctx_, 1);  // whole socket reads, not two syscalls per record
  if (SSL_CTX_set_alpn_protos(ctx_, kAlpn, sizeof(kAlpn)) != 0) return TlsFail("ALPN");
  auto fd = Dial(o);
  if (!fd.ok()) return fd.status();
  fd_ = *fd;
  ssl_ = SSL_new(ctx_);
  if (!ssl_ || SSL_set_fd(ssl_, fd_) != 1) return TlsFail("SSL_new");
  // The server must prove the name or address we dialled.
  unsigned char ip[16];
  bool pinned;
  if (inet_pton(AF_INET, o.host.c_str(), ip) == 1 || inet_pton(AF_INET6, o.host.c_str(), ip) == 1) {
    pinned = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl_), o.host.c_str()) == 1;
  } else {
    pinned = SSL_set1_host(ssl_, o.host.c_str()) == 1 && SSL_set_tlsext_host_name(ssl_, o.host.c_str()) == 1;
  }
  if (!pinned) return TlsFail("cannot check the server's name " + o.host);
  ERR_clear_error();
  if (SSL_connect(ssl_) != 1) {
    long v = SSL_get_verify_result(ssl_);
    if (v != X509_V_OK)
      return Status(Code::kIo, std::string("server certificate: ") + X509_verify_cert_error_string(v));
    return TlsFail("TLS handshake with " + o.host);
  }
  const unsigned char* alpn = nullptr;
  unsigned int alpn_len = 0;
  SSL_get0_alpn_selected(ssl_, &alpn, &alpn_len);
  if (alpn_len != 6 || std::memcmp(alpn, "crfs/1", 6) != 0) return Status(Code::kIo, "server did not agree to crfs/1");
  if (o.send_hello) CRFS_RETURN_IF_ERROR(Hello(o));
  return Status::Ok();
}

Status Connection::Reconnect() {
  if (options_.reconnect_ms <= 0) return Status(Code::kIo, "connection lost (reconnecting is off)");
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(options_.reconnect_ms);
  Status last;
  do {
    Drop(false);
    last = Establish();
    if (last.ok()) {
      reconnects_++;
      return last;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  } while (std::chrono::steady_clock::now() < deadline);
  Drop(false);
  return Status(Code::kIo,
                "could not reconnect within " + std::to_string(options_.reconnect_ms) + " ms: " + last.message());
}

Connection::~Connection() { Drop(true); }

Status Connection::Hello(const ConnectOptions& o) {
  proto::Hello h;
  h.max_payload = o.max_payload;
  h.client_id = client_id_;
  auto replies = Call(h);
  if (!replies.ok() && replies.status().code() == Code::kIo) {
    // In TLS 1.3 the server judges the client's certificate after the
    // client's side of the handshake is done: its verdict comes here.
    const std::string m = replies.status().message();
    if (m.find("alert") != std::string::npos) return Status(Code::kIo, "crfsd refused the certificate: " + m);
    if (m == "server closed the session") {
      return Status(Code::kIo,
                    "crfsd ended the session after the TLS handshake: it serves no tenant for this certificate or "
                    "refuses this client (crfsd's log says which)");
    }
  }
  if (!replies.ok()) return replies.status();
  CRFS_RETURN_IF_ERROR(Check(replies->back()));
  if (replies->size() != 2 || !std::holds_alternative<proto::HelloReply>((*replies)[0].msg)) {
    return Status(Code::kBadValue, "HELLO was not answered with HELLO_REPLY");
  }
  hello_ = std::get<proto::HelloReply>((*replies)[0].msg);
  if (hello_.version != CRFS_PROTO_VERSION) return Status(Code::kBadValue, "server chose an unknown version");
  return Status::Ok();
}

Status Connection::SendBytes(const std::vector<uint8_t>& bytes) {
  // After a reconnect that gave up there is no session until the next one.
  if (!ssl_) return Status(Code::kIo, "not connected (the last reconnect did not succeed)");
  // Count what goes out (whole frames; raw test bytes may not decode).
  for (size_t pos = 0; pos < bytes.size();) {
    auto h = proto::DecodeHeader(proto::Bytes(bytes).subspan(pos));
    if (!h.ok()) break;
    frames_sent_++;
    pos += sizeof(struct crfs_header) + h->bytes;
  }
  bytes_sent_ += bytes.size();
  size_t off = 0;
  while (off < bytes.size()) {
    ERR_clear_error();
    int n = SSL_write(ssl_, bytes.data() + off, static_cast<int>(std::min<size_t>(bytes.size() - off, 1 << 20)));
    if (n <= 0) {
      // In TLS 1.3 the server judges our certificate after the handshake
      // returned here; its verdict is an alert waiting to be read.
      ERR_clear_error();
      char byte;
      SSL_read(ssl_, &byte, 1);
      return TlsFail("the server ended the session");
    }
    off += static_cast<size_t>(n);
  }
  return Status::Ok();
}

Result<proto::Frame> Connection::Receive() {
  if (!ssl_) return Status(Code::kIo, "not connected (the last reconnect did not succeed)");
  uint8_t buf[65536];
  for (;;) {
    auto f = in_.Pop();
    if (!f.ok()) return f.status();
    if (*f) {
      if (const auto* fin = std::get_if<proto::FinalReply>(&(*f)->msg); fin && fin->generation != 0) {
        if (view_generation_ == 0 || fin->generation < view_generation_) view_generation_ = fin->generation;
      }
      return std::move(**f);
    }
    ERR_clear_error();
    int n = SSL_read(ssl_, buf, static_cast<int>(std::min(sizeof(buf), in_.Wanted())));
    if (n <= 0) {
      int e = SSL_get_error(ssl_, n);
      if (e == SSL_ERROR_ZERO_RETURN) return Status(Code::kIo, "server closed the session");
      // SO_RCVTIMEO expired (OpenSSL reports it as WANT_READ or a syscall
      // error with EAGAIN); the stream is mid-frame now, so it is unusable.
      if (e == SSL_ERROR_WANT_READ || (e == SSL_ERROR_SYSCALL && (errno == EAGAIN || errno == EWOULDBLOCK))) {
        return Status(Code::kIo, "timed out waiting for the server");
      }
      return TlsFail("receive");
    }
    CRFS_RETURN_IF_ERROR(in_.Push(proto::Bytes(buf, static_cast<size_t>(n))));
  }
}

Result<std::vector<proto::Frame>> Connection::Call(proto::Message request) {
  return CallAs(next_id_++, std::move(request));
}

Result<std::vector<proto::Frame>> Connection::CallAs(uint64_t id, proto::Message request) {
  auto bytes = proto::EncodeFrame(proto::Frame{id, 0, std::move(request)});
  if (!bytes.ok()) return bytes.status();
  CRFS_RETURN_IF_ERROR(SendBytes(*bytes));
  std::vector<proto::Frame> replies;
  for (;;) {
    auto f = Receive();
    if (!f.ok()) return f.status();
    if (f->id == 0) continue;  // unsolicited (REVOKE/DURABLE): not used by this client yet
    if (f->id != id)
      return Status(Code::kBadValue, "reply to request " + std::to_string(f->id) + ", expected " + std::to_string(id));
    const bool final = std::holds_alternative<proto::FinalReply>(f->msg);
    replies.push_back(std::move(*f));
    if (final) return replies;
  }
}

Result<std::vector<std::vector<proto::Frame>>> Connection::CallMany(std::vector<proto::Message> requests) {
  const uint64_t first = next_id_;
  std::vector<uint8_t> batch;
  for (auto& m : requests) {
    auto bytes = proto::EncodeFrame(proto::Frame{next_id_++, 0, std::move(m)});
    if (!bytes.ok()) return bytes.status();
    batch.insert(batch.end(), bytes->begin(), bytes->end());
  }
  if (batch.size() > kMaxPipelineBytes) return Status(Code::kInvalidArgument, "pipelined batch too large");
  CRFS_RETURN_IF_ERROR(SendBytes(batch));
  std::vector<std::vector<proto::Frame>> replies(requests.size());
  size_t open = requests.size();
  while (open > 0) {
    auto f = Receive();
    if (!f.ok()) return f.status();
    if (f->id == 0) continue;
    if (f->id < first || f->id >= next_id_) return Status(Code::kBadValue, "reply to an unknown request");
    auto& slot = replies[f->id - first];
    if (!slot.empty() && std::holds_alternative<proto::FinalReply>(slot.back().msg)) {
      return Status(Code::kBadValue, "reply after a FINAL_REPLY");
    }
    if (std::holds_alternative<proto::FinalReply>(f->msg)) open--;
    slot.push_back(std::move(*f));
  }
  return replies;
}

bool ParseServerAddress(const std::string& server, ConnectOptions* o) {
  std::string host = server, port;
  const size_t colons = static_cast<size_t>(std::count(server.begin(), server.end(), ':'));
  if (!server.empty() && server.front() == '[') {  // [v6] or [v6]:port
    const size_t close = server.find(']');
    if (close == std::string::npos || (close + 1 < server.size() && server[close + 1] != ':')) return false;
    host = server.substr(1, close - 1);
    if (close + 1 < server.size()) port = server.substr(close + 2);
    if (close + 1 < server.size() && port.empty()) return false;
  } else if (colons == 1) {  // host:port
    host = server.substr(0, server.find(':'));
    port = server.substr(server.find(':') + 1);
    if (port.empty()) return false;
  }  // else a host name, an IPv4 address or a bare IPv6 address: the default port
  if (host.empty()) return false;
  o->host = host;
  o->port = kDefaultPort;
  if (!port.empty()) {
    if (port.size() > 5 || port.find_first_not_of("0123456789") != std::string::npos) return false;
    const unsigned long p = std::stoul(port);
    if (p == 0 || p > 65535) return false;
    o->port = static_cast<uint16_t>(p);
  }
  return true;
}

Status Connection::Check(const proto::Frame& final) {
  if (final.info == 0) return Status::Ok();
  const char* name = strerrorname_np(static_cast<int>(final.info));
  const auto& text = std::get<proto::FinalReply>(final.msg).text;
  return Status::Remote(
      static_cast<int>(final.info),
      std::string(name ? name : "E?") + " (" + std::to_string(final.info) + ")" + (text.empty() ? "" : ": " + text));
}

Result<std::vector<proto::Item>> Connection::ItemsOf(uint64_t objectid, uint8_t min_type, uint8_t max_type) {
  return ItemsIn({objectid, min_type, 0}, {objectid, max_type, ~0ull});
}

Result<std::vector<proto::Item>> Connection::ItemsIn(const proto::Key& min, const proto::Key& max) {
  std::vector<proto::Item> items;
  proto::Key key = min;
  for (;;) {
    auto replies = Call(proto::ItemQuery{key, min, max, 1 << 20});
    if (!replies.ok()) return replies.status();
    CRFS_RETURN_IF_ERROR(Check(replies->back()));
    proto::Key covered = key;
    bool any = false;
    for (auto& f : *replies) {
      if (auto* r = std::get_if<proto::ItemRange>(&f.msg)) {
        for (auto& it : r->items) items.push_back(std::move(it));
        covered = r->max;
        any = true;
      }
    }
    if (!any) return Status(Code::kBadValue, "query answered without a range");
    if (covered < key) return Status(Code::kBadValue, "server answered a range before the one asked for");
    if (!(covered < max)) return items;
    key = covered;  // the server stopped early: continue after what it covered
    if (key.offset != ~0ull) {
      key.offset++;
    } else if (key.type != 0xff) {
      key = {key.objectid, static_cast<uint8_t>(key.type + 1), 0};
    } else {
      return items;
    }
  }
}

Status Connection::ReadStream(uint64_t objectid, uint64_t offset, uint64_t len,
                              const std::function<Status(proto::Bytes)>& sink) {
  struct Pending {
    uint64_t id, offset;
    uint32_t len, got = 0;
  };
  std::deque<Pending> pending;
  const uint64_t end = len > ~0ull - offset ? ~0ull : offset + len;
  uint64_t next = offset;
  bool eof = false;
  Status failure;
  while (!pending.empty() || (next < end && !eof && failure.ok())) {
    // Keep the window full (all requests of a top-up in one write).
    std::vector<uint8_t> batch;
    while (!eof && failure.ok() && next < end && pending.size() < kReadWindow) {
      const uint32_t n = static_cast<uint32_t>(std::min<uint64_t>(end - next, CRFS_MAX_DATA_BYTES));
      auto bytes = proto::EncodeFrame(proto::Frame{next_id_, 0, proto::DataRead{objectid, next, n}});
      if (!bytes.ok()) return bytes.status();
      batch.insert(batch.end(), bytes->begin(), bytes->end());
      pending.push_back({next_id_++, next, n});
      next += n;
    }
    if (!batch.empty()) CRFS_RETURN_IF_ERROR(SendBytes(batch));
    auto f = Receive();
    if (!f.ok()) return f.status();
    if (f->id == 0) continue;
    Pending& head = pending.front();
    if (f->id != head.id) return Status(Code::kBadValue, "reply out of order for a pipelined read");
    if (auto* d = std::get_if<proto::Data>(&f->msg)) {
      if (d->objectid != objectid || d->offset != head.offset + head.got || d->data.size() > head.len - head.got) {
        return Status(Code::kBadValue, "DATA reply for the wrong object, offset or length");
      }
      CRFS_RETURN_IF_ERROR(proto::VerifyDataBlockCrcs(d->data, d->csums));
      if (failure.ok() && !eof) failure = sink(d->data);
      head.got += static_cast<uint32_t>(d->data.size());
      continue;
    }
    if (!std::holds_alternative<proto::FinalReply>(f->msg))
      return Status(Code::kBadValue, "unexpected reply to a read");
    Status s = Check(*f);
    if (!s.ok() && failure.ok()) failure = s;
    // A short read is the end of the file: later replies are discarded.
    if (head.got < head.len) eof = true;
    pending.pop_front();
  }
  return failure;
}

Result<std::vector<uint8_t>> Connection::Read(uint64_t objectid, uint64_t offset, uint32_t len) {
  std::vector<uint8_t> out;
  Status s = ReadStream(objectid, offset, len, [&out](proto::Bytes b) {
    out.insert(out.end(), b.begin(), b.end());
    return Status::Ok();
  });
  if (!s.ok()) return s;
  return out;
}

Result<uint64_t> Connection::Lookup(const std::string& path) {
  uint64_t ino = hello_.root_objectid;
  size_t pos = 0;
  while (pos < path.size()) {
    size_t slash = path.find('/', pos);
    std::string name = path.substr(pos, slash == std::string::npos ? std::string::npos : slash - pos);
    pos = slash == std::string::npos ? path.size() : slash + 1;
    if (name.empty() || name == ".") continue;
    if (name == "..") return Status(Code::kInvalidArgument, "'..' in a crfs path");
    const proto::Key k{ino, CRFS_DIR_ITEM_KEY, proto::BtrfsNameHash(name)};
    auto replies = Call(proto::ItemQuery{k, k, k, 1 << 16});
    if (!replies.ok()) return replies.status();
    CRFS_RETURN_IF_ERROR(Check(replies->back()));
    bool found = false;
    for (auto& f : *replies) {
      auto* r = std::get_if<proto::ItemRange>(&f.msg);
      for (size_t i = 0; r && i < r->items.size() && !found; i++) {
        const auto* entries = std::get_if<proto::DirEntries>(&r->items[i].body);
        if (!entries || r->items[i].key != k) return Status(Code::kBadValue, "server answered another key");
        for (const auto& e : entries->entries) {
          if (e.name == name) {
            ino = e.location.objectid;
            found = true;
            break;
          }
        }
      }
    }
    if (!found) return Status::Remote(ENOENT, "ENOENT (2): " + path + ": no entry '" + name + "'");
  }
  return ino;
}

}  // namespace crfs::client
