// glob.h - the path and name patterns of the policy language
// (docs/policy.md "Patterns").
//
//   *     any run of characters except '/'
//   ?     one character except '/'
//   [...] one character of a class: [abc], [a-z], [!0-9] (never '/')
//   **    any run of characters, '/' included
//   /**   as a whole component (followed by '/' or the end): nothing, or a
//         '/' and anything after it; so "/a/**" matches "/a", "/a/b" and
//         "/a/b/c", and "/a/**/b" matches "/a/b" and "/a/x/y/b"
//   \c    the character c itself
//
// Matching is linear in (pattern tokens x text length): a tenant's long
// path cannot make it backtrack exponentially. Compiled once, when a policy
// is parsed; immutable afterwards, so safe to share between threads.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "proto/status.h"

namespace crfs::policy {

class Glob {
 public:
  // Compiles `pattern`; an unterminated class or a trailing '\' is an error.
  static Result<Glob> Compile(std::string_view pattern);

  bool Matches(std::string_view text) const;
  const std::string& pattern() const { return pattern_; }
  // The pattern without wildcards ("" if it has none after its literal
  // start): a "/a/b" pattern matches only "/a/b".
  bool literal() const { return literal_; }
  // The literal text every match starts with.
  const std::string& prefix() const { return prefix_; }
  // The first component of every path this pattern matches, if the pattern
  // fixes it ("/a/b*" and "/a/**": "a"; "/": ""; "/a*" and "*": none). The
  // policy indexes rules by it.
  const std::optional<std::string>& first_component() const { return first_component_; }
  // Does every text this glob matches also match `wider`? Decided only in
  // the cases that are certain (equal patterns; `wider` is its literal
  // prefix followed by "/**" or "**" covering this one's prefix); false
  // means "not known to", never "known not to".
  bool CoveredBy(const Glob& wider) const;

 private:
  enum class Tok : uint8_t { kLiteral, kAny, kClass, kStar, kStarStar, kSlashStarStar };
  struct Token {
    Tok kind;
    std::string text;  // kLiteral: the characters; kClass: the member bytes (256-bit set as 32 bytes)
  };
  std::string pattern_;
  std::string prefix_;
  std::string suffix_;  // the literal every match ends with ("" if it ends in a wildcard)
  size_t min_length_ = 0;
  std::optional<std::string> first_component_;
  std::vector<Token> tokens_;
  bool literal_ = false;
  // prefix_ followed by exactly "/**" or "**": matching is a prefix test.
  enum class Shape : uint8_t { kGeneral, kLiteral, kPrefixSubtree, kPrefixAnything } shape_ = Shape::kGeneral;
};

}  // namespace crfs::policy
