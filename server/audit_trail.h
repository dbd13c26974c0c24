// audit_trail.h - the audit records crfsd writes for what tenants ask
// (docs/audit.md, "Records"): one per transaction when it is decided, one
// when it has ended, and one per refused or warned read.
//
// A TransactionAudit lives on the stack of TenantStore::Commit and belongs
// to the thread running it (the tenant's store worker); the AuditLog it
// writes to is shared and thread-safe. Fail closed: a transaction whose
// "allow" record cannot be written is refused before the journal sees it
// (Allowed returns false); a refusal or an ending that cannot be recorded
// is logged, and changes nothing that already happened.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "policy/policy.h"
#include "server/config.h"
#include "server/journal.h"
#include "server/policy_gate.h"
#include "server/request_error.h"

namespace crfs::server {

// Text for a record: valid UTF-8 kept as it is (the log's JSON escapes it),
// every other byte and the backslash written as \xNN -- lossless, and a
// name of invalid UTF-8 can never make a record unwritable.
std::string AuditText(std::string_view text);

// "EACCES" for EACCES; the number for an errno without a name.
std::string ErrnoName(int e);

// The fields every record about a request carries: tenant, client, cert,
// session, uid, gid.
nlohmann::json RequestFields(const PolicyCheck& check);

// One operation as the policy saw it: {"op", "path", "path2", "type",
// "perms" (octal text), "size", "xattr"}, only the fields the action has.
nlohmann::json ActionJson(const policy::Action& a);

// How many refusals a tenant may have recorded: a token bucket (kRate a
// second, bursts of kBurst). Refusals cost the refused client nothing, so
// without it one tenant could fill the log's disk and, the log failing
// closed, stop every tenant. Past the budget a refusal is counted, not
// written; the next one written carries "suppressed": how many were not.
// Allowed transactions are never dropped (they are bounded by the policy's
// transactions_per_second and by the work they do). Owned by one
// TenantStore; used by whichever thread holds the store.
class RecordBudget {
 public:
  static constexpr double kRate = 100, kBurst = 1000;
  // May a refusal be written now? If so, *suppressed is set to the count
  // dropped since the last written one (then zeroed).
  bool Take(uint64_t* suppressed);

 private:
  double tokens_ = kBurst;
  int64_t last_ms_ = 0;
  uint64_t suppressed_ = 0;
};

class TransactionAudit {
 public:
  // Records of transaction `txn` (the request id; 0 if the client has no
  // client id) of check's requester in `tenant`. `err` is Commit's answer:
  // read when the records are written (by the destructor for a refusal and
  // for the ending), so every way out of Commit is recorded.
  TransactionAudit(const PolicyCheck& check, uint64_t txn, const RequestError* err, RecordBudget* budget);
  ~TransactionAudit();
  TransactionAudit(const TransactionAudit&) = delete;
  TransactionAudit& operator=(const TransactionAudit&) = delete;

  // Which check a refusal from here on comes from: "validation",
  // "permissions", "limits", "policy", "server".
  void Stage(const char* by) { by_ = by; }
  // The policy decided `a` (every operation it is asked about, in order;
  // past a size budget they are counted, not listed).
  void Op(const policy::Action& a);
  void Warned(const std::string& rule) { warned_.push_back(rule); }
  // The rule (or limit, "limits.max_file_size") that refused.
  void DeniedBy(const char* by, std::string rule) {
    by_ = by;
    rule_ = std::move(rule);
  }
  // The transaction passed every check: the "allow" record is written (not
  // synced: the journal's BEGIN carries it, see record()). False (and
  // *err_out set: EIO, or the log's ENOSPC/EROFS) if it could not be:
  // refuse the transaction.
  bool Allowed(RequestError* err_out);
  // The "allow" record as written, for the journal's BEGIN; null before
  // Allowed or without an audit log.
  const AuditedRecord* record() const { return record_ ? &*record_ : nullptr; }
  // The generation it committed as (its "transaction.result" says so).
  void Applied(uint64_t generation) { generation_ = generation; }

 private:
  void WriteDenied();
  void WriteResult();
  const PolicyCheck& check_;
  RecordBudget* budget_;
  uint64_t txn_;
  const RequestError* err_;
  const char* by_ = "validation";
  std::string rule_;
  std::vector<std::string> warned_;
  nlohmann::json ops_ = nlohmann::json::array();
  size_t ops_bytes_ = 0;
  uint64_t ops_total_ = 0;
  std::optional<uint64_t> decision_;  // the index of the "allow" record
  std::optional<AuditedRecord> record_;
  uint64_t generation_ = 0;
};

// At a start, for a transaction the tenant's journal still holds: its
// decision record `r` is in `log` (index and leaf hash), or is appended
// again because a power cut lost the log's unsynced tail -- the same
// record, with "restored": {"from": "journal", "i", "prev", "t"} saying
// where it first stood. Returns the index it is at now; *restored says
// whether it had to be appended. An error if it cannot be: the start
// fails (nothing stays applied without its record).
Result<uint64_t> EnsureDecisionRecorded(audit::AuditLog* log, const std::string& tenant, const AuditedRecord& r,
                                        bool* restored);
// The "transaction.result" of a transaction whose end the journal told at
// a start (finished or rolled back by replay, or ended before a power cut
// that lost its result): "by": "journal". `err` 0: applied as `gen`.
Status RecordJournaledResult(audit::AuditLog* log, const std::string& tenant, const AuditedRecord& r, uint64_t of,
                             uint64_t gen, int err);

// Before a generation is announced durable: the audit records of what it
// contains are on stable storage too (docs/audit.md, "Durability"). False,
// with *err set, if the log cannot be synced: nothing is announced.
bool SyncAuditFirst(audit::AuditLog* log, RequestError* err);

// A read-side decision worth recording (refused, or warned by a rule):
// written as a "read" record; false if it could not be written.
// A refusal past `budget` is counted instead (true: nothing went wrong).
bool AuditRead(const PolicyCheck& check, const policy::Action& a, const policy::Decision& d, RecordBudget* budget);

}  // namespace crfs::server
