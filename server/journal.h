// journal.h - a tenant's intent journal: what crfsd is about to do, so that
// a transaction cut short by a crash of crfsd is finished on restart.
//
// One append-only file per tenant, <storage_root>/journal/<tenant>, outside
// the tenant's subvolume (the tenant never sees it). Records, each
//   le32 magic "CRJ1" | u8 type | le32 length | le32 crc32c(payload) | payload
// are:
//   EPOCH (1)        le64 epoch            first record; see below
//   BEGIN (2)        le64 generation, le32 host uid, le32 host gid, u8 tenant
//                    root (1/0), le32 n, n x Op, u8 has_client (1/0)
//                    [answer (answers.h) naming the client, transaction id
//                    and body digest, no reply yet], le32 n, n x le64
//                    provisional ids created, le32 n, n x (le64 provisional
//                    index, le64 directory, le32 len, name)   before the first op
//   DONE (3)         le64 generation, le32 op index, le64 inode   after each op
//                    (the inode a kCreate made; 0 otherwise), written in
//                    batches of 64 KiB and at END
//   END (4)          le64 generation, u8 has_answer (1/0) [answer]   after
//                    the last op, with the answer the client was sent
//   ANSWERS (5)      le64 n, n x answer: the answers kept at the last
//                    restart (right after EPOCH)
//   ABORT (6)        le64 generation, le32 failed op, le32 errno, le32 n,
//                    n x (le64 provisional id, le64 inode)   before a
//                    rollback: the transaction is taken back, not finished
// BEGIN ends with the undo of each op (u8 flags, le32 mode, uid, gid, 2 x
// (le64 sec, le32 nsec), u8 had_xattr, le32 len, value) and le32 n, n x
// (le64 dir, 2 x (le64 sec, le32 nsec)): the directories' times; then
// u8 has_record (1/0) [le64 index, 32 bytes leaf hash, le32 len, line]:
// the transaction's decision record in the audit log (AuditedRecord; a
// BEGIN that ends before this byte has none).
// Reading stops at the first record that is short or fails its crc (a
// write torn by the crash); everything after it is ignored and rewritten.
// A BEGIN without its END is the transaction to finish: its ops from the
// one after the last DONE on, each re-checked against its precondition;
// its answer is then rebuilt from what BEGIN says it creates, so that a
// client resending it after the restart gets it (protocol.md §6.4).
//
// Generations are epoch << 32 | sequence. Each start of crfsd takes a new
// epoch (one more than the journal's), written and fsync'ed before any
// session is served, so a generation handed out before a restart is always
// below every generation after it, even if the journal's tail was lost.
//
// The journal is written with write(2) and not synced per transaction: a
// crash of crfsd (SIGKILL, abort) loses nothing the kernel has accepted.
// Power loss is covered only up to the last Sync() (SECURITY.md §4).
//
// Not thread-safe: owned by the tenant's store.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "proto/status.h"
#include "proto/wire_reader.h"
#include "server/answers.h"
#include "server/commit_plan.h"

namespace crfs::server {

// How to take back one op of a transaction that fails midway (ENOSPC, EIO,
// the tree changed behind crfsd's back): computed before the transaction
// starts, journaled in its BEGIN record (tenant_undo.cc).
struct Undo {
  enum Flags : uint8_t {
    kSkip = 1,    // kUnlink of an entry of a directory the plan removes: nothing
                  // done here (the directory goes to the undo area whole)
    kTrash = 2,   // kUnlink: the entry moves to the undo area as "<gen>.<op>"
    kClone = 4,   // first data op of an existing file: a reflink copy
                  // "<gen>.c<obj>" is made first, and copied back to undo
    kAttrs = 8,   // the object's mode, owner and times before (for chown,
                  // chmod, settimes)
    kXattr = 16,  // the xattr's value before (had_xattr: it existed)
  };
  uint8_t flags = 0;
  uint32_t mode = 0, uid = 0, gid = 0;
  proto::Timespec atime, mtime;
  bool had_xattr = false;
  std::string xattr;
  bool operator==(const Undo&) const = default;
};

// The times of a directory whose entries a transaction changes, restored
// last when it is rolled back.
struct DirTimes {
  uint64_t dir = 0;
  proto::Timespec atime, mtime;
  bool operator==(const DirTimes&) const = default;
};

// A transaction's decision record in the audit log (docs/audit.md,
// "Durability"), carried in its BEGIN. crfsd appends the record to the log
// without syncing the log; BEGIN's own fdatasync (at the power and sync
// durability levels) makes it durable before the first op, so a
// transaction costs no second fdatasync. Each start looks every BEGIN's
// record up in the log (index and leaf hash) and appends it again if the
// log lost it (a power cut between two syncs of the log).
struct AuditedRecord {
  uint64_t index = 0;
  std::array<uint8_t, 32> leaf{};
  std::string line;  // as written: one canonical JSON record, no newline
  bool operator==(const AuditedRecord&) const = default;
};

struct JournalPending {
  uint64_t generation = 0;
  uint32_t uid = 0, gid = 0;  // the host ids it runs as (finished with them too)
  bool tenant_root = false;
  std::vector<Op> ops;
  size_t next_op = 0;                 // ops before this one are done
  std::map<uint64_t, uint64_t> made;  // provisional id -> inode, from DONE records
  // Whose transaction it is (no reply yet), and what its reply maps.
  std::optional<StoredAnswer> answer;
  std::vector<uint64_t> created;
  std::map<uint64_t, std::pair<uint64_t, std::string>> new_indexes;
  // How to take each op back, and the directories' times.
  std::vector<Undo> undo;
  std::vector<DirTimes> dir_times;
  // An ABORT record: the op that failed (rolled back from it down to op 0),
  // its errno, and every object the transaction had made by then.
  bool aborted = false;
  uint32_t failed_op = 0;
  int32_t failed_errno = 0;
  std::optional<StoredAnswer> end_answer;  // ParseJournal's own: the END record's answer
  std::optional<AuditedRecord> record;     // its decision in the audit log
};

// A transaction the journal says has ended (finished, or rolled back if
// `aborted`), with its decision record: what a start checks the audit log
// for.
struct JournalEnded {
  uint64_t generation = 0;
  bool aborted = false;
  int32_t failed_errno = 0;
  AuditedRecord record;
};

struct JournalContents {
  uint64_t epoch = 0;
  uint64_t last_generation = 0;
  // Transactions to finish (or roll back), oldest first: after a crash of
  // crfsd at most one; after a power cut possibly several (see Journal).
  std::vector<JournalPending> pending;
  std::optional<uint64_t> ended;            // the end marker, if there is one
  std::vector<StoredAnswer> answers;        // oldest first
  std::vector<JournalEnded> ended_records;  // oldest first; those with a record
  size_t valid_bytes = 0;                   // the prefix that parsed
};

// Parses journal bytes (untrusted in the sense that they may be torn or
// corrupt; never trusted past the first bad record).
// `ended`: the end marker's value (Journal): every transaction above it is
// pending; without a marker, every one without an END record.
JournalContents ParseJournal(proto::Bytes bytes, std::optional<uint64_t> ended = std::nullopt);

// Reads the journal of `tenant` under `dir` without changing anything
// (O_RDONLY; a missing file is an empty journal): for --check-config,
// which may run while crfsd is appending to it.
Result<JournalContents> InspectJournal(const std::string& dir, const std::string& tenant);

// Encodes one op / reads one op (exposed for tests and the fuzz target).
void EncodeOp(const Op& op, proto::Writer* w);
[[nodiscard]] Status DecodeOp(proto::Reader* r, Op* op);

class Journal {
 public:
  // Opens (creating) the journal of `tenant` under `dir` (created 0700),
  // parses it into *contents, and starts a new epoch: the file is rewritten
  // as one EPOCH record (epoch + 1), fsync'ed with its directory. The caller
  // finishes contents->pending (if any) first and calls Restart() then.
  static Result<std::unique_ptr<Journal>> Open(const std::string& dir, const std::string& tenant,
                                               JournalContents* contents);
  ~Journal();
  Journal(const Journal&) = delete;
  Journal& operator=(const Journal&) = delete;

  // Rewrites the journal as an EPOCH record and an ANSWERS record of
  // `answers` (atomically: temp file, fsync, rename). Only when no
  // transaction is in progress and everything before is durable (the
  // caller synced the file system).
  [[nodiscard]] Status Restart(uint64_t epoch, const AnswerCache& answers);

  // `who`: the client and transaction id (reply empty), or nullptr for a
  // client without a client id.
  [[nodiscard]] Status Begin(uint64_t generation, uint32_t uid, uint32_t gid, bool tenant_root, const Plan& plan,
                             const StoredAnswer* who, const std::vector<Undo>& undo,
                             const std::vector<DirTimes>& dir_times, const AuditedRecord* record = nullptr);
  // Before a rollback of `generation` from op `failed` down (`made`: every
  // object created so far).
  [[nodiscard]] Status Abort(uint64_t generation, uint32_t failed, int err, const std::map<uint64_t, uint64_t>& made);
  // `now`: written at once, not batched (a kCreate's: replay must know
  // which inode the transaction made, to tell it from one made by others).
  [[nodiscard]] Status Done(uint64_t generation, uint32_t index, uint64_t inode, bool now = false);
  [[nodiscard]] Status End(uint64_t generation, const StoredAnswer* answer);

  // fdatasync: every record written so far is on stable storage.
  [[nodiscard]] Status SyncData();
  // The end marker: every transaction up to `generation` is complete (or
  // rolled back). An xattr on a file of its own, <journal>.ended, which is
  // never fsync'ed: on btrfs it is then committed in the same file-system
  // transaction stream as the tenant's operations before it, never ahead
  // of them (SECURITY.md §4, "Durability").
  [[nodiscard]] Status SetEnded(uint64_t generation);
  static constexpr char kEndedXattr[] = "user.crfs.ended";
  // Cuts the journal back to `mark` (an earlier bytes()): for a
  // transaction rolled back completely, which leaves nothing to replay.
  [[nodiscard]] Status TruncateTo(uint64_t mark);

  uint64_t epoch() const { return epoch_; }
  uint64_t bytes() const { return bytes_; }
  // After a failed write: its errno (ENOSPC, EDQUOT, EIO), and whether the
  // journal could not be cut back to its last whole record (then nothing
  // may be appended until crfsd restarts).
  int last_errno() const { return last_errno_; }
  bool torn() const { return torn_; }

 private:
  Journal(std::string dir, std::string path, int fd) : dir_(std::move(dir)), path_(std::move(path)), fd_(fd) {}
  [[nodiscard]] Status Append(uint8_t type, const std::vector<uint8_t>& payload);
  [[nodiscard]] Status Flush();

  // DONE records are written in batches: one lost to a crash only means an
  // op is checked again on replay (its precondition says it is done).
  static constexpr size_t kDoneBatch = 64 << 10;
  std::vector<uint8_t> done_;

  std::string dir_, path_;
  int fd_;
  uint64_t epoch_ = 0;
  uint64_t bytes_ = 0;
  int last_errno_ = 0;
  bool torn_ = false;
  int marker_fd_ = -1;
};

}  // namespace crfs::server
