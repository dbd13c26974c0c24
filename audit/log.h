// log.h - the audit log on disk: records as the leaves of a Merkle tree,
// signed checkpoints of it, the writer crfsd appends with, and the reader
// and verifier crfs-audit checks with (docs/audit.md is the normative text).
//
// A log directory holds:
//   records.jsonl      one record per line: canonical JSON (sorted keys, no
//                      spaces, ASCII with \u escapes), each with
//                      "i" (its index, from 0), "prev" (hex leaf hash of
//                      record i-1; 64 zeros for record 0), "t" (UTC time,
//                      RFC 3339 with milliseconds) and "ev" (what happened);
//                      leaf hash = SHA-256(0x00 || the line without "\n")
//   checkpoints.jsonl  every checkpoint signed, in order: {"note": "..."}
//   checkpoint         the latest signed checkpoint (a C2SP signed note)
//
// AuditLog (the writer) is thread-safe: one mutex around each append. It
// owns its files; nobody else writes them.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "audit/merkle.h"
#include "audit/note.h"
#include "proto/status.h"

namespace crfs::audit {

constexpr size_t kMaxRecordBytes = 1 << 20;

// Checks one line as a record at `index` after a record with leaf hash
// `prev`: canonical form, "i", "prev", "t", "ev". "" if it is one, else
// what is wrong.
std::string CheckRecord(std::string_view line, uint64_t index, const Hash& prev, nlohmann::json* parsed = nullptr);

class AuditLog {
 public:
  // Opens (creating if needed) the log in `dir`, signing as `signer`. An
  // existing log is read whole and checked against its own latest
  // checkpoint (records re-hashed, the checkpoint's signature and root): a
  // log that does not match is refused, so crfsd never extends a history
  // it cannot vouch for. A torn last line (a crash mid-append, after which
  // nothing acted on it) past the latest checkpoint is cut off and said so
  // in *note.
  static Result<std::unique_ptr<AuditLog>> Open(const std::string& dir, Signer signer, std::string* note);
  ~AuditLog();

  // Appends `record` (an object; "i", "prev" and "t" are set here) with
  // one write(2); its index. An error if it could not be written whole:
  // the caller must then not do what the record describes (fail closed).
  Result<uint64_t> Append(nlohmann::json record);
  // The same, with what was written: its index, leaf hash and line (no
  // "\n"), for a writer that keeps a copy of the record elsewhere (the
  // intent journal's BEGIN carries a transaction's decision record).
  struct Appended {
    uint64_t index = 0;
    Hash leaf{};
    std::string line;
  };
  Result<Appended> AppendRecord(nlohmann::json record);
  // Is record `index` the one with leaf hash `leaf`? Answered from the
  // leaf hashes read at Open and those appended since, until
  // ForgetStartLeaves() (after crfsd's start has found every record its
  // journals carry: 32 bytes a record are not kept for the whole run).
  // False after that for records that existed at the call.
  bool Holds(uint64_t index, const Hash& leaf);
  // Which records the "transaction.result" records from record `from` on
  // are the results of (their "of"): read back from the file, at a start
  // (until ForgetStartLeaves; empty after it).
  Result<std::set<uint64_t>> ResultsSince(uint64_t from);
  void ForgetStartLeaves();
  // Makes every appended record durable (fdatasync).
  Status Sync();
  // Signs a checkpoint of the tree if it grew since the last one (written
  // to checkpoints.jsonl, synced, then `checkpoint` replaced by rename).
  Result<Checkpoint> SignCheckpoint();
  uint64_t size();
  // The errno of the last Append or Sync that failed (0: none failed).
  int last_errno();
  const Verifier& verifier() const { return signer_.verifier(); }

 private:
  Status CutBack();  // under mu_
  AuditLog(std::string dir, Signer signer) : dir_(std::move(dir)), signer_(std::move(signer)) {}
  std::string dir_;
  Signer signer_;
  std::mutex mu_;
  int fd_ = -1;  // records.jsonl, O_APPEND
  CompactRange tree_;
  Hash last_{};
  uint64_t signed_size_ = 0;
  bool signed_any_ = false;
  bool broken_ = false;  // a write failed part-way: the file is cut back before the next append
  off_t good_end_ = 0;
  int last_errno_ = 0;
  std::vector<Hash> start_leaves_;    // every leaf, until ForgetStartLeaves()
  std::vector<off_t> start_offsets_;  // where each record starts, as long
  bool keep_leaves_ = true;
};

// What a verification found.
struct Finding {
  bool error = true;
  std::string text;  // "record 17 (line 18): ..."
  // Only that records follow the latest checkpoint: what a live log looks
  // like between two checkpoints (a reader may accept it).
  bool unsigned_tail = false;
};
struct VerifyResult {
  uint64_t records = 0;
  uint64_t checkpoints = 0;
  std::optional<Checkpoint> latest;
  std::vector<Finding> findings;
  bool ok() const;
};

// The whole check crfs-audit verify does: every record re-hashed and
// checked (canonical, index, chain), every checkpoint's signature by
// `verifier`, origin, that sizes never shrink and each root is the root of
// that many records; with `trusted` (a checkpoint the auditor kept), that
// the log still extends it.
VerifyResult Verify(const std::string& dir, const Verifier& verifier, const std::string* trusted_note);

// Reads records.jsonl: the lines and their leaf hashes (no checks).
Status ReadRecords(const std::string& dir, std::vector<std::string>* lines, std::vector<Hash>* leaves);
// The latest checkpoint note, verified by `verifier`.
Result<std::pair<std::string, Checkpoint>> LatestCheckpoint(const std::string& dir, const Verifier& verifier);

}  // namespace crfs::audit
