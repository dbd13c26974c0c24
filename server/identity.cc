#include "server/identity.h"

#include <openssl/evp.h>
#include <openssl/x509v3.h>

#include <memory>

namespace crfs::server {
namespace {

constexpr std::string_view kScheme = "spiffe://";
constexpr size_t kMaxUri = 2048;

bool IsLowerAlnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

Status Bad(const std::string& what) { return Status(Code::kBadValue, "client identity: " + what); }

// Splits off the next '/'-separated segment of `rest`.
std::string_view NextSegment(std::string_view* rest) {
  size_t slash = rest->find('/');
  std::string_view seg = rest->substr(0, slash);
  *rest = slash == std::string_view::npos ? std::string_view() : rest->substr(slash + 1);
  return seg;
}

}  // namespace

bool IsValidName(std::string_view name) {
  if (name.empty() || name.size() > 63 || name.front() == '-' || name.back() == '-') return false;
  for (char c : name) {
    if (!IsLowerAlnum(c) && c != '-') return false;
  }
  return true;
}

bool IsValidTrustDomain(std::string_view d) {
  if (d.empty() || d.size() > 253 || !IsLowerAlnum(d.front()) || !IsLowerAlnum(d.back())) return false;
  char prev = 0;
  for (char c : d) {
    if (!IsLowerAlnum(c) && c != '-' && c != '.') return false;
    if (c == '.' && prev == '.') return false;
    prev = c;
  }
  return true;
}

Result<ClientIdentity> ParseSpiffeId(std::string_view uri) {
  if (uri.size() > kMaxUri) return Bad("URI longer than " + std::to_string(kMaxUri) + " bytes");
  if (uri.substr(0, kScheme.size()) != kScheme) return Bad("URI is not spiffe://");
  std::string_view rest = uri.substr(kScheme.size());
  ClientIdentity id;
  std::string_view domain = NextSegment(&rest);
  if (!IsValidTrustDomain(domain)) return Bad("bad trust domain");
  if (NextSegment(&rest) != "tenant") return Bad("path does not start with /tenant/");
  std::string_view tenant = NextSegment(&rest);
  if (!IsValidName(tenant)) return Bad("bad tenant name");
  if (NextSegment(&rest) != "client") return Bad("path lacks /client/ after the tenant");
  if (rest.empty() || rest.find('/') != std::string_view::npos || !IsValidName(rest)) {
    return Bad("bad client name (or trailing path)");
  }
  id.trust_domain = domain;
  id.tenant = tenant;
  id.client = rest;
  id.uri = uri;
  return id;
}

Result<ClientIdentity> IdentityFromCertificate(X509* cert) {
  if (!cert) return Bad("no certificate");
  using Names = std::unique_ptr<GENERAL_NAMES, decltype(&GENERAL_NAMES_free)>;
  Names names(static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr)),
              GENERAL_NAMES_free);
  if (!names) return Bad("certificate has no subjectAltName");
  std::string uri;
  int uris = 0;
  for (int i = 0; i < sk_GENERAL_NAME_num(names.get()); i++) {
    const GENERAL_NAME* gn = sk_GENERAL_NAME_value(names.get(), i);
    if (gn->type != GEN_URI) continue;
    uris++;
    const ASN1_IA5STRING* s = gn->d.uniformResourceIdentifier;
    uri.assign(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)), static_cast<size_t>(ASN1_STRING_length(s)));
  }
  if (uris != 1) return Bad("certificate has " + std::to_string(uris) + " URI SANs, expected exactly 1");
  if (uri.find('\0') != std::string::npos) return Bad("URI SAN contains NUL");
  return ParseSpiffeId(uri);
}

std::string CertificateFingerprint(X509* cert) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (!cert || X509_digest(cert, EVP_sha256(), md, &len) != 1) return "";
  static const char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < len; i++) {
    out += kHex[md[i] >> 4];
    out += kHex[md[i] & 15];
  }
  return out;
}

}  // namespace crfs::server
