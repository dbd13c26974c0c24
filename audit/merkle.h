// merkle.h - the audit log's Merkle tree: RFC 6962 / RFC 9162 hashing,
// tree heads, inclusion and consistency proofs and their verification
// (docs/audit.md "The tree").
//
//   leaf hash = SHA-256(0x00 || record)
//   node hash = SHA-256(0x01 || left || right)
//   the root of an empty tree = SHA-256("")
//
// Pure functions over leaf hashes; no state, no locking. Proof generation
// is linear in the tree's size (for tools, not for crfsd's hot path: the
// writer keeps a CompactRange).
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace crfs::audit {

using Hash = std::array<uint8_t, 32>;

Hash LeafHash(std::string_view record);
Hash NodeHash(const Hash& left, const Hash& right);
Hash EmptyRoot();

// MTH of the tree whose leaves are `leaves` (RFC 9162 §2.1.1).
Hash RootOf(std::span<const Hash> leaves);

// The audit path of leaf `index` in the tree of all of `leaves`, from the
// leaf's sibling up to the root's child (RFC 9162 §2.1.3.1). index <
// leaves.size().
std::vector<Hash> InclusionProof(std::span<const Hash> leaves, uint64_t index);
// The proof that the tree of the first `old_size` leaves is a prefix of the
// tree of all of `leaves` (RFC 9162 §2.1.4.1). old_size <= leaves.size().
std::vector<Hash> ConsistencyProof(std::span<const Hash> leaves, uint64_t old_size);

// RFC 9162 §2.1.3.2 and §2.1.4.2.
bool VerifyInclusion(uint64_t index, uint64_t size, const Hash& leaf, std::span<const Hash> proof, const Hash& root);
bool VerifyConsistency(uint64_t old_size, uint64_t new_size, const Hash& old_root, const Hash& new_root,
                       std::span<const Hash> proof);

// The root of a growing tree in O(log n) per leaf: the perfect subtrees'
// roots, as a binary counter.
class CompactRange {
 public:
  void Append(const Hash& leaf);
  Hash Root() const;
  uint64_t size() const { return size_; }

 private:
  std::vector<Hash> peaks_;  // peaks_[k]: the root of a perfect subtree, largest first
  std::vector<uint64_t> heights_;
  uint64_t size_ = 0;
};

std::string HexOf(const Hash& h);
std::string Base64Of(std::span<const uint8_t> bytes);
// Standard base64 (RFC 4648 §4) with padding; false if `text` is not that.
bool FromBase64(std::string_view text, std::vector<uint8_t>* out);

}  // namespace crfs::audit
