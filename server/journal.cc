#include "server/journal.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "proto/checksum.h"

namespace crfs::server {
namespace {

constexpr uint32_t kMagic = 0x314a5243;  // "CRJ1"
constexpr uint8_t kEpoch = 1, kBegin = 2, kDone = 3, kEnd = 4, kAnswers = 5, kAbort = 6;
constexpr size_t kHeader = 13;
constexpr size_t kMaxRecord = 256u << 20;  // a transaction is at most 64 MiB of frames
constexpr uint32_t kMaxOps = 1u << 24;

Status Io(const std::string& what) { return Status(Code::kIo, what + ": " + strerror(errno)); }

Status WriteAll(int fd, const uint8_t* p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) return Io("journal write");
    p += w;
    n -= static_cast<size_t>(w);
  }
  return Status::Ok();
}

std::vector<uint8_t> Record(uint8_t type, const std::vector<uint8_t>& payload) {
  proto::Writer w(kHeader + payload.size());
  w.Le32(kMagic);
  w.U8(type);
  w.Le32(static_cast<uint32_t>(payload.size()));
  w.Le32(proto::DataCrc32c(payload));
  w.Put(proto::Bytes(payload));
  return std::move(w).Take();
}

std::vector<uint8_t> Le64Payload(uint64_t v) {
  proto::Writer w(8);
  w.Le64(v);
  return std::move(w).Take();
}

void PutString(proto::Writer* w, const std::string& s) {
  w->Le32(static_cast<uint32_t>(s.size()));
  w->Put(s);
}

Status GetString(proto::Reader* r, std::string* s, const char* what) {
  uint32_t n = 0;
  CRFS_RETURN_IF_ERROR(r->Le32(&n, what));
  return r->TakeString(n, s, what);
}

// BEGIN's tail: whose transaction it is and what its reply will map.
void EncodeReplyInfo(const Plan& plan, const StoredAnswer* who, proto::Writer* w) {
  w->U8(who ? 1 : 0);
  if (who) EncodeAnswer(*who, w);
  w->Le32(static_cast<uint32_t>(plan.created.size()));
  for (uint64_t id : plan.created) w->Le64(id);
  w->Le32(static_cast<uint32_t>(plan.new_indexes.size()));
  for (const auto& [p, where] : plan.new_indexes) {
    w->Le64(p);
    w->Le64(where.first);
    PutString(w, where.second);
  }
}

void PutTime(proto::Writer* w, const proto::Timespec& t) {
  w->Le64(t.sec);
  w->Le32(t.nsec);
}

bool GetTime(proto::Reader* r, proto::Timespec* t) {
  return r->Le64(&t->sec, "time").ok() && r->Le32(&t->nsec, "time").ok() && t->nsec < 1000000000;
}

void EncodeUndo(const std::vector<Undo>& undo, const std::vector<DirTimes>& dirs, proto::Writer* w) {
  for (const Undo& u : undo) {
    w->U8(u.flags);
    w->Le32(u.mode);
    w->Le32(u.uid);
    w->Le32(u.gid);
    PutTime(w, u.atime);
    PutTime(w, u.mtime);
    w->U8(u.had_xattr ? 1 : 0);
    PutString(w, u.xattr);
  }
  w->Le32(static_cast<uint32_t>(dirs.size()));
  for (const DirTimes& d : dirs) {
    w->Le64(d.dir);
    PutTime(w, d.atime);
    PutTime(w, d.mtime);
  }
}

bool DecodeUndo(proto::Reader* r, JournalPending* t) {
  t->undo.resize(t->ops.size());
  for (Undo& u : t->undo) {
    uint8_t had = 0;
    if (!r->U8(&u.flags, "undo flags").ok() || u.flags >= 32 || !r->Le32(&u.mode, "undo mode").ok() ||
        !r->Le32(&u.uid, "undo uid").ok() || !r->Le32(&u.gid, "undo gid").ok() || !GetTime(r, &u.atime) ||
        !GetTime(r, &u.mtime) || !r->U8(&had, "undo had_xattr").ok() || had > 1 ||
        !GetString(r, &u.xattr, "undo xattr").ok()) {
      return false;
    }
    u.had_xattr = had == 1;
  }
  uint32_t n = 0;
  if (!r->Le32(&n, "dir times").ok() || n > r->remaining() / 32) return false;
  t->dir_times.resize(n);
  for (DirTimes& d : t->dir_times) {
    if (!r->Le64(&d.dir, "dir").ok() || !GetTime(r, &d.atime) || !GetTime(r, &d.mtime)) return false;
  }
  return true;
}

bool DecodeReplyInfo(proto::Reader* r, JournalPending* t) {
  uint8_t has = 0;
  uint32_t n = 0;
  if (!r->U8(&has, "has_client").ok() || has > 1) return false;
  if (has) {
    StoredAnswer a;
    if (!DecodeAnswer(r, &a).ok()) return false;
    t->answer = std::move(a);
  }
  if (!r->Le32(&n, "created").ok() || n > r->remaining() / 8) return false;
  for (uint32_t i = 0; i < n; i++) {
    uint64_t id = 0;
    if (!r->Le64(&id, "created").ok()) return false;
    t->created.push_back(id);
  }
  if (!r->Le32(&n, "new indexes").ok() || n > r->remaining() / 20) return false;
  for (uint32_t i = 0; i < n; i++) {
    uint64_t p = 0, dir = 0;
    std::string name;
    if (!r->Le64(&p, "index").ok() || !r->Le64(&dir, "index dir").ok() || !GetString(r, &name, "index name").ok()) {
      return false;
    }
    t->new_indexes[p] = {dir, std::move(name)};
  }
  return true;
}

void EncodeRecord(const AuditedRecord* record, proto::Writer* w) {
  w->U8(record ? 1 : 0);
  if (!record) return;
  w->Le64(record->index);
  w->Put(proto::Bytes(record->leaf));
  PutString(w, record->line);
}

bool DecodeRecord(proto::Reader* r, JournalPending* t) {
  uint8_t has = 0;
  if (!r->U8(&has, "has_record").ok() || has > 1) return false;
  if (has == 0) return true;
  AuditedRecord a;
  proto::Bytes leaf;
  if (!r->Le64(&a.index, "record index").ok() || !r->Take(a.leaf.size(), &leaf, "record leaf").ok() ||
      !GetString(r, &a.line, "record").ok() || a.line.empty()) {
    return false;
  }
  std::copy(leaf.begin(), leaf.end(), a.leaf.begin());
  t->record = std::move(a);
  return true;
}

}  // namespace

void EncodeOp(const Op& op, proto::Writer* w) {
  w->U8(op.kind);
  w->Le64(op.dir);
  PutString(w, op.name);
  w->Le64(op.obj);
  w->Le64(op.dir2);
  PutString(w, op.name2);
  w->Le64(op.obj2);
  w->Le32(op.mode);
  w->Le32(op.uid);
  w->Le32(op.gid);
  w->Le64(op.offset);
  w->Le64(op.length);
  PutString(w, op.data);
  PutString(w, op.xname);
  for (const proto::Timespec* t : {&op.atime, &op.mtime}) {
    w->Le64(t->sec);
    w->Le32(t->nsec);
  }
}

Status DecodeOp(proto::Reader* r, Op* op) {
  uint8_t kind = 0;
  CRFS_RETURN_IF_ERROR(r->U8(&kind, "op.kind"));
  if (kind < Op::kCreate || kind > Op::kSetTimes) return Status(Code::kUnknownType, "op.kind: unknown");
  op->kind = static_cast<Op::Kind>(kind);
  CRFS_RETURN_IF_ERROR(r->Le64(&op->dir, "op.dir"));
  CRFS_RETURN_IF_ERROR(GetString(r, &op->name, "op.name"));
  CRFS_RETURN_IF_ERROR(r->Le64(&op->obj, "op.obj"));
  CRFS_RETURN_IF_ERROR(r->Le64(&op->dir2, "op.dir2"));
  CRFS_RETURN_IF_ERROR(GetString(r, &op->name2, "op.name2"));
  CRFS_RETURN_IF_ERROR(r->Le64(&op->obj2, "op.obj2"));
  CRFS_RETURN_IF_ERROR(r->Le32(&op->mode, "op.mode"));
  CRFS_RETURN_IF_ERROR(r->Le32(&op->uid, "op.uid"));
  CRFS_RETURN_IF_ERROR(r->Le32(&op->gid, "op.gid"));
  CRFS_RETURN_IF_ERROR(r->Le64(&op->offset, "op.offset"));
  CRFS_RETURN_IF_ERROR(r->Le64(&op->length, "op.length"));
  CRFS_RETURN_IF_ERROR(GetString(r, &op->data, "op.data"));
  CRFS_RETURN_IF_ERROR(GetString(r, &op->xname, "op.xname"));
  for (proto::Timespec* t : {&op->atime, &op->mtime}) {
    CRFS_RETURN_IF_ERROR(r->Le64(&t->sec, "op.time.sec"));
    CRFS_RETURN_IF_ERROR(r->Le32(&t->nsec, "op.time.nsec"));
  }
  return Status::Ok();
}

JournalContents ParseJournal(proto::Bytes bytes, std::optional<uint64_t> ended) {
  JournalContents c;
  c.ended = ended;
  std::vector<JournalPending> txns;  // every BEGIN since EPOCH
  std::vector<bool> has_end;
  proto::Reader r(bytes);
  bool first = true;
  while (!r.empty()) {
    uint32_t magic = 0, len = 0, crc = 0;
    uint8_t type = 0;
    proto::Bytes payload;
    if (!r.Le32(&magic, "magic").ok() || magic != kMagic || !r.U8(&type, "type").ok() || !r.Le32(&len, "len").ok() ||
        !r.Le32(&crc, "crc").ok() || len > kMaxRecord || !r.Take(len, &payload, "payload").ok() ||
        proto::DataCrc32c(payload) != crc) {
      break;
    }
    proto::Reader p(payload);
    uint64_t gen = 0;
    if (!p.Le64(&gen, "generation").ok()) break;
    if (first != (type == kEpoch)) break;  // EPOCH first, and only first
    // Each record is read whole (no trailing bytes) before it counts.
    bool ok = false;
    switch (type) {
      case kEpoch:
        ok = p.empty();
        if (ok) {
          c.epoch = gen;
          c.last_generation = gen << 32;
        }
        break;
      case kBegin: {
        JournalPending t;
        t.generation = gen;
        uint32_t n = 0;
        uint8_t root = 0;
        ok = p.Le32(&t.uid, "uid").ok() && p.Le32(&t.gid, "gid").ok() && p.U8(&root, "root").ok() && root <= 1 &&
             p.Le32(&n, "ops").ok() && n <= kMaxOps;
        t.tenant_root = root == 1;
        for (uint32_t i = 0; ok && i < n; i++) {
          Op op;
          ok = DecodeOp(&p, &op).ok();
          t.ops.push_back(std::move(op));
        }
        ok = ok && DecodeReplyInfo(&p, &t) && DecodeUndo(&p, &t);
        if (ok && !p.empty()) ok = DecodeRecord(&p, &t);
        ok = ok && p.empty() && (txns.empty() || gen > txns.back().generation);
        if (ok) {
          txns.push_back(std::move(t));
          has_end.push_back(false);
        }
        break;
      }
      case kDone: {
        uint32_t index = 0;
        uint64_t inode = 0;
        JournalPending* t = txns.empty() || has_end.back() ? nullptr : &txns.back();
        ok = p.Le32(&index, "index").ok() && p.Le64(&inode, "inode").ok() && p.empty() && t && !t->aborted &&
             t->generation == gen && index == t->next_op && index < t->ops.size();
        if (ok) {
          const Op& op = t->ops[index];
          if (op.kind == Op::kCreate) t->made[op.obj] = inode;
          t->next_op = index + 1;
        }
        break;
      }
      case kEnd: {
        uint8_t has = 0;
        StoredAnswer a;
        ok = !txns.empty() && !has_end.back() && txns.back().generation == gen && p.U8(&has, "has_answer").ok() &&
             has <= 1 && (has == 0 || DecodeAnswer(&p, &a).ok()) && p.empty();
        if (ok) {
          has_end.back() = true;
          if (has) txns.back().end_answer = std::move(a);
        }
        break;
      }
      case kAbort: {
        uint32_t failed = 0, e = 0, n = 0;
        JournalPending* t = txns.empty() || has_end.back() ? nullptr : &txns.back();
        ok = t && t->generation == gen && !t->aborted && p.Le32(&failed, "failed").ok() && failed < t->ops.size() &&
             p.Le32(&e, "errno").ok() && e > 0 && e < 4096 && p.Le32(&n, "made").ok() && n <= p.remaining() / 16;
        std::map<uint64_t, uint64_t> made;
        for (uint32_t i = 0; ok && i < n; i++) {
          uint64_t prov = 0, ino = 0;
          ok = p.Le64(&prov, "made").ok() && p.Le64(&ino, "made").ok();
          made[prov] = ino;
        }
        ok = ok && p.empty();
        if (ok) {
          t->aborted = true;
          t->failed_op = failed;
          t->failed_errno = static_cast<int32_t>(e);
          for (const auto& [prov, ino] : made) t->made[prov] = ino;
        }
        break;
      }
      case kAnswers: {
        // `gen` is the count here.
        std::vector<StoredAnswer> kept;
        ok = gen <= AnswerCache::kMax;
        for (uint64_t i = 0; ok && i < gen; i++) {
          StoredAnswer a;
          ok = DecodeAnswer(&p, &a).ok();
          kept.push_back(std::move(a));
        }
        ok = ok && p.empty() && txns.empty();
        if (ok) {
          for (auto& a : kept) c.answers.push_back(std::move(a));
        }
        break;
      }
      default: break;
    }
    if (!ok) break;
    if (type != kEpoch && type != kAnswers) c.last_generation = std::max(c.last_generation, gen);
    first = false;
    c.valid_bytes = r.position();
  }
  // Pending: what the ended watermark does not cover, in order; without
  // one, what has no END record.
  // An END's answer counts only for a transaction that is not pending:
  // a pending one may still be rolled back (its answer is rebuilt if not).
  for (size_t i = 0; i < txns.size(); i++) {
    if (ended ? txns[i].generation > *ended : !has_end[i]) {
      txns[i].end_answer.reset();
      c.pending.push_back(std::move(txns[i]));
    } else {
      if (txns[i].end_answer) c.answers.push_back(std::move(*txns[i].end_answer));
      if (txns[i].record) {
        c.ended_records.push_back(
            JournalEnded{txns[i].generation, txns[i].aborted, txns[i].failed_errno, std::move(*txns[i].record)});
      }
    }
  }
  return c;
}

namespace {

// The whole file behind fd.
Status ReadWhole(int fd, const std::string& path, std::vector<uint8_t>* buf) {
  struct stat st;
  if (fstat(fd, &st) != 0) return Io("stat " + path);
  if (!S_ISREG(st.st_mode)) return Status(Code::kInvalidArgument, path + ": not a regular file");
  buf->resize(static_cast<size_t>(st.st_size));
  size_t got = 0;
  while (got < buf->size()) {
    ssize_t n = pread(fd, buf->data() + got, buf->size() - got, static_cast<off_t>(got));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Io("read " + path);
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  buf->resize(got);
  return Status::Ok();
}

}  // namespace

static std::optional<uint64_t> ReadEnded(int fd) {
  uint8_t b[8];
  if (fd < 0 || fgetxattr(fd, Journal::kEndedXattr, b, sizeof(b)) != sizeof(b)) return std::nullopt;
  proto::Reader r(proto::Bytes(b, sizeof(b)));
  uint64_t v = 0;
  if (!r.Le64(&v, "ended").ok()) return std::nullopt;
  return v;
}

Result<JournalContents> InspectJournal(const std::string& dir, const std::string& tenant) {
  const std::string path = dir + "/" + tenant;
  int marker = open((path + ".ended").c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  const std::optional<uint64_t> ended = ReadEnded(marker);
  if (marker >= 0) close(marker);
  int fd = open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return JournalContents{};
    return Io("open " + path);
  }
  std::vector<uint8_t> buf;
  Status s = ReadWhole(fd, path, &buf);
  close(fd);
  if (!s.ok()) return s;
  return ParseJournal(buf, ended);
}

Result<std::unique_ptr<Journal>> Journal::Open(const std::string& dir, const std::string& tenant,
                                               JournalContents* contents) {
  if (mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) return Io("mkdir " + dir);
  const std::string path = dir + "/" + tenant;
  int fd = open(path.c_str(), O_RDWR | O_CREAT | O_APPEND | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) return Io("open " + path);
  std::unique_ptr<Journal> j(new Journal(dir, path, fd));
  j->marker_fd_ = open((path + ".ended").c_str(), O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (j->marker_fd_ < 0) return Io("open " + path + ".ended");
  std::vector<uint8_t> buf;
  CRFS_RETURN_IF_ERROR(ReadWhole(fd, path, &buf));
  *contents = ParseJournal(buf, ReadEnded(j->marker_fd_));
  j->epoch_ = contents->epoch;
  j->bytes_ = buf.size();
  return j;
}

Journal::~Journal() {
  (void)Flush();
  close(fd_);
  if (marker_fd_ >= 0) close(marker_fd_);
}

Status Journal::SetEnded(uint64_t generation) {
  proto::Writer w(8);
  w.Le64(generation);
  if (fsetxattr(marker_fd_, kEndedXattr, w.bytes().data(), w.bytes().size(), 0) != 0) {
    last_errno_ = errno;
    return Io("journal end marker");
  }
  return Status::Ok();
}

Status Journal::Restart(uint64_t epoch, const AnswerCache& answers) {
  done_.clear();
  const std::string tmp = path_ + ".new";
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) return Io("open " + tmp);
  auto rec = Record(kEpoch, Le64Payload(epoch));
  proto::Writer w(answers.EncodedSize());
  answers.EncodeAll(&w);
  if (!w.status().ok()) {
    close(fd);
    return Status(Code::kIo, "journal restart: answers: " + w.status().message());
  }
  auto kept = Record(kAnswers, std::move(w).Take());
  rec.insert(rec.end(), kept.begin(), kept.end());
  Status s = WriteAll(fd, rec.data(), rec.size());
  if (s.ok() && fsync(fd) != 0) s = Io("fsync " + tmp);
  close(fd);
  if (!s.ok()) return s;
  if (rename(tmp.c_str(), path_.c_str()) != 0) return Io("rename " + tmp);
  int d = open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (d < 0) return Io("open " + dir_);
  const int synced = fsync(d);
  close(d);
  if (synced != 0) return Io("fsync " + dir_);
  int nfd = open(path_.c_str(), O_RDWR | O_APPEND | O_NOFOLLOW | O_CLOEXEC);
  if (nfd < 0) return Io("open " + path_);
  close(fd_);
  fd_ = nfd;
  epoch_ = epoch;
  bytes_ = rec.size();
  return Status::Ok();
}

Status Journal::Append(uint8_t type, const std::vector<uint8_t>& payload) {
  auto rec = Record(type, payload);
  Status s = WriteAll(fd_, rec.data(), rec.size());
  if (!s.ok()) {
    // A record written in part (the disk filled up) would hide every record
    // after it: cut it off, so the journal stays what it was.
    last_errno_ = errno;
    if (ftruncate(fd_, static_cast<off_t>(bytes_)) != 0) {
      torn_ = true;
      return Io("journal write failed, and cutting it back");
    }
    return s;
  }
  bytes_ += rec.size();
  return Status::Ok();
}

Status Journal::SyncData() {
  CRFS_RETURN_IF_ERROR(Flush());
  if (fdatasync(fd_) != 0) {
    last_errno_ = errno;
    return Io("journal fdatasync");
  }
  return Status::Ok();
}

Status Journal::TruncateTo(uint64_t mark) {
  CRFS_RETURN_IF_ERROR(Flush());
  if (mark > bytes_) return Status(Code::kInvalidArgument, "journal mark past its end");
  if (ftruncate(fd_, static_cast<off_t>(mark)) != 0) {
    torn_ = true;
    return Io("journal truncate");
  }
  bytes_ = mark;
  return Status::Ok();
}

Status Journal::Begin(uint64_t generation, uint32_t uid, uint32_t gid, bool tenant_root, const Plan& plan,
                      const StoredAnswer* who, const std::vector<Undo>& undo, const std::vector<DirTimes>& dir_times,
                      const AuditedRecord* record) {
  CRFS_RETURN_IF_ERROR(Flush());
  if (undo.size() != plan.ops.size()) return Status(Code::kInvalidArgument, "journal: one undo per op");
  const std::vector<Op>& ops = plan.ops;
  size_t size = 21 + 256 + 8 * plan.created.size() + 4 + 32 * dir_times.size();
  for (const Undo& u : undo) size += 48 + u.xattr.size();
  for (const auto& [p, where] : plan.new_indexes) size += 20 + where.second.size();
  for (const Op& op : ops) size += 120 + op.name.size() + op.name2.size() + op.data.size() + op.xname.size();
  if (record) size += 45 + record->line.size();
  if (size > kMaxRecord) return Status(Code::kTooLarge, "transaction record past the journal's record limit");
  proto::Writer w(size);
  w.Le64(generation);
  w.Le32(uid);
  w.Le32(gid);
  w.U8(tenant_root ? 1 : 0);
  w.Le32(static_cast<uint32_t>(ops.size()));
  for (const Op& op : ops) EncodeOp(op, &w);
  EncodeReplyInfo(plan, who, &w);
  EncodeUndo(undo, dir_times, &w);
  EncodeRecord(record, &w);
  CRFS_RETURN_IF_ERROR(w.status());
  return Append(kBegin, std::move(w).Take());
}

Status Journal::Abort(uint64_t generation, uint32_t failed, int err, const std::map<uint64_t, uint64_t>& made) {
  CRFS_RETURN_IF_ERROR(Flush());
  proto::Writer w(20 + 16 * made.size());
  w.Le64(generation);
  w.Le32(failed);
  w.Le32(static_cast<uint32_t>(err));
  w.Le32(static_cast<uint32_t>(made.size()));
  for (const auto& [prov, ino] : made) {
    w.Le64(prov);
    w.Le64(ino);
  }
  CRFS_RETURN_IF_ERROR(w.status());
  return Append(kAbort, std::move(w).Take());
}

Status Journal::Done(uint64_t generation, uint32_t index, uint64_t inode, bool now) {
  proto::Writer w(20);
  w.Le64(generation);
  w.Le32(index);
  w.Le64(inode);
  auto rec = Record(kDone, std::move(w).Take());
  done_.insert(done_.end(), rec.begin(), rec.end());
  return now || done_.size() >= kDoneBatch ? Flush() : Status::Ok();
}

Status Journal::Flush() {
  if (done_.empty()) return Status::Ok();
  Status s = WriteAll(fd_, done_.data(), done_.size());
  if (s.ok()) bytes_ += done_.size();
  done_.clear();
  return s;
}

Status Journal::End(uint64_t generation, const StoredAnswer* answer) {
  CRFS_RETURN_IF_ERROR(Flush());
  proto::Writer w(answer ? 160 + answer->text.size() + 16 * answer->reply.map.size() : 16);
  w.Le64(generation);
  w.U8(answer ? 1 : 0);
  if (answer) EncodeAnswer(*answer, &w);
  CRFS_RETURN_IF_ERROR(w.status());
  return Append(kEnd, std::move(w).Take());
}

}  // namespace crfs::server
