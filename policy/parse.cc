// parse.cc - the strict policy parser (policy.h, docs/policy.md).
//
// Two passes over the text: nlohmann-json's SAX interface, through an
// iterator that tracks how far the lexer has read, records the line of
// every value (by JSON pointer) and refuses duplicate keys (which the DOM
// parser would silently collapse); then the DOM is walked and checked.
#include <openssl/evp.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <unordered_map>

#include "policy/policy.h"

namespace crfs::policy {
namespace {

using json = nlohmann::json;

constexpr size_t kMaxPolicyBytes = 16 << 20;
constexpr size_t kMaxRules = 100000;
constexpr size_t kMaxPatterns = 256;
constexpr size_t kMaxPatternBytes = 4096;
constexpr size_t kMaxReasonBytes = 256;

// An input iterator over the text that publishes its position to *cursor.
struct TrackingIterator {
  using iterator_category = std::input_iterator_tag;
  using value_type = char;
  using difference_type = std::ptrdiff_t;
  using pointer = const char*;
  using reference = const char&;
  const char* p;
  const char** cursor;
  reference operator*() const { return *p; }
  TrackingIterator& operator++() {
    *cursor = ++p;
    return *this;
  }
  TrackingIterator operator++(int) {
    TrackingIterator old = *this;
    ++*this;
    return old;
  }
  bool operator==(const TrackingIterator& o) const { return p == o.p; }
};

std::string EscapePointer(const std::string& key) {
  std::string out;
  for (char c : key) {
    if (c == '~')
      out += "~0";
    else if (c == '/')
      out += "~1";
    else
      out += c;
  }
  return out;
}

// Records where each value is and refuses duplicate keys.
class LineMapper : public nlohmann::json_sax<json> {
 public:
  LineMapper(const char* begin, const char** cursor, std::vector<Diagnostic>* diags)
      : begin_(begin), cursor_(cursor), diags_(diags) {}

  std::unordered_map<std::string, int> lines;

  bool null() override { return Value(); }
  bool boolean(bool) override { return Value(); }
  bool number_integer(number_integer_t) override { return Value(); }
  bool number_unsigned(number_unsigned_t) override { return Value(); }
  bool number_float(number_float_t, const string_t&) override { return Value(); }
  bool string(string_t&) override { return Value(); }
  bool binary(binary_t&) override { return Value(); }
  bool start_object(std::size_t) override {
    std::string pointer = Here();  // before Value() moves an enclosing array on
    Value();
    stack_.push_back(Level{true, 0, {}, {}, std::move(pointer)});
    return true;
  }
  bool key(string_t& k) override {
    Level& l = stack_.back();
    if (!l.keys.insert(k).second) {
      diags_->push_back(Diagnostic{true, Parent() + "/" + EscapePointer(k), Line(), "duplicate key"});
    }
    l.key = k;
    return true;
  }
  bool end_object() override {
    stack_.pop_back();
    return true;
  }
  bool start_array(std::size_t) override {
    std::string pointer = Here();  // before Value() moves an enclosing array on
    Value();
    stack_.push_back(Level{false, 0, {}, {}, std::move(pointer)});
    return true;
  }
  bool end_array() override {
    stack_.pop_back();
    return true;
  }
  bool parse_error(std::size_t position, const std::string&, const nlohmann::detail::exception& ex) override {
    // nlohmann's message starts "[json.exception.parse_error.101] parse error at line L, column C: ..."
    std::string what = ex.what();
    if (auto p = what.find("] "); p != std::string::npos) what = what.substr(p + 2);
    diags_->push_back(Diagnostic{true, "", LineAt(position > 0 ? position - 1 : 0), "not valid JSON: " + what});
    return false;
  }

 private:
  struct Level {
    bool object;
    size_t index;
    std::set<std::string> keys;
    std::string key;
    std::string pointer;
  };
  std::string Parent() const { return stack_.empty() ? "" : stack_.back().pointer; }
  std::string Here() {
    if (stack_.empty()) return "";
    Level& l = stack_.back();
    return l.pointer + "/" + (l.object ? EscapePointer(l.key) : std::to_string(l.index));
  }
  bool Value() {
    std::string p = Here();
    lines[p] = Line();
    if (!stack_.empty() && !stack_.back().object) stack_.back().index++;
    return true;
  }
  int Line() { return LineAt(*cursor_ > begin_ ? static_cast<size_t>(*cursor_ - begin_ - 1) : 0); }
  // The parser only moves forward: count newlines from where the last call
  // stopped (linear in the text, not quadratic).
  int LineAt(size_t offset) {
    if (offset < counted_) counted_ = 0, line_ = 1;
    for (; counted_ < offset && begin_[counted_]; counted_++) line_ += begin_[counted_] == '\n';
    return line_;
  }
  size_t counted_ = 0;
  int line_ = 1;
  const char* begin_;
  const char** cursor_;
  std::vector<Diagnostic>* diags_;
  std::vector<Level> stack_;
};

std::string Sha256Hex(std::string_view text) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(text.data(), text.size(), md, &len, EVP_sha256(), nullptr);
  static const char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned i = 0; i < len; i++) out += {kHex[md[i] >> 4], kHex[md[i] & 15]};
  return out;
}

// Which ops each condition can apply to.
constexpr uint32_t Bit(OpKind op) { return 1u << static_cast<unsigned>(op); }
constexpr uint32_t kAllOps = (1u << kOpKinds) - 1;
constexpr uint32_t kPermOps = Bit(OpKind::kCreate) | Bit(OpKind::kMkdir) | Bit(OpKind::kMknod) | Bit(OpKind::kChmod);
constexpr uint32_t kSizeOps = Bit(OpKind::kWrite) | Bit(OpKind::kTruncate);
constexpr uint32_t kPath2Ops = Bit(OpKind::kRename) | Bit(OpKind::kExchange) | Bit(OpKind::kLink);
constexpr uint32_t kXattrOps = Bit(OpKind::kSetxattr) | Bit(OpKind::kRemovexattr);
constexpr uint8_t kAllTypes = 0x7f;
constexpr uint8_t kDevices = kFifo | kSocket | kCharDev | kBlockDev;

// The types of object each op can act on.
uint8_t TypesOf(OpKind op) {
  switch (op) {
    case OpKind::kCreate: return kFile;
    case OpKind::kMkdir: return kDir;
    case OpKind::kSymlink: return kSymlinkType;
    case OpKind::kMknod: return kDevices;
    case OpKind::kLink:
    case OpKind::kUnlink: return kAllTypes & ~kDir;
    case OpKind::kRmdir:
    case OpKind::kReaddir:
    case OpKind::kSnapshot: return kDir;
    case OpKind::kWrite:
    case OpKind::kTruncate: return kFile;
    case OpKind::kOpen: return kFile | kDir;
    default: return kAllTypes;
  }
}

struct NamedBit {
  const char* name;
  uint8_t bit;
};
constexpr NamedBit kTypeNames[] = {{"file", kFile},        {"dir", kDir},       {"symlink", kSymlinkType},
                                   {"fifo", kFifo},        {"socket", kSocket}, {"chardev", kCharDev},
                                   {"blockdev", kBlockDev}};
constexpr NamedBit kModeNames[] = {
    {"setuid", kSetuid}, {"setgid", kSetgid}, {"sticky", kSticky}, {"world-writable", kWorldWritable}};
struct NamedErrno {
  const char* name;
  int err;
};
constexpr NamedErrno kErrnos[] = {{"EACCES", EACCES}, {"EPERM", EPERM}, {"EROFS", EROFS},
                                  {"EDQUOT", EDQUOT}, {"EFBIG", EFBIG}, {"ENOSPC", ENOSPC}};

bool ValidRuleId(const std::string& id) {
  if (id.empty() || id.size() > 64) return false;
  for (char c : id) {
    if (!isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.' && c != ':') return false;
  }
  return true;
}

bool ValidTenantName(const std::string& n) {
  if (n.empty() || n.size() > 63 || n.front() == '-' || n.back() == '-') return false;
  for (char c : n) {
    if (!(c >= 'a' && c <= 'z') && !(c >= '0' && c <= '9') && c != '-') return false;
  }
  return true;
}

}  // namespace

class Parser {
 public:
  Parser(std::vector<Diagnostic>* diags, const std::unordered_map<std::string, int>* lines)
      : diags_(diags), lines_(lines) {}

  void Document(const json& doc, Policy* p) {
    if (!doc.is_object()) return Error("", "a policy is a JSON object");
    Keys(doc, "", {"version", "comment", "rules", "tenants", "defaults", "limits"});
    if (!doc.contains("version")) {
      Error("", "\"version\" is required (1)");
    } else if (!doc["version"].is_number_unsigned() || doc["version"].get<uint64_t>() != 1) {
      Error("/version", "must be 1 (the only version of the language)");
    } else {
      p->version_ = 1;
    }
    Comment(doc, "");
    if (doc.contains("rules")) Rules(doc["rules"], "/rules", "", &p->global_);
    if (doc.contains("defaults")) Rules(doc["defaults"], "/defaults", "", &p->defaults_);
    if (doc.contains("limits")) LimitsIn(doc["limits"], "/limits", &p->limits_);
    if (doc.contains("tenants")) {
      const json& ts = doc["tenants"];
      if (!ts.is_object()) return Error("/tenants", "must be an object: tenant name -> its rules and limits");
      for (auto it = ts.begin(); it != ts.end(); ++it) {
        const std::string where = "/tenants/" + EscapePointer(it.key());
        if (!ValidTenantName(it.key())) {
          Error(where, "not a tenant name (1-63 of a-z, 0-9, '-', not starting or ending with '-')");
          continue;
        }
        const json& t = it.value();
        if (!t.is_object()) {
          Error(where, "must be an object with \"rules\" and/or \"limits\"");
          continue;
        }
        Keys(t, where, {"rules", "limits", "comment"});
        Comment(t, where);
        Policy::Tenant& tenant = p->tenants_[it.key()];
        tenant.limits = p->limits_;
        if (t.contains("rules")) Rules(t["rules"], where + "/rules", it.key(), &tenant.rules);
        if (t.contains("limits")) LimitsIn(t["limits"], where + "/limits", &tenant.limits);
      }
    }
    if (p->rule_count() > kMaxRules) Error("", "more than " + std::to_string(kMaxRules) + " rules");
    // Rule ids are unique in the whole policy: a denial names one rule.
    std::map<std::string, const Rule*> ids;
    auto unique = [&](const std::vector<Rule>& rules) {
      for (const Rule& r : rules) {
        auto [it, fresh] = ids.emplace(r.id, &r);
        if (!fresh) Error(r.where + "/id", "rule id \"" + r.id + "\" is also used at " + it->second->where);
      }
    };
    unique(p->global_);
    for (const auto& [name, t] : p->tenants_) unique(t.rules);
    unique(p->defaults_);
    // Shadowing: in the order they are tried.
    Shadowed(p->global_, {});
    for (const auto& [name, t] : p->tenants_) Shadowed(t.rules, p->global_);
    // (A tenant's own rules shadow the defaults only for that tenant: not warned.)
    Shadowed(p->defaults_, p->global_);
    // The per-op candidate lists.
    p->global_index_.Build(p->global_);
    for (auto& [name, t] : p->tenants_) t.index.Build(t.rules);
    p->defaults_index_.Build(p->defaults_);
  }

 private:
  void Add(bool error, const std::string& where, const std::string& message) {
    int line = 0;
    // The value itself, or the nearest enclosing one the mapper saw.
    for (std::string w = where;; w = w.substr(0, w.rfind('/'))) {
      if (auto it = lines_->find(w); it != lines_->end()) {
        line = it->second;
        break;
      }
      if (w.empty()) break;
    }
    diags_->push_back(Diagnostic{error, where, line, message});
  }
  void Error(const std::string& where, const std::string& message) { Add(true, where, message); }
  void Warning(const std::string& where, const std::string& message) { Add(false, where, message); }

  void Keys(const json& obj, const std::string& where, std::initializer_list<const char*> allowed) {
    for (auto it = obj.begin(); it != obj.end(); ++it) {
      bool ok = false;
      for (const char* a : allowed) ok = ok || it.key() == a;
      if (!ok) {
        std::string list;
        for (const char* a : allowed) list += std::string(list.empty() ? "" : ", ") + a;
        Error(where + "/" + EscapePointer(it.key()), "unknown key (allowed here: " + list + ")");
      }
    }
  }

  void Comment(const json& obj, const std::string& where) {
    if (obj.contains("comment") && !obj["comment"].is_string()) Error(where + "/comment", "must be a string");
  }

  void Rules(const json& rules, const std::string& where, const std::string& tenant, std::vector<Rule>* out) {
    if (!rules.is_array()) return Error(where, "must be an array of rules");
    for (size_t i = 0; i < rules.size(); i++) {
      Rule r;
      if (OneRule(rules[i], where + "/" + std::to_string(i), tenant, &r)) out->push_back(std::move(r));
    }
  }

  // Strings or one string -> compiled patterns; false on error.
  enum class Kind { kPath, kName, kClient };
  bool Patterns(const json& v, const std::string& where, Kind kind, std::vector<Glob>* out) {
    std::vector<const json*> items;
    if (v.is_string()) {
      items.push_back(&v);
    } else if (v.is_array() && !v.empty() && v.size() <= kMaxPatterns) {
      for (const json& e : v) items.push_back(&e);
    } else {
      Error(where, "must be a pattern or a non-empty array of at most " + std::to_string(kMaxPatterns) + " patterns");
      return false;
    }
    bool ok = true;
    for (size_t i = 0; i < items.size(); i++) {
      const std::string at = v.is_string() ? where : where + "/" + std::to_string(i);
      if (!items[i]->is_string() || items[i]->get_ref<const std::string&>().empty() ||
          items[i]->get_ref<const std::string&>().size() > kMaxPatternBytes) {
        Error(at, "must be a non-empty string of at most " + std::to_string(kMaxPatternBytes) + " bytes");
        ok = false;
        continue;
      }
      const std::string& s = items[i]->get_ref<const std::string&>();
      if (kind == Kind::kPath && s[0] != '/') {
        Error(at, "a path pattern starts with '/' (paths are relative to the tenant's root, which is \"/\")");
        ok = false;
        continue;
      }
      if (kind == Kind::kName && s.find('/') != std::string::npos) {
        Error(at, "a name pattern matches one path component: it has no '/'");
        ok = false;
        continue;
      }
      Result<Glob> g = Glob::Compile(s);
      if (!g.ok()) {
        Error(at, g.status().message());
        ok = false;
        continue;
      }
      out->push_back(std::move(*g));
    }
    return ok;
  }

  bool Ids(const json& v, const std::string& where, std::vector<Range>* out) {
    std::vector<const json*> items;
    if (v.is_array() && !v.empty() && v.size() <= kMaxPatterns) {
      for (const json& e : v) items.push_back(&e);
    } else if (v.is_number_unsigned() || v.is_string()) {
      items.push_back(&v);
    } else {
      Error(where, "must be an id, a range \"LO-HI\", or a non-empty array of them");
      return false;
    }
    bool ok = true;
    for (size_t i = 0; i < items.size(); i++) {
      const std::string at = v.is_array() ? where + "/" + std::to_string(i) : where;
      const json& e = *items[i];
      Range r;
      if (e.is_number_unsigned() && e.get<uint64_t>() <= UINT32_MAX) {
        r.lo = r.hi = e.get<uint64_t>();
      } else if (e.is_string()) {
        const std::string& s = e.get_ref<const std::string&>();
        unsigned long long lo = 0, hi = 0;
        int used = 0;
        if (sscanf(s.c_str(), "%llu-%llu%n", &lo, &hi, &used) != 2 || static_cast<size_t>(used) != s.size() ||
            s[0] == '-' || s.find('+') != std::string::npos || s.find(' ') != std::string::npos || hi > UINT32_MAX ||
            lo > hi) {
          Error(at, "\"" + s + "\": a range is \"LO-HI\" with 0 <= LO <= HI <= 4294967295");
          ok = false;
          continue;
        }
        r.lo = lo, r.hi = hi;
      } else {
        Error(at, "must be an id 0..4294967295 or a range \"LO-HI\"");
        ok = false;
        continue;
      }
      out->push_back(r);
    }
    return ok;
  }

  bool Bits(const json& v, const std::string& where, const NamedBit* names, size_t n, uint8_t* out) {
    if (!v.is_array() || v.empty()) {
      std::string list;
      for (size_t i = 0; i < n; i++) list += std::string(i ? ", " : "") + names[i].name;
      Error(where, "must be a non-empty array of: " + list);
      return false;
    }
    bool ok = true;
    for (size_t i = 0; i < v.size(); i++) {
      bool found = false;
      for (size_t k = 0; k < n && v[i].is_string(); k++) {
        if (v[i].get_ref<const std::string&>() == names[k].name) *out |= names[k].bit, found = true;
      }
      if (!found) {
        std::string list;
        for (size_t k = 0; k < n; k++) list += std::string(k ? ", " : "") + names[k].name;
        Error(where + "/" + std::to_string(i), "must be one of: " + list);
        ok = false;
      }
    }
    return ok;
  }

  bool OneRule(const json& j, const std::string& where, const std::string& tenant, Rule* r) {
    r->where = where;
    if (auto it = lines_->find(where); it != lines_->end()) r->line = it->second;
    if (!j.is_object()) {
      Error(where, "a rule is an object with \"id\" and \"effect\"");
      return false;
    }
    Keys(j, where,
         {"id", "effect", "comment", "reason", "errno", "ops", "path", "path2", "name", "xattr", "client", "type",
          "mode", "size", "uid", "gid"});
    Comment(j, where);
    bool ok = true;
    auto fail = [&](const std::string& at, const std::string& msg) {
      Error(at, msg);
      ok = false;
    };
    if (!j.contains("id") || !j["id"].is_string() || !ValidRuleId(j["id"].get<std::string>())) {
      fail(where + "/id", "every rule has an \"id\": 1-64 of A-Z a-z 0-9 - _ . :");
    } else {
      r->id = j["id"].get<std::string>();
    }
    const std::string effect = j.contains("effect") && j["effect"].is_string() ? j["effect"].get<std::string>() : "";
    if (effect == "allow")
      r->effect = Effect::kAllow;
    else if (effect == "deny")
      r->effect = Effect::kDeny;
    else if (effect == "warn")
      r->effect = Effect::kWarn;
    else
      fail(where + "/effect", "every rule has an \"effect\": allow, deny or warn");
    r->err = EACCES;
    if (j.contains("errno")) {
      bool found = false;
      for (const auto& e : kErrnos) {
        if (j["errno"].is_string() && j["errno"].get<std::string>() == e.name) r->err = e.err, found = true;
      }
      if (!found) fail(where + "/errno", "must be one of EACCES, EPERM, EROFS, EDQUOT, EFBIG, ENOSPC");
      if (effect != "deny") fail(where + "/errno", "only a deny rule has an errno");
    }
    if (j.contains("reason")) {
      if (!j["reason"].is_string() || j["reason"].get<std::string>().size() > kMaxReasonBytes) {
        fail(where + "/reason", "must be a string of at most " + std::to_string(kMaxReasonBytes) + " bytes");
      } else {
        r->reason = j["reason"].get<std::string>();
        for (unsigned char c : r->reason) {
          if (c < 0x20 || c == 0x7f) {
            fail(where + "/reason", "no control characters");
            break;
          }
        }
      }
    }
    r->ops = kAllOps;
    if (j.contains("ops")) {
      const json& ops = j["ops"];
      r->ops = 0;
      if (!ops.is_array() || ops.empty()) {
        fail(where + "/ops", "must be a non-empty array of operation names (docs/policy.md \"Operations\")");
      } else {
        for (size_t i = 0; i < ops.size(); i++) {
          auto op = ops[i].is_string() ? OpFromName(ops[i].get<std::string>()) : std::nullopt;
          if (!op) {
            std::string list;
            for (size_t k = 0; k < kOpKinds; k++) list += std::string(k ? ", " : "") + OpName(static_cast<OpKind>(k));
            fail(where + "/ops/" + std::to_string(i), "unknown operation (one of: " + list + ")");
          } else {
            r->ops |= Bit(*op);
          }
        }
      }
    }
    if (j.contains("path")) ok = Patterns(j["path"], where + "/path", Kind::kPath, &r->paths) && ok;
    if (j.contains("path2")) ok = Patterns(j["path2"], where + "/path2", Kind::kPath, &r->paths2) && ok;
    if (j.contains("name")) ok = Patterns(j["name"], where + "/name", Kind::kName, &r->names) && ok;
    if (j.contains("xattr")) ok = Patterns(j["xattr"], where + "/xattr", Kind::kName, &r->xattrs) && ok;
    if (j.contains("client")) {
      ok = Patterns(j["client"], where + "/client", Kind::kClient, &r->clients) && ok;
      for (size_t i = 0; i < r->clients.size(); i++) {
        const std::string& prefix = r->clients[i].prefix();
        if (std::string("spiffe://")
                .compare(0, std::min<size_t>(9, prefix.size()), prefix, 0, std::min<size_t>(9, prefix.size())) != 0) {
          fail(where + "/client", "a client pattern matches SPIFFE ids: spiffe://<domain>/tenant/<t>/client/<c>");
        }
        // A tenant's rule only ever sees that tenant's clients.
        const size_t t = prefix.find("/tenant/");
        if (!tenant.empty() && t != std::string::npos) {
          const size_t end = prefix.find('/', t + 8);
          if (end != std::string::npos && prefix.substr(t + 8, end - t - 8) != tenant) {
            fail(where + "/client", "can never match: the rules of tenant " + tenant + " see only its own clients");
          }
        }
      }
    }
    if (j.contains("type")) ok = Bits(j["type"], where + "/type", kTypeNames, std::size(kTypeNames), &r->types) && ok;
    if (j.contains("mode")) ok = Bits(j["mode"], where + "/mode", kModeNames, std::size(kModeNames), &r->modes) && ok;
    if (j.contains("size")) {
      const json& s = j["size"];
      Range range{0, UINT64_MAX};
      bool good = s.is_object() && !s.empty();
      if (good) {
        for (auto it = s.begin(); it != s.end(); ++it) {
          if ((it.key() != "min" && it.key() != "max") || !it.value().is_number_unsigned())
            good = false;
          else
            (it.key() == "min" ? range.lo : range.hi) = it.value().get<uint64_t>();
        }
      }
      if (!good || range.lo > range.hi) {
        fail(where + "/size", "must be {\"min\": BYTES, \"max\": BYTES} (either may be left out; min <= max)");
      } else {
        r->size = range;
      }
    }
    if (j.contains("uid")) ok = Ids(j["uid"], where + "/uid", &r->uids) && ok;
    if (j.contains("gid")) ok = Ids(j["gid"], where + "/gid", &r->gids) && ok;
    if (!ok) return false;

    // Narrow the ops to those every condition can apply to; none left: the
    // rule can never match.
    uint32_t ops = r->ops;
    std::string why;
    auto narrow = [&](uint32_t can, const char* cond) {
      if ((ops & can) == 0 && why.empty()) why = std::string("\"") + cond + "\" applies to none of its operations";
      ops &= can;
    };
    if (r->modes) narrow(kPermOps, "mode");
    if (r->size) narrow(kSizeOps, "size");
    if (!r->paths2.empty()) narrow(kPath2Ops, "path2");
    if (!r->xattrs.empty()) narrow(kXattrOps, "xattr");
    if (r->types) {
      uint32_t can = 0;
      for (size_t op = 0; op < kOpKinds; op++) {
        if (TypesOf(static_cast<OpKind>(op)) & r->types) can |= 1u << op;
      }
      narrow(can, "type");
    }
    if (ops == 0) {
      Error(where, "can never match: " + why);
      return false;
    }
    r->ops = ops;
    return true;
  }

  void LimitsIn(const json& j, const std::string& where, Limits* l) {
    if (!j.is_object()) return Error(where, "must be an object");
    Keys(j, where,
         {"max_file_size", "max_transaction_ops", "max_transaction_bytes", "transactions_per_second", "comment"});
    auto get = [&](const char* key, uint64_t max, auto* out) {
      if (!j.contains(key)) return;
      if (!j[key].is_number_unsigned() || j[key].get<uint64_t>() == 0 || j[key].get<uint64_t>() > max) {
        return Error(where + "/" + key, "must be an integer 1.." + std::to_string(max));
      }
      *out = static_cast<std::remove_reference_t<decltype(**out)>>(j[key].get<uint64_t>());
    };
    get("max_file_size", UINT64_MAX >> 1, &l->max_file_size);
    get("max_transaction_ops", UINT32_MAX, &l->max_transaction_ops);
    get("max_transaction_bytes", UINT64_MAX >> 1, &l->max_transaction_bytes);
    get("transactions_per_second", 1000000, &l->transactions_per_second);
  }

  static bool Covered(const std::vector<Glob>& narrow, const std::vector<Glob>& wide) {
    if (wide.empty()) return true;
    if (narrow.empty()) return false;
    for (const Glob& n : narrow) {
      bool covered = false;
      for (const Glob& w : wide) covered = covered || n.CoveredBy(w);
      if (!covered) return false;
    }
    return true;
  }
  static bool Covered(const std::vector<Range>& narrow, const std::vector<Range>& wide) {
    if (wide.empty()) return true;
    if (narrow.empty()) return false;
    for (const Range& n : narrow) {
      bool covered = false;
      for (const Range& w : wide) covered = covered || w.Contains(n);
      if (!covered) return false;
    }
    return true;
  }
  // Does `a` match everything `b` matches (as far as can be told)?
  static bool Covers(const Rule& a, const Rule& b) {
    if (b.ops & ~a.ops) return false;
    if (a.types && (!b.types || (b.types & ~a.types))) return false;
    if (a.modes && (!b.modes || (b.modes & ~a.modes))) return false;
    if (a.size && (!b.size || !a.size->Contains(*b.size))) return false;
    return Covered(b.paths, a.paths) && Covered(b.paths2, a.paths2) && Covered(b.names, a.names) &&
           Covered(b.xattrs, a.xattrs) && Covered(b.clients, a.clients) && Covered(b.uids, a.uids) &&
           Covered(b.gids, a.gids);
  }

  void Shadowed(const std::vector<Rule>& rules, const std::vector<Rule>& before) {
    for (size_t k = 0; k < rules.size(); k++) {
      const Rule& b = rules[k];
      auto check = [&](const Rule& a) {
        if (a.effect == Effect::kWarn || !Covers(a, b)) return false;
        Warning(b.where, "rule " + b.id + " never decides anything: rule " + a.id + " (" + a.where +
                             (a.line ? ", line " + std::to_string(a.line) : "") +
                             ") is tried first and matches everything it matches");
        return true;
      };
      bool done = false;
      for (const Rule& a : before) {
        if ((done = check(a))) break;
      }
      for (size_t i = 0; i < k && !done; i++) done = check(rules[i]);
    }
  }

  std::vector<Diagnostic>* diags_;
  const std::unordered_map<std::string, int>* lines_;
};

Result<std::shared_ptr<const Policy>> Policy::Parse(std::string_view text, std::vector<Diagnostic>* diagnostics) {
  std::vector<Diagnostic> local;
  std::vector<Diagnostic>* diags = diagnostics ? diagnostics : &local;
  const size_t first = diags->size();
  auto first_error = [&]() -> Status {
    for (size_t i = first; i < diags->size(); i++) {
      if ((*diags)[i].error) return Status(Code::kInvalidArgument, "policy: " + (*diags)[i].ToString());
    }
    return Status::Ok();
  };
  if (text.size() > kMaxPolicyBytes) {
    diags->push_back(Diagnostic{true, "", 0, "larger than " + std::to_string(kMaxPolicyBytes) + " bytes"});
    return first_error();
  }
  const std::string owned(text);  // NUL-terminated, for the line counter
  const char* cursor = owned.data();
  LineMapper mapper(owned.data(), &cursor, diags);
  TrackingIterator b{owned.data(), &cursor}, e{owned.data() + owned.size(), &cursor};
  if (!json::sax_parse(b, e, &mapper) || !first_error().ok()) {
    Status s = first_error();
    return s.ok() ? Status(Code::kInvalidArgument, "policy: not valid JSON") : s;
  }
  json doc = json::parse(owned, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return Status(Code::kInvalidArgument, "policy: not valid JSON");
  auto p = std::make_shared<Policy>();
  Parser parser(diags, &mapper.lines);
  parser.Document(doc, p.get());
  if (Status s = first_error(); !s.ok()) return s;
  p->sha256_ = Sha256Hex(text);
  return std::shared_ptr<const Policy>(std::move(p));
}

Result<std::shared_ptr<const Policy>> Policy::Load(const std::string& path, std::vector<Diagnostic>* diagnostics) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status(Code::kIo, "policy: cannot open " + path + ": " + strerror(errno));
  std::string text;
  char buf[65536];
  while (in.read(buf, sizeof(buf)) || in.gcount() > 0) {
    text.append(buf, static_cast<size_t>(in.gcount()));
    if (text.size() > kMaxPolicyBytes) {
      return Status(Code::kTooLarge,
                    "policy: " + path + " is larger than " + std::to_string(kMaxPolicyBytes) + " bytes");
    }
  }
  if (in.bad()) return Status(Code::kIo, "policy: cannot read " + path + ": " + strerror(errno));
  Result<std::shared_ptr<const Policy>> p = Parse(text, diagnostics);
  if (!p.ok()) return Status(p.status().code(), path + ": " + p.status().message());
  return p;
}

}  // namespace crfs::policy
