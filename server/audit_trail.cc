#include "server/audit_trail.h"

#include <time.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "server/log.h"

namespace crfs::server {
namespace {

using nlohmann::json;

// How much of a transaction's operations a record lists: beyond it they
// are counted ("ops_total"), so that a record stays far below the log's
// 1 MiB line limit whatever the names.
constexpr size_t kOpsBudget = 256 << 10;

// The length of the valid UTF-8 sequence at s[i] (RFC 3629: no overlong
// forms, no surrogates, at most U+10FFFF); 0 if there is none.
size_t Utf8At(std::string_view s, size_t i) {
  const auto b = [&](size_t k) { return static_cast<unsigned char>(s[i + k]); };
  const unsigned char c = b(0);
  if (c < 0x80) return 1;
  size_t n = c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3 : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
  if (n == 0 || i + n > s.size()) return 0;
  for (size_t k = 1; k < n; k++) {
    if ((b(k) & 0xc0) != 0x80) return 0;
  }
  if (c == 0xe0 && b(1) < 0xa0) return 0;  // overlong
  if (c == 0xed && b(1) > 0x9f) return 0;  // a surrogate
  if (c == 0xf0 && b(1) < 0x90) return 0;  // overlong
  if (c == 0xf4 && b(1) > 0x8f) return 0;  // past U+10FFFF
  return n;
}

}  // namespace

std::string AuditText(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    const size_t n = text[i] == '\\' ? 0 : Utf8At(text, i);
    if (n == 0) {
      char hex[8];
      std::snprintf(hex, sizeof(hex), "\\x%02x", static_cast<unsigned char>(text[i]));
      out += hex;
      i++;
    } else {
      out.append(text.substr(i, n));
      i += n;
    }
  }
  return out;
}

std::string ErrnoName(int e) {
  const char* name = strerrorname_np(e);
  return name ? name : std::to_string(e);
}

json RequestFields(const PolicyCheck& check) {
  return json{{"tenant", check.tenant},   {"client", check.client}, {"cert", check.cert},
              {"session", check.session}, {"uid", check.uid},       {"gid", check.gid}};
}

json ActionJson(const policy::Action& a) {
  json j{{"op", policy::OpName(a.op)}, {"path", AuditText(a.path)}};
  if (!a.path2.empty()) j["path2"] = AuditText(a.path2);
  if (*policy::FileTypeName(a.type)) j["type"] = policy::FileTypeName(a.type);
  if (a.perms) {
    char mode[16];
    std::snprintf(mode, sizeof(mode), "%04o", *a.perms);
    j["perms"] = mode;
  }
  if (a.size) j["size"] = *a.size;
  if (!a.xattr.empty()) j["xattr"] = AuditText(a.xattr);
  return j;
}

bool RecordBudget::Take(uint64_t* suppressed) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  const int64_t now = static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
  if (last_ms_ != 0) tokens_ = std::min(kBurst, tokens_ + kRate * static_cast<double>(now - last_ms_) / 1000);
  last_ms_ = now;
  if (tokens_ < 1) {
    suppressed_++;
    return false;
  }
  tokens_ -= 1;
  *suppressed = suppressed_;
  suppressed_ = 0;
  return true;
}

TransactionAudit::TransactionAudit(const PolicyCheck& check, uint64_t txn, const RequestError* err,
                                   RecordBudget* budget)
    : check_(check), budget_(budget), txn_(txn), err_(err) {}

TransactionAudit::~TransactionAudit() {
  if (!check_.audit) return;
  if (!decision_) {
    if (err_->err != 0) WriteDenied();
  } else {
    WriteResult();
  }
}

void TransactionAudit::Op(const policy::Action& a) {
  ops_total_++;
  if (ops_bytes_ >= kOpsBudget) return;
  json j = ActionJson(a);
  ops_bytes_ += j.dump().size();
  ops_.push_back(std::move(j));
}

bool TransactionAudit::Allowed(RequestError* err_out) {
  if (!check_.audit) return true;
  json r = RequestFields(check_);
  r["ev"] = "transaction";
  r["txn"] = txn_;
  r["decision"] = "allow";
  r["policy"] = check_.policy ? check_.policy->sha256() : "";
  r["ops"] = ops_;
  r["ops_total"] = ops_total_;
  if (!warned_.empty()) r["warned"] = warned_;
  auto a = check_.audit->AppendRecord(std::move(r));
  if (!a.ok()) {
    const int e = check_.audit->last_errno();
    Log(LogLevel::kError, "tenant %s: %s; transaction refused", check_.tenant.c_str(), a.status().message().c_str());
    return Fail(err_out, e == ENOSPC || e == EDQUOT || e == EROFS ? e : EIO,
                "the audit log cannot be written (" + a.status().message() + "); nothing changed");
  }
  decision_ = a->index;
  record_ = AuditedRecord{a->index, a->leaf, std::move(a->line)};
  return true;
}

Result<uint64_t> EnsureDecisionRecorded(audit::AuditLog* log, const std::string& tenant, const AuditedRecord& r,
                                        bool* restored) {
  *restored = false;
  if (log->Holds(r.index, r.leaf)) return r.index;
  // The journal's copy is crc-checked, not trusted further: it must be a
  // record of this tenant's transaction.
  json j = json::parse(r.line, nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("ev") || j["ev"] != "transaction" || !j.contains("tenant") ||
      j["tenant"] != tenant) {
    return Status(Code::kInvalidArgument, "tenant " + tenant + ": the journal's copy of audit record " +
                                              std::to_string(r.index) + " is not a transaction record of this tenant");
  }
  json from{
      {"from", "journal"}, {"i", j.value("i", json())}, {"prev", j.value("prev", json())}, {"t", j.value("t", json())}};
  j.erase("i");
  j.erase("prev");
  j.erase("t");
  j["restored"] = std::move(from);
  auto a = log->Append(std::move(j));
  if (!a.ok()) {
    return Status(a.status().code(), "tenant " + tenant + ": the audit log lost record " + std::to_string(r.index) +
                                         " and it cannot be restored from the journal: " + a.status().message());
  }
  *restored = true;
  return *a;
}

Status RecordJournaledResult(audit::AuditLog* log, const std::string& tenant, const AuditedRecord& r, uint64_t of,
                             uint64_t gen, int err) {
  json d = json::parse(r.line, nullptr, false);
  json rec{{"ev", "transaction.result"}, {"of", of}, {"tenant", tenant}, {"by", "journal"}};
  if (d.is_object()) {
    if (d.contains("session")) rec["session"] = d["session"];
    if (d.contains("txn")) rec["txn"] = d["txn"];
  }
  if (err == 0) {
    rec["applied"] = true;
    rec["gen"] = gen;
  } else {
    rec["applied"] = false;
    rec["errno"] = ErrnoName(err);
    rec["reason"] = "rolled back from the intent journal at a start";
  }
  auto a = log->Append(std::move(rec));
  if (!a.ok()) return Status(a.status().code(), "tenant " + tenant + ": audit log: " + a.status().message());
  return Status::Ok();
}

void TransactionAudit::WriteDenied() {
  uint64_t suppressed = 0;
  if (budget_ && !budget_->Take(&suppressed)) return;
  json r = RequestFields(check_);
  if (suppressed) r["suppressed"] = suppressed;
  r["ev"] = "transaction";
  r["txn"] = txn_;
  r["decision"] = "deny";
  r["by"] = by_;
  if (!rule_.empty()) r["rule"] = rule_;
  r["errno"] = ErrnoName(err_->err);
  r["reason"] = AuditText(err_->text);
  r["policy"] = check_.policy ? check_.policy->sha256() : "";
  r["ops"] = ops_;
  r["ops_total"] = ops_total_;
  if (!warned_.empty()) r["warned"] = warned_;
  if (auto i = check_.audit->Append(std::move(r)); !i.ok()) {
    Log(LogLevel::kError, "tenant %s: a refused transaction was not recorded: %s", check_.tenant.c_str(),
        i.status().message().c_str());
  }
}

void TransactionAudit::WriteResult() {
  json r{{"ev", "transaction.result"},
         {"of", *decision_},
         {"tenant", check_.tenant},
         {"session", check_.session},
         {"txn", txn_}};
  if (err_->err == 0) {
    r["applied"] = true;
    r["gen"] = generation_;
  } else {
    r["applied"] = false;
    r["errno"] = ErrnoName(err_->err);
    r["reason"] = AuditText(err_->text);
  }
  if (auto i = check_.audit->Append(std::move(r)); !i.ok()) {
    Log(LogLevel::kError, "tenant %s: the end of transaction record %llu was not recorded: %s", check_.tenant.c_str(),
        static_cast<unsigned long long>(*decision_), i.status().message().c_str());
  }
}

bool SyncAuditFirst(audit::AuditLog* log, RequestError* err) {
  if (!log) return true;
  if (Status s = log->Sync(); !s.ok()) {
    const int e = log->last_errno();
    return Fail(err, e ? e : EIO, "the audit log cannot be synced (" + s.message() + "): not durable yet");
  }
  return true;
}

bool AuditRead(const PolicyCheck& check, const policy::Action& a, const policy::Decision& d, RecordBudget* budget) {
  if (!check.audit) return true;
  uint64_t suppressed = 0;
  if (d.effect != policy::Effect::kAllow && budget && !budget->Take(&suppressed)) return true;
  json r = RequestFields(check);
  if (suppressed) r["suppressed"] = suppressed;
  r["ev"] = "read";
  r["decision"] = d.effect == policy::Effect::kAllow ? "allow" : "deny";
  if (d.rule) r["rule"] = d.rule->id;
  if (d.effect != policy::Effect::kAllow) r["errno"] = ErrnoName(d.err ? d.err : EACCES);
  if (!d.warned.empty()) {
    json w = json::array();
    for (const policy::Rule* rule : d.warned) w.push_back(rule->id);
    r["warned"] = std::move(w);
  }
  r["policy"] = check.policy ? check.policy->sha256() : "";
  r["op"] = ActionJson(a);
  auto i = check.audit->Append(std::move(r));
  if (!i.ok()) {
    Log(LogLevel::kError, "tenant %s: a read decision was not recorded: %s", check.tenant.c_str(),
        i.status().message().c_str());
  }
  return i.ok();
}

}  // namespace crfs::server
