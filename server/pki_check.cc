#include "server/pki_check.h"

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <memory>
#include <vector>

namespace crfs::server {
namespace {

template <typename T, void (*F)(T*)>
struct Deleter {
  void operator()(T* p) const { F(p); }
};
using BioPtr = std::unique_ptr<BIO, Deleter<BIO, BIO_free_all>>;
using X509Ptr = std::unique_ptr<X509, Deleter<X509, X509_free>>;
using CrlPtr = std::unique_ptr<X509_CRL, Deleter<X509_CRL, X509_CRL_free>>;

Result<std::vector<X509Ptr>> ReadCerts(const std::string& path) {
  BioPtr bio(BIO_new_file(path.c_str(), "r"));
  if (!bio) return Status(Code::kIo, "CA " + path + ": cannot read");
  std::vector<X509Ptr> certs;
  while (X509* c = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) certs.emplace_back(c);
  if (certs.empty()) return Status(Code::kInvalidArgument, "CA " + path + ": no PEM certificate");
  return certs;
}

bool ToUnix(const ASN1_TIME* t, int64_t* out) {
  struct tm tm {};
  if (!t || ASN1_TIME_to_tm(t, &tm) != 1) return false;
  *out = static_cast<int64_t>(timegm(&tm));
  return true;
}

}  // namespace

Result<CrlInfo> InspectCrl(const std::string& crl_path, const std::string& ca_path) {
  auto cas = ReadCerts(ca_path);
  if (!cas.ok()) return cas.status();
  BioPtr bio(BIO_new_file(crl_path.c_str(), "r"));
  if (!bio) return Status(Code::kIo, "CRL " + crl_path + ": cannot read");
  CrlPtr crl(PEM_read_bio_X509_CRL(bio.get(), nullptr, nullptr, nullptr));
  if (!crl) return Status(Code::kInvalidArgument, "CRL " + crl_path + ": not a PEM CRL");
  bool verified = false;
  for (const auto& ca : *cas) {
    EVP_PKEY* key = X509_get0_pubkey(ca.get());
    if (key && X509_NAME_cmp(X509_CRL_get_issuer(crl.get()), X509_get_subject_name(ca.get())) == 0 &&
        X509_CRL_verify(crl.get(), key) == 1) {
      verified = true;
    }
  }
  if (!verified) {
    return Status(Code::kInvalidArgument,
                  "CRL " + crl_path + " is not signed by the CA in " + ca_path + ": every client would be refused");
  }
  CrlInfo info;
  if (!ToUnix(X509_CRL_get0_lastUpdate(crl.get()), &info.last_update)) {
    return Status(Code::kInvalidArgument, "CRL " + crl_path + ": unreadable lastUpdate");
  }
  if (const ASN1_TIME* next = X509_CRL_get0_nextUpdate(crl.get()); next && !ToUnix(next, &info.next_update)) {
    return Status(Code::kInvalidArgument, "CRL " + crl_path + ": unreadable nextUpdate");
  }
  if (auto* n = static_cast<ASN1_INTEGER*>(X509_CRL_get_ext_d2i(crl.get(), NID_crl_number, nullptr, nullptr))) {
    if (BIGNUM* bn = ASN1_INTEGER_to_BN(n, nullptr)) {
      if (char* dec = BN_bn2dec(bn)) {
        info.number = dec;
        OPENSSL_free(dec);
      }
      BN_free(bn);
    }
    ASN1_INTEGER_free(n);
  }
  const STACK_OF(X509_REVOKED)* revoked = X509_CRL_get_REVOKED(crl.get());
  info.entries = revoked ? static_cast<size_t>(sk_X509_REVOKED_num(revoked)) : 0;
  return info;
}

Status CheckCaTrustDomain(const std::string& ca_path, const std::string& trust_domain, bool* unknown) {
  auto cas = ReadCerts(ca_path);
  if (!cas.ok()) return cas.status();
  *unknown = true;
  const std::string want = "spiffe://" + trust_domain;
  std::vector<std::string> named;
  for (const auto& ca : *cas) {
    auto* sans = static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(ca.get(), NID_subject_alt_name, nullptr, nullptr));
    for (int i = 0; sans && i < sk_GENERAL_NAME_num(sans); i++) {
      const GENERAL_NAME* gn = sk_GENERAL_NAME_value(sans, i);
      if (gn->type != GEN_URI) continue;
      const auto* s = gn->d.uniformResourceIdentifier;
      std::string uri(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                      static_cast<size_t>(ASN1_STRING_length(s)));
      if (uri.rfind("spiffe://", 0) == 0) named.push_back(uri);
    }
    GENERAL_NAMES_free(sans);
    if (named.empty()) {
      char cn[256] = "";
      if (X509_NAME_get_text_by_NID(X509_get_subject_name(ca.get()), NID_commonName, cn, sizeof(cn)) > 0 &&
          std::string(cn).rfind("crfs CA ", 0) == 0) {
        named.push_back("spiffe://" + std::string(cn + 8));
      }
    }
  }
  for (const std::string& n : named) {
    if (n == want) {
      *unknown = false;
      return Status::Ok();
    }
  }
  if (named.empty()) return Status::Ok();
  return Status(Code::kInvalidArgument, "trust_domain " + trust_domain + ": the CA in " + ca_path + " issues for " +
                                            named.front().substr(9) +
                                            " (its certificate says so): no client certificate would be accepted");
}

}  // namespace crfs::server
