// identity.h - who a client is: the SPIFFE identity in its certificate.
//
// A tenant client certificate carries exactly one SAN URI of the form
//   spiffe://<trust-domain>/tenant/<tenant>/client/<name>
// (written by pki/crfs-pki). The grammar is deliberately narrower than
// SPIFFE's: lower-case DNS-like trust domain; tenant and client names of
// 1-63 characters [a-z0-9-], not starting or ending with '-'; no percent
// escapes, query, fragment, port, userinfo, dot segments or trailing slash.
// Anything else is refused, so one identity has exactly one spelling.
//
// Pure functions; thread-safe. Certificates are borrowed, never kept.
#pragma once

#include <openssl/x509.h>

#include <string>
#include <string_view>

#include "proto/status.h"

namespace crfs::server {

struct ClientIdentity {
  std::string trust_domain;
  std::string tenant;
  std::string client;
  std::string uri;  // the canonical SAN URI
};

// A tenant or client name as described above.
bool IsValidName(std::string_view name);
bool IsValidTrustDomain(std::string_view domain);

Result<ClientIdentity> ParseSpiffeId(std::string_view uri);

// The identity of a verified peer certificate: exactly one URI SAN, which
// must parse. (Chain, expiry and revocation are TLS's job, before this.)
Result<ClientIdentity> IdentityFromCertificate(X509* cert);

// SHA-256 of the DER certificate, lower-case hex (for logs and audit).
std::string CertificateFingerprint(X509* cert);

}  // namespace crfs::server
