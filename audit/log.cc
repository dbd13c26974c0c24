// log.cc - the audit log's writer, reader and verifier (log.h).
#include "audit/log.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <fstream>
#include <sstream>

namespace crfs::audit {
namespace {

using json = nlohmann::json;

constexpr const char* kRecords = "records.jsonl";
constexpr const char* kCheckpoints = "checkpoints.jsonl";
constexpr const char* kLatest = "checkpoint";

Status Sys(const std::string& what) { return Status(Code::kIo, "audit log: " + what + ": " + std::strerror(errno)); }

// A string that is not UTF-8 is written as U+FFFD rather than throwing:
// writers escape what they must keep (server/audit_trail.h AuditText).
std::string Canonical(const json& j) { return j.dump(-1, ' ', /*ensure_ascii=*/true, json::error_handler_t::replace); }

std::string NowRfc3339() {
  const auto now = std::chrono::system_clock::now();
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count();
  const time_t secs = static_cast<time_t>(ms / 1000);
  struct tm tm;
  gmtime_r(&secs, &tm);
  char buf[96];
  std::snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms % 1000));
  return buf;
}

bool ReadFile(const std::string& path, std::string* out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  std::ostringstream ss;
  ss << in.rdbuf();
  *out = ss.str();
  return !in.bad();
}

// Lines of `text`; *torn: the text does not end in a newline (the last
// line is then not in the result).
std::vector<std::string> Lines(const std::string& text, bool* torn, size_t* good_end) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start < text.size()) {
    const size_t nl = text.find('\n', start);
    if (nl == std::string::npos) break;
    out.push_back(text.substr(start, nl - start));
    start = nl + 1;
  }
  *torn = start < text.size();
  *good_end = start;
  return out;
}

Status WriteAll(int fd, const std::string& s) {
  size_t done = 0;
  while (done < s.size()) {
    const ssize_t n = write(fd, s.data() + done, s.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      if (n == 0) errno = EIO;
      return Sys("write");
    }
    done += static_cast<size_t>(n);
  }
  return Status::Ok();
}

Status SyncDir(const std::string& dir) {
  const int fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return Sys("open " + dir);
  const int rc = fsync(fd);
  close(fd);
  return rc == 0 ? Status::Ok() : Sys("fsync " + dir);
}

}  // namespace

std::string CheckRecord(std::string_view line, uint64_t index, const Hash& prev, json* parsed) {
  if (line.size() > kMaxRecordBytes) return "longer than " + std::to_string(kMaxRecordBytes) + " bytes";
  json j = json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return "not JSON";
  if (!j.is_object()) return "not a JSON object";
  if (Canonical(j) != line) return "not in canonical form (sorted keys, no spaces, ASCII)";
  if (!j.contains("i") || !j["i"].is_number_unsigned()) return "no index \"i\"";
  if (j["i"].get<uint64_t>() != index) {
    return "has index " + std::to_string(j["i"].get<uint64_t>()) + " at position " + std::to_string(index) +
           " (a record was removed, added or moved here)";
  }
  if (!j.contains("prev") || !j["prev"].is_string()) return "no \"prev\"";
  if (j["prev"].get<std::string>() != HexOf(prev)) {
    return "\"prev\" is not the hash of record " + (index ? std::to_string(index - 1) : std::string("-1")) +
           " (that record or this one was changed, or one between was removed)";
  }
  if (!j.contains("t") || !j["t"].is_string() || j["t"].get<std::string>().size() != 24) {
    return "no time \"t\" (RFC 3339, UTC, milliseconds)";
  }
  if (!j.contains("ev") || !j["ev"].is_string() || j["ev"].get<std::string>().empty()) return "no event \"ev\"";
  if (parsed) *parsed = std::move(j);
  return "";
}

Result<std::unique_ptr<AuditLog>> AuditLog::Open(const std::string& dir, Signer signer, std::string* note) {
  if (mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) return Sys("mkdir " + dir);
  std::unique_ptr<AuditLog> log(new AuditLog(dir, std::move(signer)));
  const std::string path = dir + "/" + kRecords;
  log->fd_ = open(path.c_str(), O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (log->fd_ < 0) return Sys("open " + path);
  std::string text;
  if (!ReadFile(path, &text)) return Sys("read " + path);
  bool torn = false;
  size_t good_end = 0;
  const std::vector<std::string> lines = Lines(text, &torn, &good_end);
  // The latest checkpoint must be this log's.
  std::string latest;
  std::optional<Checkpoint> c;
  if (ReadFile(dir + "/" + kLatest, &latest)) {
    auto opened = log->signer_.verifier().Open(latest);
    if (!opened.ok()) {
      return Status(Code::kInvalidArgument, "audit log " + dir + ": checkpoint: " + opened.status().message());
    }
    auto parsed = Checkpoint::Parse(*opened);
    if (!parsed.ok()) return Status(Code::kInvalidArgument, "audit log " + dir + ": " + parsed.status().message());
    c = *parsed;
  }
  // Records the checkpoint covers are checked by its root (this writer
  // checked each as it wrote it); those after it, record by record. A
  // start costs a hash per record, not a JSON parse.
  const size_t covered = c ? static_cast<size_t>(std::min<uint64_t>(c->size, lines.size())) : 0;
  std::vector<Hash> leaves;
  leaves.reserve(lines.size());
  Hash prev{};
  for (size_t i = 0; i < lines.size(); i++) {
    if (i >= covered) {
      if (std::string bad = CheckRecord(lines[i], i, prev); !bad.empty()) {
        return Status(Code::kInvalidArgument,
                      "audit log " + path + ": record " + std::to_string(i) + " (line " + std::to_string(i + 1) + ") " +
                          bad + ": refusing to extend a log that does not verify (crfs-audit verify)");
      }
    }
    leaves.push_back(LeafHash(lines[i]));
    prev = leaves.back();
  }
  if (c) {
    if (c->size > leaves.size()) {
      return Status(Code::kInvalidArgument, "audit log " + dir + ": the latest checkpoint covers " +
                                                std::to_string(c->size) + " records but the log has " +
                                                std::to_string(leaves.size()) + ": it was truncated");
    }
    if (RootOf(std::span<const Hash>(leaves).subspan(0, c->size)) != c->root) {
      return Status(Code::kInvalidArgument, "audit log " + dir + ": the first " + std::to_string(c->size) +
                                                " records are not those the latest checkpoint signed");
    }
    log->signed_size_ = c->size;
    log->signed_any_ = true;
  } else if (!text.empty()) {
    // A new log is checkpointed (size 0) before its first record: records
    // without any checkpoint are not this writer's.
    return Status(Code::kInvalidArgument, "audit log " + dir +
                                              ": records but no checkpoint: refusing to extend "
                                              "a log that does not verify (move it aside to start a new one)");
  }
  std::string notes;
  if (torn) {
    // A crash mid-append: nothing acted on that record (its append never
    // returned), so it goes.
    if (ftruncate(log->fd_, static_cast<off_t>(good_end)) != 0) return Sys("truncate " + path);
    notes = "cut off a torn last record (" + std::to_string(text.size() - good_end) + " bytes) of " + path;
  }
  if (leaves.size() > log->signed_size_) {
    // What crfsd wrote between its last checkpoint and a crash: well-formed
    // and chained, but vouched for by nothing but this file until the next
    // checkpoint signs it (docs/audit.md, "Trust").
    notes += std::string(notes.empty() ? "" : "; ") + "adopted records " + std::to_string(log->signed_size_) + ".." +
             std::to_string(leaves.size() - 1) + ", written after the latest checkpoint (a crash between checkpoints)";
  }
  if (note) *note = notes;
  for (const Hash& h : leaves) log->tree_.Append(h);
  log->start_leaves_ = std::move(leaves);
  log->start_offsets_.reserve(lines.size());
  off_t at = 0;
  for (const std::string& l : lines) {
    log->start_offsets_.push_back(at);
    at += static_cast<off_t>(l.size() + 1);
  }
  log->last_ = prev;
  log->good_end_ = static_cast<off_t>(good_end);
  if (!log->signed_any_) {
    auto c = log->SignCheckpoint();
    if (!c.ok()) return c.status();
  }
  return log;
}

AuditLog::~AuditLog() {
  if (fd_ >= 0) close(fd_);
}

Result<uint64_t> AuditLog::Append(json record) {
  auto a = AppendRecord(std::move(record));
  if (!a.ok()) return a.status();
  return a->index;
}

bool AuditLog::Holds(uint64_t index, const Hash& leaf) {
  std::lock_guard<std::mutex> lock(mu_);
  return index < start_leaves_.size() && start_leaves_[index] == leaf;
}

void AuditLog::ForgetStartLeaves() {
  std::lock_guard<std::mutex> lock(mu_);
  keep_leaves_ = false;
  std::vector<Hash>().swap(start_leaves_);
  std::vector<off_t>().swap(start_offsets_);
}

Result<std::set<uint64_t>> AuditLog::ResultsSince(uint64_t from) {
  std::lock_guard<std::mutex> lock(mu_);
  std::set<uint64_t> of;
  if (from >= start_offsets_.size()) return of;
  const off_t start = start_offsets_[from];
  std::string text(static_cast<size_t>(good_end_ - start), '\0');
  size_t got = 0;
  while (got < text.size()) {
    const ssize_t n = pread(fd_, text.data() + got, text.size() - got, start + static_cast<off_t>(got));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return Sys("read " + dir_ + "/" + kRecords);
    got += static_cast<size_t>(n);
  }
  // Canonical JSON: the event is these bytes exactly, and only such
  // records need parsing.
  static constexpr std::string_view kResult = "\"ev\":\"transaction.result\"";
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    const std::string_view line(text.data() + pos, end - pos);
    if (line.find(kResult) != std::string_view::npos) {
      json j = json::parse(line, nullptr, false);
      if (j.is_object() && j.contains("of") && j["of"].is_number_unsigned()) of.insert(j["of"].get<uint64_t>());
    }
    pos = end + 1;
  }
  return of;
}

Result<AuditLog::Appended> AuditLog::AppendRecord(json record) {
  if (!record.is_object()) return Status(Code::kInvalidArgument, "audit record: not an object");
  std::lock_guard<std::mutex> lock(mu_);
  if (Status s = CutBack(); !s.ok()) return s;
  record["i"] = tree_.size();
  record["prev"] = HexOf(last_);
  record["t"] = NowRfc3339();
  std::string line = Canonical(record);
  if (line.size() > kMaxRecordBytes) return Status(Code::kTooLarge, "audit record larger than 1 MiB");
  if (Status s = WriteAll(fd_, line + "\n"); !s.ok()) {
    last_errno_ = errno;
    broken_ = true;
    return s;
  }
  if (keep_leaves_) start_offsets_.push_back(good_end_);
  good_end_ += static_cast<off_t>(line.size() + 1);
  last_ = LeafHash(line);
  tree_.Append(last_);
  if (keep_leaves_) start_leaves_.push_back(last_);
  return Appended{tree_.size() - 1, last_, std::move(line)};
}

Status AuditLog::CutBack() {
  if (!broken_) return Status::Ok();
  // The last append failed part-way (a full disk takes part of a write):
  // its bytes go before anything else is written or signed.
  if (ftruncate(fd_, good_end_) != 0) {
    last_errno_ = errno;
    return Sys("truncate after a failed append");
  }
  broken_ = false;
  return Status::Ok();
}

Status AuditLog::Sync() {
  std::lock_guard<std::mutex> lock(mu_);
  if (fdatasync(fd_) == 0) return Status::Ok();
  last_errno_ = errno;
  return Sys("fdatasync");
}

int AuditLog::last_errno() {
  std::lock_guard<std::mutex> lock(mu_);
  return last_errno_;
}

uint64_t AuditLog::size() {
  std::lock_guard<std::mutex> lock(mu_);
  return tree_.size();
}

Result<Checkpoint> AuditLog::SignCheckpoint() {
  std::lock_guard<std::mutex> lock(mu_);
  Checkpoint c{signer_.verifier().name(), tree_.size(), tree_.Root()};
  if (signed_any_ && c.size == signed_size_) return c;
  if (Status s = CutBack(); !s.ok()) return s;
  // A checkpoint never covers a record that is not on disk.
  if (fdatasync(fd_) != 0) return Sys("fdatasync");
  auto note = signer_.Sign(c.Text());
  if (!note.ok()) return note.status();
  const std::string all = dir_ + "/" + kCheckpoints;
  const int fd = open(all.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return Sys("open " + all);
  Status s = WriteAll(fd, Canonical(json{{"note", *note}}) + "\n");
  if (s.ok() && fdatasync(fd) != 0) s = Sys("fdatasync " + all);
  close(fd);
  if (!s.ok()) return s;
  const std::string tmp = dir_ + "/" + kLatest + ".tmp", latest = dir_ + "/" + kLatest;
  const int tfd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (tfd < 0) return Sys("open " + tmp);
  s = WriteAll(tfd, *note);
  if (s.ok() && fsync(tfd) != 0) s = Sys("fsync " + tmp);
  close(tfd);
  if (!s.ok()) return s;
  if (rename(tmp.c_str(), latest.c_str()) != 0) return Sys("rename " + tmp);
  if (Status d = SyncDir(dir_); !d.ok()) return d;
  signed_size_ = c.size;
  signed_any_ = true;
  return c;
}

bool VerifyResult::ok() const {
  for (const Finding& f : findings) {
    if (f.error) return false;
  }
  return true;
}

Status ReadRecords(const std::string& dir, std::vector<std::string>* lines, std::vector<Hash>* leaves) {
  std::string text;
  if (!ReadFile(dir + "/" + kRecords, &text)) return Sys("read " + dir + "/" + kRecords);
  bool torn = false;
  size_t good_end = 0;
  *lines = Lines(text, &torn, &good_end);
  if (torn) lines->push_back(text.substr(good_end));  // reported by Verify
  leaves->clear();
  for (const std::string& l : *lines) leaves->push_back(LeafHash(l));
  return Status::Ok();
}

Result<std::pair<std::string, Checkpoint>> LatestCheckpoint(const std::string& dir, const Verifier& verifier) {
  std::string note;
  if (!ReadFile(dir + "/" + kLatest, &note)) return Sys("read " + dir + "/" + kLatest);
  auto text = verifier.Open(note);
  if (!text.ok()) return text.status();
  auto c = Checkpoint::Parse(*text);
  if (!c.ok()) return c.status();
  return std::make_pair(note, *c);
}

VerifyResult Verify(const std::string& dir, const Verifier& verifier, const std::string* trusted_note) {
  VerifyResult r;
  auto error = [&](const std::string& text) { r.findings.push_back(Finding{true, text}); };
  std::vector<std::string> lines;
  std::vector<Hash> leaves;
  if (Status s = ReadRecords(dir, &lines, &leaves); !s.ok()) {
    error(s.message());
    return r;
  }
  r.records = lines.size();
  // Every record, re-hashed: the first that is wrong is named.
  Hash prev{};
  for (size_t i = 0; i < lines.size(); i++) {
    std::string bad = CheckRecord(lines[i], i, prev);
    if (bad.empty() && i + 1 == lines.size()) {
      std::string text;
      (void)ReadFile(dir + "/" + kRecords, &text);
      if (!text.empty() && text.back() != '\n') bad = "does not end in a newline (torn or cut)";
    }
    if (!bad.empty()) {
      error("record " + std::to_string(i) + " (line " + std::to_string(i + 1) + "): " + bad);
      break;
    }
    prev = leaves[i];
  }
  // Every checkpoint: signed, never shrinking, and the root of as many records.
  std::string all;
  std::vector<Checkpoint> cps;
  // Roots of growing prefixes, computed incrementally: checkpoints come
  // every second, so recomputing each from the leaves would be quadratic.
  CompactRange prefix;
  auto root_of = [&](uint64_t n) {
    if (n < prefix.size()) return RootOf(std::span<const Hash>(leaves).subspan(0, n));
    while (prefix.size() < n) prefix.Append(leaves[prefix.size()]);
    return prefix.Root();
  };
  std::string last_note;
  if (ReadFile(dir + "/" + kCheckpoints, &all)) {
    bool torn = false;
    size_t end = 0;
    const std::vector<std::string> cl = Lines(all, &torn, &end);
    if (torn) error("checkpoints.jsonl: the last line is torn");
    for (size_t k = 0; k < cl.size(); k++) {
      const std::string where =
          "checkpoint " + std::to_string(k + 1) + " (checkpoints.jsonl line " + std::to_string(k + 1) + ")";
      json j = json::parse(cl[k], nullptr, false);
      if (!j.is_object() || !j.contains("note") || !j["note"].is_string()) {
        error(where + ": not {\"note\": ...}");
        continue;
      }
      last_note = j["note"].get<std::string>();
      auto text = verifier.Open(last_note);
      if (!text.ok()) {
        error(where + ": " + text.status().message());
        continue;
      }
      auto c = Checkpoint::Parse(*text);
      if (!c.ok()) {
        error(where + ": " + c.status().message());
        continue;
      }
      if (c->origin != verifier.name()) error(where + ": origin " + c->origin + " is not " + verifier.name());
      if (!cps.empty() && c->size < cps.back().size) {
        error(where + ": size " + std::to_string(c->size) + " is smaller than the one before (" +
              std::to_string(cps.back().size) + "): the log was cut back");
      }
      if (c->size > leaves.size()) {
        error(where + ": covers " + std::to_string(c->size) + " records, the log has " + std::to_string(leaves.size()) +
              ": records were removed from the end");
      } else if (root_of(c->size) != c->root) {
        error(where + ": the first " + std::to_string(c->size) +
              " records are not those it signed (a record was changed, added, removed or moved)");
      }
      cps.push_back(*c);
    }
  }
  r.checkpoints = cps.size();
  std::string latest;
  if (ReadFile(dir + "/" + kLatest, &latest) && latest != last_note) {
    error("checkpoint: the latest checkpoint is not the last one in checkpoints.jsonl");
  }
  if (!cps.empty()) r.latest = cps.back();
  const uint64_t covered = cps.empty() ? 0 : cps.back().size;
  if (covered < leaves.size()) {
    r.findings.push_back(Finding{true,
                                 "records " + std::to_string(covered) + ".." + std::to_string(leaves.size() - 1) +
                                     " are not covered by a signed checkpoint (appended after the last one: forged, "
                                     "or a live log's tail; --allow-unsigned-tail accepts them)",
                                 true});
  }
  if (trusted_note) {
    auto text = verifier.Open(*trusted_note);
    auto c = text.ok() ? Checkpoint::Parse(*text) : Result<Checkpoint>(text.status());
    if (!c.ok()) {
      error("the checkpoint you kept: " + c.status().message());
    } else if (c->size > leaves.size()) {
      error("the checkpoint you kept covers " + std::to_string(c->size) + " records, the log now has " +
            std::to_string(leaves.size()) + ": history was removed");
    } else if (RootOf(std::span<const Hash>(leaves).subspan(0, c->size)) != c->root) {
      error("the log's first " + std::to_string(c->size) +
            " records are not those of the checkpoint you kept: history was rewritten (and re-signed)");
    }
  }
  return r;
}

}  // namespace crfs::audit
