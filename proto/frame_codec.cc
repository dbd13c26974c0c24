// frame_codec.cc - frame headers and message payloads.
#include <algorithm>
#include <array>
#include <cstddef>
#include <string>
#include <utility>

#include "proto/checksum.h"
#include "proto/codec.h"
#include "proto/codec_internal.h"

namespace crfs::proto {
namespace {

using internal::ReadKey;
using internal::WriteKey;

Status Bad(Code code, std::string msg) { return Status(code, std::move(msg)); }

Status CheckLockMode(uint8_t mode, bool allow_none, const char* what) {
  if (mode == CRFS_LOCK_READ || mode == CRFS_LOCK_WRITE || (allow_none && mode == CRFS_LOCK_NONE)) {
    return Status::Ok();
  }
  return Bad(Code::kBadValue, std::string(what) + " mode " + std::to_string(mode));
}

Status CheckKeyOrder(const Key& min, const Key& max, const char* what) {
  if (max < min) return Bad(Code::kOutOfOrder, std::string(what) + " max is below min");
  return Status::Ok();
}

// ---- readers: one per message type; each must consume the whole payload.

Status Read(Reader* r, FinalReply* m) {
  CRFS_RETURN_IF_ERROR(r->Le64(&m->generation, "final reply generation"));
  if (r->remaining() > CRFS_MAX_ERROR_TEXT) {
    return Bad(Code::kTooLarge, "final reply text of " + std::to_string(r->remaining()) + " bytes");
  }
  CRFS_RETURN_IF_ERROR(r->TakeString(r->remaining(), &m->text, "final reply text"));
  if (m->text.find('\0') != std::string::npos) return Bad(Code::kBadValue, "final reply text holds NUL");
  return Status::Ok();
}

Status Read(Reader* r, ItemQuery* m) {
  CRFS_RETURN_IF_ERROR(ReadKey(r, &m->key, "query key"));
  CRFS_RETURN_IF_ERROR(ReadKey(r, &m->min, "query min"));
  CRFS_RETURN_IF_ERROR(ReadKey(r, &m->max, "query max"));
  CRFS_RETURN_IF_ERROR(r->Le32(&m->bytes, "query bytes"));
  CRFS_RETURN_IF_ERROR(CheckKeyOrder(m->min, m->max, "query"));
  if (m->key < m->min || m->max < m->key) return Bad(Code::kOutOfOrder, "query key outside [min, max]");
  if (m->bytes == 0 || m->bytes > CRFS_MAX_PAYLOAD) {
    return Bad(Code::kBadValue,
               "query bytes " + std::to_string(m->bytes) + " not in 1.." + std::to_string(CRFS_MAX_PAYLOAD));
  }
  return Status::Ok();
}

Status Read(Reader* r, ItemRange* m) { return internal::ReadRange(r, m); }

Status Read(Reader* r, Lock* m) {
  CRFS_RETURN_IF_ERROR(ReadKey(r, &m->min, "lock min"));
  CRFS_RETURN_IF_ERROR(ReadKey(r, &m->max, "lock max"));
  CRFS_RETURN_IF_ERROR(r->U8(&m->mode, "lock mode"));
  CRFS_RETURN_IF_ERROR(CheckKeyOrder(m->min, m->max, "lock"));
  return CheckLockMode(m->mode, false, "lock");
}

Status Read(Reader* r, Grant* m) {
  CRFS_RETURN_IF_ERROR(r->Le64(&m->grant_id, "grant id"));
  CRFS_RETURN_IF_ERROR(ReadKey(r, &m->min, "grant min"));
  CRFS_RETURN_IF_ERROR(ReadKey(r, &m->max, "grant max"));
  CRFS_RETURN_IF_ERROR(r->U8(&m->mode, "grant mode"));
  CRFS_RETURN_IF_ERROR(r->Le32(&m->lease_ms, "grant lease_ms"));
  CRFS_RETURN_IF_ERROR(CheckKeyOrder(m->min, m->max, "grant"));
  return CheckLockMode(m->mode, false, "grant");
}

Status Read(Reader* r, TransFrag* m) {
  uint8_t last = 0;
  uint16_t nr_ranges = 0;
  CRFS_RETURN_IF_ERROR(r->Le32(&m->frag_nr, "frag nr"));
  CRFS_RETURN_IF_ERROR(r->U8(&last, "frag last"));
  CRFS_RETURN_IF_ERROR(r->U8(&m->flags, "frag flags"));
  CRFS_RETURN_IF_ERROR(r->Le16(&nr_ranges, "frag nr_ranges"));
  CRFS_RETURN_IF_ERROR(r->Le64(&m->base_generation, "frag base_generation"));
  if (last > 1) return Bad(Code::kBadValue, "frag last is " + std::to_string(last) + ", not 0 or 1");
  if (m->flags & ~CRFS_TRANS_F_ALL) return Bad(Code::kBadValue, "frag has unknown flags");
  if (nr_ranges == 0 || nr_ranges > CRFS_MAX_FRAG_RANGES) {
    return Bad(Code::kBadCount,
               "frag nr_ranges " + std::to_string(nr_ranges) + " not in 1.." + std::to_string(CRFS_MAX_FRAG_RANGES));
  }
  // A range is at least a header: a count that cannot fit is refused before
  // anything is allocated for it.
  if (size_t{nr_ranges} * sizeof(struct crfs_item_range) > r->remaining()) {
    return Bad(Code::kBadCount, "frag nr_ranges " + std::to_string(nr_ranges) + " cannot fit in " +
                                    std::to_string(r->remaining()) + " bytes");
  }
  m->last = last;
  m->ranges.resize(nr_ranges);
  for (uint16_t i = 0; i < nr_ranges; i++) {
    Status s = internal::ReadRange(r, &m->ranges[i]);
    if (!s.ok()) return Status(s.code(), "range " + std::to_string(i) + ": " + s.message());
  }
  return Status::Ok();
}

Status Read(Reader* r, Revoke* m) {
  CRFS_RETURN_IF_ERROR(r->Le64(&m->grant_id, "revoke grant id"));
  CRFS_RETURN_IF_ERROR(r->U8(&m->mode, "revoke mode"));
  if (m->mode == CRFS_LOCK_WRITE) return Bad(Code::kBadValue, "revoke cannot leave a write grant");
  return CheckLockMode(m->mode, true, "revoke");
}

Status Read(Reader* r, Release* m) {
  CRFS_RETURN_IF_ERROR(r->Le64(&m->grant_id, "release grant id"));
  CRFS_RETURN_IF_ERROR(r->U8(&m->mode, "release mode"));
  if (m->mode == CRFS_LOCK_WRITE) return Bad(Code::kBadValue, "release cannot keep a write grant");
  return CheckLockMode(m->mode, true, "release");
}

Status Read(Reader* r, Hello* m) {
  uint32_t magic = 0;
  uint32_t cap_len = 0;
  CRFS_RETURN_IF_ERROR(r->Le32(&magic, "hello magic"));
  CRFS_RETURN_IF_ERROR(r->Le16(&m->version_min, "hello version_min"));
  CRFS_RETURN_IF_ERROR(r->Le16(&m->version_max, "hello version_max"));
  CRFS_RETURN_IF_ERROR(r->Le32(&m->features, "hello features"));
  CRFS_RETURN_IF_ERROR(r->Le32(&m->max_payload, "hello max_payload"));
  CRFS_RETURN_IF_ERROR(r->Le32(&cap_len, "hello cap_len"));
  Bytes client_id;
  CRFS_RETURN_IF_ERROR(r->Take(m->client_id.size(), &client_id, "hello client_id"));
  std::copy(client_id.begin(), client_id.end(), m->client_id.begin());
  if (magic != CRFS_PROTO_MAGIC) return Bad(Code::kBadValue, "hello magic is not CRFS");
  if (m->version_min == 0 || m->version_max < m->version_min) {
    return Bad(Code::kBadValue, "hello version range is empty");
  }
  if (m->max_payload < CRFS_MIN_PAYLOAD || m->max_payload > CRFS_MAX_PAYLOAD) {
    return Bad(Code::kBadValue, "hello max_payload " + std::to_string(m->max_payload) + " not in " +
                                    std::to_string(CRFS_MIN_PAYLOAD) + ".." + std::to_string(CRFS_MAX_PAYLOAD));
  }
  if (cap_len > CRFS_MAX_CAPABILITY) {
    return Bad(Code::kTooLarge, "hello capability of " + std::to_string(cap_len) + " bytes");
  }
  if (cap_len != r->remaining()) return Bad(Code::kLengthMismatch, "hello cap_len disagrees with the payload");
  Bytes cap;
  CRFS_RETURN_IF_ERROR(r->Take(cap_len, &cap, "hello capability"));
  m->capability.assign(cap.begin(), cap.end());
  return Status::Ok();
}

Status Read(Reader* r, HelloReply* m) {
  uint16_t reserved = 0;
  CRFS_RETURN_IF_ERROR(r->Le16(&m->version, "hello reply version"));
  CRFS_RETURN_IF_ERROR(r->Le16(&reserved, "hello reply reserved"));
  CRFS_RETURN_IF_ERROR(r->Le32(&m->features, "hello reply features"));
  CRFS_RETURN_IF_ERROR(r->Le32(&m->max_payload, "hello reply max_payload"));
  CRFS_RETURN_IF_ERROR(r->Le32(&m->lease_ms, "hello reply lease_ms"));
  CRFS_RETURN_IF_ERROR(r->Le64(&m->session_id, "hello reply session_id"));
  CRFS_RETURN_IF_ERROR(r->Le64(&m->root_objectid, "hello reply root_objectid"));
  CRFS_RETURN_IF_ERROR(r->Le64(&m->generation, "hello reply generation"));
  CRFS_RETURN_IF_ERROR(r->Le32(&m->uid, "hello reply uid"));
  CRFS_RETURN_IF_ERROR(r->Le32(&m->gid, "hello reply gid"));
  if (reserved != 0) return Bad(Code::kBadValue, "hello reply reserved is not zero");
  if (m->version == 0) return Bad(Code::kBadValue, "hello reply version 0");
  if (m->max_payload < CRFS_MIN_PAYLOAD || m->max_payload > CRFS_MAX_PAYLOAD) {
    return Bad(Code::kBadValue, "hello reply max_payload " + std::to_string(m->max_payload) + " out of range");
  }
  return Status::Ok();
}

Status Read(Reader* r, DataRead* m) {
  uint32_t flags = 0;
  CRFS_RETURN_IF_ERROR(r->Le64(&m->objectid, "read objectid"));
  CRFS_RETURN_IF_ERROR(r->Le64(&m->offset, "read offset"));
  CRFS_RETURN_IF_ERROR(r->Le32(&m->len, "read len"));
  CRFS_RETURN_IF_ERROR(r->Le32(&flags, "read flags"));
  if (flags != 0) return Bad(Code::kBadValue, "read flags are not zero");
  if (m->len == 0 || m->len > CRFS_MAX_DATA_BYTES) {
    return Bad(Code::kBadValue,
               "read len " + std::to_string(m->len) + " not in 1.." + std::to_string(CRFS_MAX_DATA_BYTES));
  }
  if (m->offset > ~0ull - m->len) return Bad(Code::kBadValue, "read offset + len overflows");
  return Status::Ok();
}

Status ReadDataPayload(Reader* r, DataPayload* m) {
  uint32_t len = 0;
  uint16_t nr_csums = 0;
  uint16_t flags = 0;
  CRFS_RETURN_IF_ERROR(r->Le64(&m->objectid, "data objectid"));
  CRFS_RETURN_IF_ERROR(r->Le64(&m->offset, "data offset"));
  CRFS_RETURN_IF_ERROR(r->Le32(&len, "data len"));
  CRFS_RETURN_IF_ERROR(r->Le16(&nr_csums, "data nr_csums"));
  CRFS_RETURN_IF_ERROR(r->Le16(&flags, "data flags"));
  if (flags != 0) return Bad(Code::kBadValue, "data flags are not zero");
  if (len == 0) return Bad(Code::kBadValue, "data len is zero");
  if (m->offset > ~0ull - len) return Bad(Code::kBadValue, "data offset + len overflows");
  return internal::ReadCsummedData(r, len, nr_csums, &m->csums, &m->data);
}

Status Read(Reader* r, Data* m) { return ReadDataPayload(r, m); }
Status Read(Reader* r, DataWrite* m) { return ReadDataPayload(r, m); }

Status Read(Reader* r, Snapshot* m) {
  uint16_t name_len = 0;
  uint16_t flags = 0;
  CRFS_RETURN_IF_ERROR(r->Le16(&name_len, "snapshot name_len"));
  CRFS_RETURN_IF_ERROR(r->Le16(&flags, "snapshot flags"));
  if (flags != 0) return Bad(Code::kBadValue, "snapshot flags are not zero");
  if (name_len == 0 || name_len > CRFS_MAX_SNAPSHOT_NAME) {
    return Bad(Code::kBadValue, "snapshot name_len " + std::to_string(name_len));
  }
  return r->TakeString(name_len, &m->name, "snapshot name");
}

Status Read(Reader*, Ping*) { return Status::Ok(); }
Status Read(Reader*, Sync*) { return Status::Ok(); }

Status Read(Reader* r, TransReply* m) {
  uint32_t nr_map = 0;
  CRFS_RETURN_IF_ERROR(r->Le64(&m->generation, "trans reply generation"));
  CRFS_RETURN_IF_ERROR(r->Le32(&m->flags, "trans reply flags"));
  CRFS_RETURN_IF_ERROR(r->Le32(&nr_map, "trans reply nr_map"));
  if (m->flags & ~CRFS_TRANS_R_ALL) return Bad(Code::kBadValue, "trans reply has unknown flags");
  if (nr_map > CRFS_MAX_TRANS_MAP) return Bad(Code::kTooLarge, "trans reply nr_map " + std::to_string(nr_map));
  if (size_t{nr_map} * sizeof(struct crfs_trans_map_entry) != r->remaining()) {
    return Bad(Code::kBadCount, "trans reply nr_map " + std::to_string(nr_map) + " disagrees with " +
                                    std::to_string(r->remaining()) + " bytes of map");
  }
  m->map.resize(nr_map);
  for (TransMapEntry& e : m->map) {
    CRFS_RETURN_IF_ERROR(r->Le64(&e.provisional, "map provisional"));
    CRFS_RETURN_IF_ERROR(r->Le64(&e.real, "map real"));
    if (e.provisional < CRFS_PROVISIONAL_FIRST || e.real >= CRFS_PROVISIONAL_FIRST) {
      return Bad(Code::kBadValue, "trans reply maps a non-provisional value");
    }
  }
  return Status::Ok();
}

Status Read(Reader* r, Durable* m) { return r->Le64(&m->generation, "durable generation"); }

// An object a client may name: a real objectid (not provisional, not 0).
Status RealObjectid(uint64_t id, const char* what) {
  if (id == 0 || id >= CRFS_PROVISIONAL_FIRST) {
    return Bad(Code::kBadValue, std::string(what) + " " + std::to_string(id) + " is not an object's");
  }
  return Status::Ok();
}

Status Read(Reader* r, Open* m) {
  uint32_t reserved = 0;
  CRFS_RETURN_IF_ERROR(r->Le64(&m->objectid, "open objectid"));
  CRFS_RETURN_IF_ERROR(r->Le32(&m->flags, "open flags"));
  CRFS_RETURN_IF_ERROR(r->Le32(&reserved, "open reserved"));
  if (reserved != 0) return Bad(Code::kBadValue, "open reserved field set");
  if (m->flags == 0 || (m->flags & ~uint32_t{CRFS_OPEN_ALL})) {
    return Bad(Code::kBadValue, "open flags " + std::to_string(m->flags) + " not a non-empty set of CRFS_OPEN_*");
  }
  return RealObjectid(m->objectid, "open objectid");
}

Status Read(Reader* r, Close* m) {
  CRFS_RETURN_IF_ERROR(r->Le64(&m->objectid, "close objectid"));
  return RealObjectid(m->objectid, "close objectid");
}

Status Read(Reader* r, TreeQuery* m) {
  uint32_t reserved = 0;
  CRFS_RETURN_IF_ERROR(r->Le64(&m->objectid, "tree query objectid"));
  CRFS_RETURN_IF_ERROR(r->Le32(&m->bytes, "tree query bytes"));
  CRFS_RETURN_IF_ERROR(r->Le32(&reserved, "tree query reserved"));
  if (reserved != 0) return Bad(Code::kBadValue, "tree query reserved field set");
  if (m->bytes == 0 || m->bytes > CRFS_MAX_PAYLOAD) {
    return Bad(Code::kBadValue,
               "tree query bytes " + std::to_string(m->bytes) + " not in 1.." + std::to_string(CRFS_MAX_PAYLOAD));
  }
  return Status::Ok();
}

// ---- writers ------------------------------------------------------------

Status Write(Writer* w, const FinalReply& m) {
  if (m.text.size() > CRFS_MAX_ERROR_TEXT) return Bad(Code::kInvalidArgument, "final reply text too long");
  w->Le64(m.generation);
  w->Put(m.text);
  return Status::Ok();
}

Status Write(Writer* w, const ItemQuery& m) {
  WriteKey(w, m.key);
  WriteKey(w, m.min);
  WriteKey(w, m.max);
  w->Le32(m.bytes);
  return Status::Ok();
}

Status Write(Writer* w, const ItemRange& m) { return internal::WriteRange(w, m); }

Status Write(Writer* w, const Lock& m) {
  WriteKey(w, m.min);
  WriteKey(w, m.max);
  w->U8(m.mode);
  return Status::Ok();
}

Status Write(Writer* w, const Grant& m) {
  w->Le64(m.grant_id);
  WriteKey(w, m.min);
  WriteKey(w, m.max);
  w->U8(m.mode);
  w->Le32(m.lease_ms);
  return Status::Ok();
}

Status Write(Writer* w, const TransFrag& m) {
  if (m.ranges.empty() || m.ranges.size() > CRFS_MAX_FRAG_RANGES) {
    return Bad(Code::kInvalidArgument, "a fragment carries 1.." + std::to_string(CRFS_MAX_FRAG_RANGES) + " ranges");
  }
  w->Le32(m.frag_nr);
  w->U8(m.last ? 1 : 0);
  w->U8(m.flags);
  w->Le16(static_cast<uint16_t>(m.ranges.size()));
  w->Le64(m.base_generation);
  for (const ItemRange& range : m.ranges) CRFS_RETURN_IF_ERROR(internal::WriteRange(w, range));
  return Status::Ok();
}

Status Write(Writer* w, const Revoke& m) {
  w->Le64(m.grant_id);
  w->U8(m.mode);
  return Status::Ok();
}

Status Write(Writer* w, const Release& m) {
  w->Le64(m.grant_id);
  w->U8(m.mode);
  return Status::Ok();
}

Status Write(Writer* w, const Hello& m) {
  if (m.capability.size() > CRFS_MAX_CAPABILITY) return Bad(Code::kInvalidArgument, "capability too large");
  w->Le32(CRFS_PROTO_MAGIC);
  w->Le16(m.version_min);
  w->Le16(m.version_max);
  w->Le32(m.features);
  w->Le32(m.max_payload);
  w->Le32(static_cast<uint32_t>(m.capability.size()));
  w->Put(Bytes(m.client_id.data(), m.client_id.size()));
  w->Put(m.capability);
  return Status::Ok();
}

Status Write(Writer* w, const HelloReply& m) {
  w->Le16(m.version);
  w->Le16(0);
  w->Le32(m.features);
  w->Le32(m.max_payload);
  w->Le32(m.lease_ms);
  w->Le64(m.session_id);
  w->Le64(m.root_objectid);
  w->Le64(m.generation);
  w->Le32(m.uid);
  w->Le32(m.gid);
  return Status::Ok();
}

Status Write(Writer* w, const DataRead& m) {
  w->Le64(m.objectid);
  w->Le64(m.offset);
  w->Le32(m.len);
  w->Le32(0);
  return Status::Ok();
}

Status Write(Writer* w, const DataPayload& m) {
  if (m.data.empty() || m.data.size() > CRFS_MAX_DATA_BYTES ||
      m.csums.size() != DataBlockCount(m.data.size(), CRFS_DATA_BLOCK_SIZE)) {
    return Bad(Code::kInvalidArgument,
               "data of 1.." + std::to_string(CRFS_MAX_DATA_BYTES) + " bytes with one crc32c per block");
  }
  w->Le64(m.objectid);
  w->Le64(m.offset);
  w->Le32(static_cast<uint32_t>(m.data.size()));
  w->Le16(static_cast<uint16_t>(m.csums.size()));
  w->Le16(0);
  for (uint32_t c : m.csums) w->Le32(c);
  w->Put(m.data);
  return Status::Ok();
}

Status Write(Writer* w, const Snapshot& m) {
  if (m.name.empty() || m.name.size() > CRFS_MAX_SNAPSHOT_NAME) {
    return Bad(Code::kInvalidArgument, "snapshot name must be 1.." + std::to_string(CRFS_MAX_SNAPSHOT_NAME) + " bytes");
  }
  w->Le16(static_cast<uint16_t>(m.name.size()));
  w->Le16(0);
  w->Put(m.name);
  return Status::Ok();
}

Status Write(Writer*, const Ping&) { return Status::Ok(); }
Status Write(Writer*, const Sync&) { return Status::Ok(); }

Status Write(Writer* w, const TransReply& m) {
  if (m.map.size() > CRFS_MAX_TRANS_MAP) return Bad(Code::kInvalidArgument, "trans reply map too large");
  w->Le64(m.generation);
  w->Le32(m.flags);
  w->Le32(static_cast<uint32_t>(m.map.size()));
  for (const TransMapEntry& e : m.map) {
    w->Le64(e.provisional);
    w->Le64(e.real);
  }
  return Status::Ok();
}

Status Write(Writer* w, const Durable& m) {
  w->Le64(m.generation);
  return Status::Ok();
}

Status Write(Writer* w, const TreeQuery& m) {
  w->Le64(m.objectid);
  w->Le32(m.bytes);
  w->Le32(0);
  return Status::Ok();
}

Status Write(Writer* w, const Open& m) {
  w->Le64(m.objectid);
  w->Le32(m.flags);
  w->Le32(0);
  return Status::Ok();
}

Status Write(Writer* w, const Close& m) {
  w->Le64(m.objectid);
  return Status::Ok();
}

// Builds a Message holding alternative `I`, and decodes into it.
template <size_t I>
Status ReadAlternative(Reader* r, Message* out) {
  out->emplace<I>();
  return Read(r, &std::get<I>(*out));
}

// The dispatch table: entry t-1 decodes message type t.
using ReadFn = Status (*)(Reader*, Message*);
template <size_t... I>
constexpr std::array<ReadFn, sizeof...(I)> MakeReaders(std::index_sequence<I...>) {
  return {&ReadAlternative<I>...};
}
constexpr auto kReaders = MakeReaders(std::make_index_sequence<std::variant_size_v<Message>>{});

}  // namespace

Result<Header> DecodeHeader(Bytes buf, uint32_t max_payload) {
  Reader r(buf);
  Header h;
  uint16_t flags = 0;
  uint32_t reserved = 0;
  CRFS_RETURN_IF_ERROR(r.Le64(&h.id, "header id"));
  CRFS_RETURN_IF_ERROR(r.Le32(&h.info, "header info"));
  CRFS_RETURN_IF_ERROR(r.Le32(&h.bytes, "header bytes"));
  CRFS_RETURN_IF_ERROR(r.Le16(&h.type, "header type"));
  CRFS_RETURN_IF_ERROR(r.Le16(&flags, "header flags"));
  CRFS_RETURN_IF_ERROR(r.Le32(&reserved, "header reserved"));
  if (h.type == 0 || h.type > CRFS_MSG_TYPE_MAX) {
    return Bad(Code::kUnknownType, "message type " + std::to_string(h.type));
  }
  if (flags != 0 || reserved != 0) return Bad(Code::kBadValue, "header flags or reserved bits set");
  if (h.bytes > max_payload) {
    return Bad(Code::kTooLarge, "payload of " + std::to_string(h.bytes) + " bytes > " + std::to_string(max_payload));
  }
  const bool unsolicited = h.type == CRFS_MSG_REVOKE || h.type == CRFS_MSG_DURABLE;
  if (h.id == 0 && !unsolicited) return Bad(Code::kBadValue, "id 0 on a " + std::string(MessageTypeName(h.type)));
  if (h.id != 0 && h.type == CRFS_MSG_REVOKE) return Bad(Code::kBadValue, "REVOKE with a nonzero id");
  if (h.type == CRFS_MSG_FINAL_REPLY ? h.info >= 4096 : h.info != 0) {
    return Bad(Code::kBadValue, "header info " + std::to_string(h.info) + " invalid for this type");
  }
  return h;
}

Result<Frame> DecodePayload(const Header& h, Bytes payload) {
  if (payload.size() != h.bytes) return Bad(Code::kLengthMismatch, "payload size disagrees with header bytes");
  Frame f;
  f.id = h.id;
  f.info = h.info;
  Reader r(payload);
  if (h.type == 0 || h.type > kReaders.size()) return Bad(Code::kUnknownType, "message type " + std::to_string(h.type));
  Status s = kReaders[h.type - 1](&r, &f.msg);
  if (!s.ok()) return Status(s.code(), std::string(MessageTypeName(h.type)) + ": " + s.message());
  s = r.ExpectEnd(MessageTypeName(h.type));
  if (!s.ok()) return s;
  return f;
}

Result<Frame> DecodeFrame(Bytes buf, size_t* consumed, uint32_t max_payload) {
  auto h = DecodeHeader(buf, max_payload);
  if (!h.ok()) return h.status();
  if (buf.size() - kHeaderSize < h->bytes) {
    return Bad(Code::kTruncated, "frame announces " + std::to_string(h->bytes) + " payload bytes, " +
                                     std::to_string(buf.size() - kHeaderSize) + " present");
  }
  auto f = DecodePayload(*h, buf.subspan(kHeaderSize, h->bytes));
  if (f.ok()) *consumed = kHeaderSize + h->bytes;
  return f;
}

Result<std::vector<uint8_t>> EncodeFrame(const Frame& f) {
  const uint16_t type = MessageType(f.msg);
  Writer w(kHeaderSize + CRFS_MAX_PAYLOAD);
  w.Le64(f.id);
  w.Le32(f.info);
  w.Le32(0);  // bytes, patched below
  w.Le16(type);
  w.Le16(0);
  w.Le32(0);
  Status s = std::visit([&w](const auto& m) { return Write(&w, m); }, f.msg);
  CRFS_RETURN_IF_ERROR(s);
  CRFS_RETURN_IF_ERROR(w.status());
  w.PatchLe32(offsetof(struct crfs_header, bytes), static_cast<uint32_t>(w.size() - kHeaderSize));
  return std::move(w).Take();
}

const char* MessageTypeName(uint16_t type) {
  static const char* const kNames[] = {
      "?",
      "CRFS_MSG_FINAL_REPLY",
      "CRFS_MSG_ITEM_QUERY",
      "CRFS_MSG_ITEM_RANGE",
      "CRFS_MSG_LOCK",
      "CRFS_MSG_GRANT",
      "CRFS_MSG_TRANS_FRAG",
      "CRFS_MSG_REVOKE",
      "CRFS_MSG_RELEASE",
      "CRFS_MSG_HELLO",
      "CRFS_MSG_HELLO_REPLY",
      "CRFS_MSG_DATA_READ",
      "CRFS_MSG_DATA",
      "CRFS_MSG_DATA_WRITE",
      "CRFS_MSG_SNAPSHOT",
      "CRFS_MSG_PING",
      "CRFS_MSG_TRANS_REPLY",
      "CRFS_MSG_SYNC",
      "CRFS_MSG_DURABLE",
      "CRFS_MSG_TREE_QUERY",
      "CRFS_MSG_OPEN",
      "CRFS_MSG_CLOSE",
  };
  static_assert(sizeof(kNames) / sizeof(kNames[0]) == CRFS_MSG_TYPE_MAX + 1);
  return type <= CRFS_MSG_TYPE_MAX ? kNames[type] : "?";
}

const char* FileTypeName(uint8_t type) {
  static const char* const kNames[] = {"CRFS_FT_UNKNOWN", "CRFS_FT_REG_FILE", "CRFS_FT_DIR",  "CRFS_FT_CHRDEV",
                                       "CRFS_FT_BLKDEV",  "CRFS_FT_FIFO",     "CRFS_FT_SOCK", "CRFS_FT_SYMLINK"};
  static_assert(sizeof(kNames) / sizeof(kNames[0]) == CRFS_FT_MAX);
  return type < CRFS_FT_MAX ? kNames[type] : "?";
}

}  // namespace crfs::proto
