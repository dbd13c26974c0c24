// pki_check.h - what crfsd can tell about its CA and CRL before serving.
//
// Read-only: files are read, nothing is written. Used by crfsd at start
// (warnings in the log) and by `crfsd --check-config` (docs/crfsd.md).
//
// Pure functions of the files they read; thread-safe.
#pragma once

#include <cstdint>
#include <string>

#include "proto/status.h"

namespace crfs::server {

struct CrlInfo {
  std::string number;       // the crlNumber extension in decimal, "" if absent
  int64_t last_update = 0;  // unix seconds
  int64_t next_update = 0;  // unix seconds; 0 if the CRL has none
  size_t entries = 0;       // revoked certificates listed
};

// Parses the PEM CRL at `crl_path` and verifies its signature with the key
// of a certificate in the PEM file `ca_path` (a CRL from another CA fails).
Result<CrlInfo> InspectCrl(const std::string& crl_path, const std::string& ca_path);

// Does the CA at `ca_path` issue for `trust_domain`? A CA certificate made
// by crfs-pki names its trust domain as the URI SAN spiffe://DOMAIN (and in
// its CN, "crfs CA DOMAIN", for older ones). kInvalidArgument if it names
// another domain; OK with *unknown set if it names none.
Status CheckCaTrustDomain(const std::string& ca_path, const std::string& trust_domain, bool* unknown);

}  // namespace crfs::server
