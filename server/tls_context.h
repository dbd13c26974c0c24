// tls_context.h - crfsd's TLS profile, in one place.
//
// TLS 1.3 only; a client certificate is required and verified against the
// configured CA with the CRL checked (a missing or stale CRL fails closed);
// ALPN "crfs/1" is required (a client that does not offer it is refused in
// the handshake); no session tickets and no resumption, so every session
// is a full handshake with a certificate check; renegotiation does not exist
// in TLS 1.3.
//
// Ownership: TlsContext owns its SSL_CTX; SSL objects made from it must not
// outlive it. Thread-safe after construction (OpenSSL's SSL_CTX rules).
#pragma once

#include <openssl/ssl.h>

#include <memory>
#include <string>

#include "proto/status.h"

namespace crfs::server {

inline constexpr unsigned char kAlpn[] = {6, 'c', 'r', 'f', 's', '/', '1'};

class TlsContext {
 public:
  static Result<std::unique_ptr<TlsContext>> Create(const std::string& ca, const std::string& crl,
                                                    const std::string& cert, const std::string& key);
  ~TlsContext();
  TlsContext(const TlsContext&) = delete;
  TlsContext& operator=(const TlsContext&) = delete;

  SSL_CTX* ctx() const { return ctx_; }

 private:
  explicit TlsContext(SSL_CTX* ctx) : ctx_(ctx) {}
  SSL_CTX* ctx_;
};

// The first queued OpenSSL error as text ("" if none), clearing the queue.
std::string TlsErrorString();

}  // namespace crfs::server
