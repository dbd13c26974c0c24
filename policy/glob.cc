#include "policy/glob.h"

#include <algorithm>

namespace crfs::policy {
namespace {

bool InClass(const std::string& set, unsigned char c) { return (set[c >> 3] >> (c & 7)) & 1; }
void AddToClass(std::string* set, unsigned char c) {
  (*set)[c >> 3] = static_cast<char>((*set)[c >> 3] | (1 << (c & 7)));
}

}  // namespace

Result<Glob> Glob::Compile(std::string_view p) {
  Glob g;
  g.pattern_ = std::string(p);
  auto literal = [&g](char c) {
    if (g.tokens_.empty() || g.tokens_.back().kind != Tok::kLiteral) g.tokens_.push_back({Tok::kLiteral, ""});
    g.tokens_.back().text.push_back(c);
  };
  for (size_t i = 0; i < p.size();) {
    const char c = p[i];
    if (c == '\\') {
      if (i + 1 == p.size()) return Status(Code::kInvalidArgument, "pattern \"" + g.pattern_ + "\" ends in '\\'");
      literal(p[i + 1]);
      i += 2;
    } else if (c == '?') {
      g.tokens_.push_back({Tok::kAny, ""});
      i++;
    } else if (c == '*') {
      if (i + 1 < p.size() && p[i + 1] == '*') {
        size_t end = i + 2;
        while (end < p.size() && p[end] == '*') end++;
        // "/**" as a whole component: take the '/' before it into the token.
        const bool component = !g.tokens_.empty() && g.tokens_.back().kind == Tok::kLiteral &&
                               g.tokens_.back().text.back() == '/' && (end == p.size() || p[end] == '/');
        if (component) {
          g.tokens_.back().text.pop_back();
          if (g.tokens_.back().text.empty()) g.tokens_.pop_back();
          g.tokens_.push_back({Tok::kSlashStarStar, ""});
        } else {
          g.tokens_.push_back({Tok::kStarStar, ""});
        }
        i = end;
      } else {
        g.tokens_.push_back({Tok::kStar, ""});
        i++;
      }
    } else if (c == '[') {
      size_t j = i + 1;
      bool negate = false;
      if (j < p.size() && (p[j] == '!' || p[j] == '^')) negate = true, j++;
      std::string set(32, '\0');
      bool first = true;
      for (; j < p.size() && (p[j] != ']' || first); first = false) {
        unsigned char lo = static_cast<unsigned char>(p[j]);
        if (lo == '\\' && j + 1 < p.size()) lo = static_cast<unsigned char>(p[++j]);
        j++;
        unsigned char hi = lo;
        if (j + 1 < p.size() && p[j] == '-' && p[j + 1] != ']') {
          hi = static_cast<unsigned char>(p[j + 1]);
          j += 2;
          if (hi < lo) return Status(Code::kInvalidArgument, "pattern \"" + g.pattern_ + "\": empty range in [...]");
        }
        for (unsigned v = lo; v <= hi; v++) AddToClass(&set, static_cast<unsigned char>(v));
      }
      if (j >= p.size()) return Status(Code::kInvalidArgument, "pattern \"" + g.pattern_ + "\": '[' without ']'");
      if (negate) {
        for (auto& b : set) b = static_cast<char>(~b);
      }
      set['/' >> 3] = static_cast<char>(set['/' >> 3] & ~(1 << ('/' & 7)));  // a class never matches '/'
      g.tokens_.push_back({Tok::kClass, std::move(set)});
      i = j + 1;
    } else {
      literal(c);
      i++;
    }
  }
  if (!g.tokens_.empty() && g.tokens_[0].kind == Tok::kLiteral) g.prefix_ = g.tokens_[0].text;
  // Cheap rejections before the matcher runs: what every match ends with
  // and how long it is at least.
  if (g.tokens_.size() > 1 && g.tokens_.back().kind == Tok::kLiteral) g.suffix_ = g.tokens_.back().text;
  for (const Token& t : g.tokens_) {
    g.min_length_ += t.kind == Tok::kLiteral ? t.text.size() : t.kind == Tok::kAny || t.kind == Tok::kClass ? 1 : 0;
  }
  // The first component, if the pattern fixes it: "/a/b*" -> "a", "/a/**" -> "a", "/a" -> "a".
  if (g.prefix_.size() > 1 && g.prefix_[0] == '/') {
    const size_t slash = g.prefix_.find('/', 1);
    if (slash != std::string::npos) {
      g.first_component_ = g.prefix_.substr(1, slash - 1);
    } else if (g.tokens_.size() == 1 || (g.tokens_.size() == 2 && g.tokens_[1].kind == Tok::kSlashStarStar)) {
      g.first_component_ = g.prefix_.substr(1);
    }
  } else if (g.pattern_ == "/") {
    g.first_component_ = "";
  }
  if (g.tokens_.empty() || (g.tokens_.size() == 1 && g.tokens_[0].kind == Tok::kLiteral)) {
    g.shape_ = Shape::kLiteral;
    g.literal_ = true;
  } else if (g.tokens_.size() <= 2 &&
             (g.tokens_.back().kind == Tok::kSlashStarStar || g.tokens_.back().kind == Tok::kStarStar)) {
    if (g.tokens_.size() == 1 || g.tokens_[0].kind == Tok::kLiteral) {
      g.shape_ = g.tokens_.back().kind == Tok::kSlashStarStar ? Shape::kPrefixSubtree : Shape::kPrefixAnything;
    }
  }
  return g;
}

bool Glob::Matches(std::string_view s) const {
  switch (shape_) {
    case Shape::kLiteral: return s == prefix_;
    case Shape::kPrefixAnything: return s.substr(0, prefix_.size()) == prefix_;
    case Shape::kPrefixSubtree:
      return s.substr(0, prefix_.size()) == prefix_ && (s.size() == prefix_.size() || s[prefix_.size()] == '/');
    case Shape::kGeneral: break;
  }
  if (s.size() < min_length_ || s.substr(0, prefix_.size()) != prefix_) return false;
  if (!suffix_.empty() && s.substr(s.size() - suffix_.size()) != suffix_) return false;
  // cur[j]: the tokens so far can match s[0, j). On the stack for the
  // usual lengths: no allocation per match.
  const size_t n = s.size();
  constexpr size_t kStack = 1024;
  char stack[2][kStack];
  std::vector<char> heap;
  char* cur = stack[0];
  char* next = stack[1];
  if (n + 1 > kStack) {
    heap.assign(2 * (n + 1), 0);
    cur = heap.data();
    next = heap.data() + n + 1;
  }
  std::fill(cur, cur + n + 1, 0);
  cur[0] = 1;
  for (const Token& t : tokens_) {
    std::fill(next, next + n + 1, 0);
    bool any = false;
    switch (t.kind) {
      case Tok::kLiteral: {
        const size_t len = t.text.size();
        for (size_t j = 0; j + len <= n; j++) {
          if (cur[j] && s.compare(j, len, t.text) == 0) next[j + len] = 1, any = true;
        }
        break;
      }
      case Tok::kAny:
      case Tok::kClass:
        for (size_t j = 0; j < n; j++) {
          if (!cur[j] || s[j] == '/') continue;
          if (t.kind == Tok::kClass && !InClass(t.text, static_cast<unsigned char>(s[j]))) continue;
          next[j + 1] = 1, any = true;
        }
        break;
      case Tok::kStar: {
        bool open = false;  // a match ends at or before j with no '/' since
        for (size_t j = 0; j <= n; j++) {
          if (cur[j]) open = true;
          if (open) next[j] = 1, any = true;
          if (j < n && s[j] == '/') open = false;
        }
        break;
      }
      case Tok::kStarStar: {
        bool open = false;
        for (size_t j = 0; j <= n; j++) {
          open = open || cur[j];
          if (open) next[j] = 1, any = true;
        }
        break;
      }
      case Tok::kSlashStarStar: {
        // Nothing, or '/' and anything after it.
        bool open = false;
        for (size_t j = 0; j <= n; j++) {
          if (cur[j]) next[j] = 1, any = true;
          if (open) next[j] = 1, any = true;
          if (j < n && cur[j] && s[j] == '/') open = true;
        }
        break;
      }
    }
    if (!any) return false;
    std::swap(cur, next);
  }
  return cur[n] != 0;
}

bool Glob::CoveredBy(const Glob& wider) const {
  if (wider.pattern_ == pattern_) return true;
  if (wider.shape_ == Shape::kPrefixAnything) return prefix_.substr(0, wider.prefix_.size()) == wider.prefix_;
  if (wider.shape_ == Shape::kPrefixSubtree) {
    // Everything of ours starts with our prefix; it must lie in wider's subtree.
    const std::string& w = wider.prefix_;
    if (shape_ == Shape::kLiteral) return wider.Matches(prefix_);
    return prefix_.size() > w.size() && prefix_.compare(0, w.size(), w) == 0 && prefix_[w.size()] == '/';
  }
  return false;
}

}  // namespace crfs::policy
