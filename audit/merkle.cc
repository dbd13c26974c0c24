// merkle.cc - RFC 6962 / 9162 hashing and proofs (merkle.h).
#include "audit/merkle.h"

#include <openssl/evp.h>

namespace crfs::audit {
namespace {

Hash Sha256(std::initializer_list<std::span<const uint8_t>> parts) {
  Hash out{};
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr);
  for (const auto& p : parts) EVP_DigestUpdate(ctx, p.data(), p.size());
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx, out.data(), &len);
  EVP_MD_CTX_free(ctx);
  return out;
}

// The largest power of two smaller than n (n > 1).
uint64_t SplitPoint(uint64_t n) {
  uint64_t k = 1;
  while (k << 1 < n) k <<= 1;
  return k;
}

void Path(std::span<const Hash> d, uint64_t m, std::vector<Hash>* out) {
  const uint64_t n = d.size();
  if (n <= 1) return;
  const uint64_t k = SplitPoint(n);
  if (m < k) {
    Path(d.subspan(0, k), m, out);
    out->push_back(RootOf(d.subspan(k)));
  } else {
    Path(d.subspan(k), m - k, out);
    out->push_back(RootOf(d.subspan(0, k)));
  }
}

void SubProof(std::span<const Hash> d, uint64_t m, bool whole, std::vector<Hash>* out) {
  const uint64_t n = d.size();
  if (m == n) {
    if (!whole) out->push_back(RootOf(d));
    return;
  }
  const uint64_t k = SplitPoint(n);
  if (m <= k) {
    SubProof(d.subspan(0, k), m, whole, out);
    out->push_back(RootOf(d.subspan(k)));
  } else {
    SubProof(d.subspan(k), m - k, false, out);
    out->push_back(RootOf(d.subspan(0, k)));
  }
}

}  // namespace

Hash LeafHash(std::string_view record) {
  static const uint8_t kLeaf = 0;
  return Sha256({{&kLeaf, 1}, {reinterpret_cast<const uint8_t*>(record.data()), record.size()}});
}

Hash NodeHash(const Hash& left, const Hash& right) {
  static const uint8_t kNode = 1;
  return Sha256({{&kNode, 1}, left, right});
}

Hash EmptyRoot() { return Sha256({}); }

Hash RootOf(std::span<const Hash> leaves) {
  if (leaves.empty()) return EmptyRoot();
  if (leaves.size() == 1) return leaves[0];
  const uint64_t k = SplitPoint(leaves.size());
  return NodeHash(RootOf(leaves.subspan(0, k)), RootOf(leaves.subspan(k)));
}

std::vector<Hash> InclusionProof(std::span<const Hash> leaves, uint64_t index) {
  std::vector<Hash> out;
  if (index < leaves.size()) Path(leaves, index, &out);
  return out;
}

std::vector<Hash> ConsistencyProof(std::span<const Hash> leaves, uint64_t old_size) {
  std::vector<Hash> out;
  if (old_size > 0 && old_size < leaves.size()) SubProof(leaves, old_size, true, &out);
  return out;
}

bool VerifyInclusion(uint64_t index, uint64_t size, const Hash& leaf, std::span<const Hash> proof, const Hash& root) {
  if (index >= size) return false;
  uint64_t fn = index, sn = size - 1;
  Hash r = leaf;
  for (const Hash& p : proof) {
    if (sn == 0) return false;
    if ((fn & 1) || fn == sn) {
      r = NodeHash(p, r);
      while (!(fn & 1) && fn != 0) fn >>= 1, sn >>= 1;
    } else {
      r = NodeHash(r, p);
    }
    fn >>= 1, sn >>= 1;
  }
  return sn == 0 && r == root;
}

bool VerifyConsistency(uint64_t old_size, uint64_t new_size, const Hash& old_root, const Hash& new_root,
                       std::span<const Hash> proof) {
  if (old_size > new_size) return false;
  if (old_size == new_size) return proof.empty() && old_root == new_root;
  if (old_size == 0) return proof.empty();  // the empty tree is a prefix of every tree
  std::vector<Hash> path;
  if ((old_size & (old_size - 1)) == 0) path.push_back(old_root);  // a power of two: the old root is a node
  path.insert(path.end(), proof.begin(), proof.end());
  if (path.empty()) return false;
  uint64_t fn = old_size - 1, sn = new_size - 1;
  while (fn & 1) fn >>= 1, sn >>= 1;
  Hash fr = path[0], sr = path[0];
  for (size_t i = 1; i < path.size(); i++) {
    const Hash& c = path[i];
    if (sn == 0) return false;
    if ((fn & 1) || fn == sn) {
      fr = NodeHash(c, fr);
      sr = NodeHash(c, sr);
      while (!(fn & 1) && fn != 0) fn >>= 1, sn >>= 1;
    } else {
      sr = NodeHash(sr, c);
    }
    fn >>= 1, sn >>= 1;
  }
  return fr == old_root && sr == new_root && sn == 0;
}

void CompactRange::Append(const Hash& leaf) {
  Hash h = leaf;
  uint64_t height = 0;
  while (!heights_.empty() && heights_.back() == height) {
    h = NodeHash(peaks_.back(), h);
    peaks_.pop_back();
    heights_.pop_back();
    height++;
  }
  peaks_.push_back(h);
  heights_.push_back(height);
  size_++;
}

Hash CompactRange::Root() const {
  if (peaks_.empty()) return EmptyRoot();
  Hash r = peaks_.back();
  for (size_t i = peaks_.size() - 1; i-- > 0;) r = NodeHash(peaks_[i], r);
  return r;
}

std::string HexOf(const Hash& h) {
  static const char kHex[] = "0123456789abcdef";
  std::string s;
  for (uint8_t b : h) s += {kHex[b >> 4], kHex[b & 15]};
  return s;
}

std::string Base64Of(std::span<const uint8_t> bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3), '\0');
  const int n =
      EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), bytes.data(), static_cast<int>(bytes.size()));
  out.resize(static_cast<size_t>(n));
  return out;
}

bool FromBase64(std::string_view text, std::vector<uint8_t>* out) {
  if (text.size() % 4 != 0) return false;
  for (size_t i = 0; i < text.size(); i++) {
    const char c = text[i];
    const bool pad_ok = c == '=' && i >= text.size() - 2 && (i == text.size() - 1 || text.back() == '=');
    if (!isalnum(static_cast<unsigned char>(c)) && c != '+' && c != '/' && !pad_ok) return false;
  }
  out->assign(text.size() / 4 * 3, 0);
  if (text.empty()) return true;
  const int n =
      EVP_DecodeBlock(out->data(), reinterpret_cast<const unsigned char*>(text.data()), static_cast<int>(text.size()));
  if (n < 0) return false;
  size_t len = static_cast<size_t>(n);
  if (text.back() == '=') len--;
  if (text.size() >= 2 && text[text.size() - 2] == '=') len--;
  out->resize(len);
  // Canonical: re-encoding gives the same text (no stray bits in the padding).
  return Base64Of(*out) == text;
}

}  // namespace crfs::audit
