// libFuzzer target: client identity from untrusted input. Byte 0 chooses
// what the rest is: even, a SAN URI string for ParseSpiffeId; odd, a DER
// certificate for IdentityFromCertificate. Oracle: no crash, leak or
// over-read, and any identity accepted re-parses from its canonical URI to
// the same names.
#include <openssl/x509.h>

#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "server/identity.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace crfs::server;
  if (size == 0) return 0;
  crfs::Result<ClientIdentity> id = crfs::Status(crfs::Code::kBadValue, "unset");
  if (data[0] % 2 == 0) {
    id = ParseSpiffeId(std::string_view(reinterpret_cast<const char*>(data + 1), size - 1));
  } else {
    const unsigned char* p = data + 1;
    X509* cert = d2i_X509(nullptr, &p, static_cast<long>(size - 1));
    if (!cert) return 0;
    id = IdentityFromCertificate(cert);
    (void)CertificateFingerprint(cert);
    X509_free(cert);
  }
  if (!id.ok()) return 0;
  auto again = ParseSpiffeId(id->uri);
  if (!again.ok() || again->tenant != id->tenant || again->client != id->client ||
      again->trust_domain != id->trust_domain || !IsValidName(id->tenant) || !IsValidName(id->client)) {
    abort();
  }
  return 0;
}
