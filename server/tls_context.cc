#include "server/tls_context.h"

#include <openssl/err.h>
#include <openssl/x509_vfy.h>

#include <cstring>

namespace crfs::server {
namespace {

int SelectAlpn(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in, unsigned int inlen,
               void*) {
  unsigned char* selected = nullptr;
  if (SSL_select_next_proto(&selected, outlen, kAlpn, sizeof(kAlpn), in, inlen) != OPENSSL_NPN_NEGOTIATED) {
    return SSL_TLSEXT_ERR_ALERT_FATAL;  // no crfs/1 offered: no session
  }
  *out = selected;
  return SSL_TLSEXT_ERR_OK;
}

Status Fail(const std::string& what) {
  return Status(Code::kInvalidArgument, "tls: " + what + ": " + TlsErrorString());
}

}  // namespace

std::string TlsErrorString() {
  unsigned long e = ERR_get_error();
  char buf[256] = "";
  if (e) ERR_error_string_n(e, buf, sizeof(buf));
  ERR_clear_error();
  return buf;
}

Result<std::unique_ptr<TlsContext>> TlsContext::Create(const std::string& ca, const std::string& crl,
                                                       const std::string& cert, const std::string& key) {
  SSL_CTX* raw = SSL_CTX_new(TLS_server_method());
  if (!raw) return Fail("SSL_CTX_new");
  std::unique_ptr<TlsContext> ctx(new TlsContext(raw));
  if (SSL_CTX_set_min_proto_version(raw, TLS1_3_VERSION) != 1 ||
      SSL_CTX_set_max_proto_version(raw, TLS1_3_VERSION) != 1) {
    return Fail("restricting to TLS 1.3");
  }
  if (SSL_CTX_use_certificate_chain_file(raw, cert.c_str()) != 1) return Fail("server certificate " + cert);
  if (SSL_CTX_use_PrivateKey_file(raw, key.c_str(), SSL_FILETYPE_PEM) != 1) return Fail("server key " + key);
  if (SSL_CTX_check_private_key(raw) != 1) return Fail("server key does not match certificate");
  if (SSL_CTX_load_verify_locations(raw, ca.c_str(), nullptr) != 1) return Fail("client CA " + ca);
  // The CRL goes into the verification store; CRL_CHECK makes a client
  // certificate without a valid CRL from its issuer fail.
  X509_STORE* store = SSL_CTX_get_cert_store(raw);
  X509_LOOKUP* lookup = X509_STORE_add_lookup(store, X509_LOOKUP_file());
  if (!lookup || X509_load_crl_file(lookup, crl.c_str(), X509_FILETYPE_PEM) < 1) return Fail("CRL " + crl);
  if (X509_STORE_set_flags(store, X509_V_FLAG_CRL_CHECK | X509_V_FLAG_X509_STRICT) != 1) return Fail("CRL flags");
  // Only the CA's own certificate is a trust anchor; clients send leaf certs.
  STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(ca.c_str());
  if (!names) return Fail("client CA names " + ca);
  SSL_CTX_set_client_CA_list(raw, names);
  SSL_CTX_set_verify(raw, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT | SSL_VERIFY_CLIENT_ONCE, nullptr);
  SSL_CTX_set_verify_depth(raw, 2);
  SSL_CTX_set_alpn_select_cb(raw, SelectAlpn, nullptr);
  SSL_CTX_set_options(raw, SSL_OP_NO_TICKET | SSL_OP_CIPHER_SERVER_PREFERENCE);
  SSL_CTX_set_num_tickets(raw, 0);
  SSL_CTX_set_session_cache_mode(raw, SSL_SESS_CACHE_OFF);
  SSL_CTX_set_mode(raw, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
  // AES-GCM only: what kernel TLS offloads (crfs.ko sessions, DESIGN.md §9).
  if (SSL_CTX_set_ciphersuites(raw, "TLS_AES_256_GCM_SHA384:TLS_AES_128_GCM_SHA256") != 1) return Fail("ciphersuites");
  return ctx;
}

TlsContext::~TlsContext() { SSL_CTX_free(ctx_); }

}  // namespace crfs::server
