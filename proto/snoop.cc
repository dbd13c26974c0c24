#include "proto/snoop.h"

#include <cinttypes>
#include <cstdarg>
#include <cstdio>
#include <cstring>

#include "proto/checksum.h"
#include "proto/codec.h"

namespace crfs::proto {
namespace {

std::string Printf(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
std::string Printf(const char* fmt, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof(buf), fmt, ap);
  va_end(ap);
  return std::string(buf, n < 0 ? 0 : std::min<size_t>(static_cast<size_t>(n), sizeof(buf) - 1));
}

std::string Quote(const std::string& s, size_t max = 255) {
  std::string out = "'";
  for (size_t i = 0; i < s.size() && i < max; i++) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c < 0x7f && c != '\'' && c != '\\') {
      out += static_cast<char>(c);
    } else {
      out += Printf("\\x%02x", c);
    }
  }
  out += "'";
  if (s.size() > max) out += "...";
  return out;
}

}  // namespace

std::string EscapeText(std::string_view text, size_t max) {
  std::string out;
  for (unsigned char c : text) {
    std::string piece =
        c >= 0x20 && c < 0x7f && c != '\\' ? std::string(1, static_cast<char>(c)) : Printf("\\x%02x", c);
    if (out.size() + piece.size() > max) {
      while (out.size() + 3 > max && !out.empty()) out.pop_back();
      return out + "...";
    }
    out += piece;
  }
  return out;
}

namespace {

enum class Num { kDecimal, kHex, kMaybeProvisional };

std::string U64(uint64_t v, Num how) {
  if (v == ~0ull) return "~0";
  if (how == Num::kMaybeProvisional && v >= CRFS_PROVISIONAL_FIRST) {
    return Printf("p%" PRIu64, static_cast<uint64_t>(v - CRFS_PROVISIONAL_FIRST));
  }
  return how == Num::kHex ? Printf("0x%" PRIx64, v) : Printf("%" PRIu64, v);
}

std::string KeyType(uint8_t t) {
  switch (t) {
    case CRFS_INODE_ITEM_KEY: return "i";
    case CRFS_INODE_REF_KEY: return "r";
    case CRFS_XATTR_ITEM_KEY: return "x";
    case CRFS_DIR_ITEM_KEY: return "d";
    case CRFS_DIR_INDEX_KEY: return "D";
    case CRFS_EXTENT_DATA_KEY: return "e";
    case 0xff: return "~0";
  }
  return std::to_string(t);
}

std::string Mode(uint32_t mode) {
  const char* type = "?";
  switch (mode & 0170000) {
    case 0040000: type = "DIR"; break;
    case 0100000: type = "REG"; break;
    case 0120000: type = "LNK"; break;
    case 0020000: type = "CHR"; break;
    case 0060000: type = "BLK"; break;
    case 0010000: type = "FIFO"; break;
    case 0140000: type = "SOCK"; break;
  }
  return Printf("%s|%04o", type, mode & 07777);
}

const char* LockMode(uint8_t m) {
  switch (m) {
    case CRFS_LOCK_NONE: return "NONE";
    case CRFS_LOCK_READ: return "READ";
    case CRFS_LOCK_WRITE: return "WRITE";
  }
  return "?";
}

std::string Data(const std::vector<uint8_t>& data, const std::vector<uint32_t>& csums) {
  Status ok = VerifyDataBlockCrcs(data, csums);
  return Printf("csums %zu [%s] data ", csums.size(), ok.ok() ? "ok" : "BAD") +
         Quote(std::string(data.begin(), data.end()), 32);
}

struct Printer {
  std::string out;

  void Line(int indent, const std::string& s) {
    out.append(static_cast<size_t>(indent), ' ');
    out += s;
    out += '\n';
  }

  void Body(int in, const ItemBody& body) {
    if (auto* i = std::get_if<InodeItem>(&body)) {
      std::string s = Printf("ino sz %" PRIu64 " nlink %u uid %u gid %u mode ", i->size, i->nlink, i->uid, i->gid);
      s += Mode(i->mode);
      if (i->rdev) s += Printf(" rdev %" PRIu64, i->rdev);
      Line(in, s);
    } else if (auto* d = std::get_if<DirEntries>(&body)) {
      for (const DirEntry& e : d->entries) {
        Line(in, Printf("dent len %zu type %u [%s] name ", e.name.size(), e.type, FileTypeName(e.type)) +
                     Quote(e.name) + " loc " + FormatKey(e.location));
      }
    } else if (auto* r = std::get_if<InodeRefs>(&body)) {
      for (const InodeRefEntry& e : r->refs) {
        Line(in, "iref index " + U64(e.index, Num::kMaybeProvisional) + Printf(" len %zu name ", e.name.size()) +
                     Quote(e.name));
      }
    } else if (auto* x = std::get_if<Xattrs>(&body)) {
      for (const XattrEntry& e : x->entries) {
        Line(in, Printf("xattr len %zu name ", e.name.size()) + Quote(e.name) +
                     Printf(" value len %zu ", e.value.size()) + Quote(e.value, 32));
      }
    } else if (auto* e = std::get_if<ExtentData>(&body)) {
      if (e->type != CRFS_EXTENT_INLINE) {
        Line(in, Printf("extent %s gen %" PRIu64 " len %u", e->type == CRFS_EXTENT_HOLE ? "hole" : "reg", e->generation,
                        e->len));
      } else {
        Line(in, Printf("extent inline gen %" PRIu64 " len %u ", e->generation, e->len) + Data(e->data, e->csums));
      }
    }
  }

  void Range(int in, const ItemRange& r) {
    Line(in, Printf("range nr %zu min ", r.items.size()) + FormatKey(r.min) + " max " + FormatKey(r.max));
    for (const Item& it : r.items) {
      Line(in + 2, Printf("off %u size %u key ", it.wire_offset, it.wire_size) + FormatKey(it.key));
      Body(in + 4, it.body);
    }
  }

  void operator()(const FinalReply& m) {
    Line(2, Printf("final-reply generation %" PRIu64, m.generation));
    if (!m.text.empty()) Line(2, "text " + Quote(m.text, CRFS_MAX_ERROR_TEXT));
  }
  void operator()(const ItemQuery& m) {
    Line(2, "query key " + FormatKey(m.key) + " min " + FormatKey(m.min) + " max " + FormatKey(m.max) +
                Printf(" bytes %u", m.bytes));
  }
  void operator()(const ItemRange& m) { Range(2, m); }
  void operator()(const Lock& m) {
    Line(2, Printf("lock mode %s min ", LockMode(m.mode)) + FormatKey(m.min) + " max " + FormatKey(m.max));
  }
  void operator()(const Grant& m) {
    Line(2, Printf("grant id %" PRIu64 " mode %s min ", m.grant_id, LockMode(m.mode)) + FormatKey(m.min) + " max " +
                FormatKey(m.max) + Printf(" lease_ms %u", m.lease_ms));
  }
  void operator()(const TransFrag& m) {
    Line(2, Printf("frag nr %u last %d flags 0x%x base %" PRIu64 " ranges %zu", m.frag_nr, m.last ? 1 : 0, m.flags,
                   m.base_generation, m.ranges.size()));
    for (const ItemRange& r : m.ranges) Range(4, r);
  }
  void operator()(const Revoke& m) {
    Line(2, Printf("revoke grant %" PRIu64 " keep %s", m.grant_id, LockMode(m.mode)));
  }
  void operator()(const Release& m) {
    Line(2, Printf("release grant %" PRIu64 " keep %s", m.grant_id, LockMode(m.mode)));
  }
  void operator()(const Hello& m) {
    std::string client;
    for (uint8_t b : m.client_id) client += Printf("%02x", b);
    Line(2, Printf("hello version %u..%u features 0x%x max_payload %u client %s cap_len %zu", m.version_min,
                   m.version_max, m.features, m.max_payload, client.c_str(), m.capability.size()));
  }
  void operator()(const HelloReply& m) {
    Line(2, Printf("hello-reply version %u features 0x%x max_payload %u lease_ms %u session 0x%" PRIx64 " root %" PRIu64
                   " generation %" PRIu64 " uid %u gid %u",
                   m.version, m.features, m.max_payload, m.lease_ms, m.session_id, m.root_objectid, m.generation, m.uid,
                   m.gid));
  }
  void operator()(const DataRead& m) {
    Line(2, Printf("read ino %" PRIu64 " off %" PRIu64 " len %u", m.objectid, m.offset, m.len));
  }
  void DataLine(const char* what, const DataPayload& m) {
    Line(2, Printf("%s ino %" PRIu64 " off %" PRIu64 " len %zu ", what, m.objectid, m.offset, m.data.size()) +
                Data(m.data, m.csums));
  }
  void operator()(const proto::Data& m) { DataLine("data", m); }
  void operator()(const DataWrite& m) { DataLine("write", m); }
  void operator()(const Snapshot& m) { Line(2, "snapshot name " + Quote(m.name)); }
  void operator()(const Ping&) {}
  void operator()(const Sync&) {}
  void operator()(const TransReply& m) {
    std::string flags;
    if (m.flags & CRFS_TRANS_R_APPLIED) flags += "APPLIED";
    if (m.flags & CRFS_TRANS_R_DURABLE) flags += flags.empty() ? "DURABLE" : "|DURABLE";
    Line(2, Printf("trans-reply generation %" PRIu64 " flags %s map %zu", m.generation,
                   flags.empty() ? "0" : flags.c_str(), m.map.size()));
    for (const TransMapEntry& e : m.map)
      Line(4, "map " + U64(e.provisional, Num::kMaybeProvisional) + " -> " + U64(e.real, Num::kDecimal));
  }
  void operator()(const Durable& m) { Line(2, Printf("durable generation %" PRIu64, m.generation)); }
  void operator()(const TreeQuery& m) {
    Line(2, "tree-query " + FormatKey(Key{m.objectid, CRFS_INODE_ITEM_KEY, 0}) + Printf(" bytes %u", m.bytes));
  }
  void operator()(const Open& m) {
    std::string flags;
    if (m.flags & CRFS_OPEN_READ) flags += "READ";
    if (m.flags & CRFS_OPEN_WRITE) flags += flags.empty() ? "WRITE" : "|WRITE";
    Line(2, "open " + FormatKey(Key{m.objectid, CRFS_INODE_ITEM_KEY, 0}) + " flags " + flags);
  }
  void operator()(const Close& m) { Line(2, "close " + FormatKey(Key{m.objectid, CRFS_INODE_ITEM_KEY, 0})); }
};

}  // namespace

std::string FormatKey(const Key& k) {
  Num offset = Num::kDecimal;
  if (k.type == CRFS_DIR_ITEM_KEY || k.type == CRFS_XATTR_ITEM_KEY) offset = Num::kHex;  // name hashes
  if (k.type == CRFS_DIR_INDEX_KEY) offset = Num::kMaybeProvisional;
  return "(" + U64(k.objectid, Num::kMaybeProvisional) + "." + KeyType(k.type) + "." + U64(k.offset, offset) + ")";
}

std::string FormatHeader(const Header& h) {
  std::string s = Printf("header id %" PRIu64 " info %u bytes %u type %u [%s]", h.id, h.info, h.bytes, h.type,
                         MessageTypeName(h.type));
  if (h.type == CRFS_MSG_FINAL_REPLY && h.info != 0) {
    const char* name = strerrorname_np(static_cast<int>(h.info));
    s += Printf(" %s", name ? name : "E?");
  }
  return s + "\n";
}

std::string FormatFrame(const Frame& f, uint32_t payload_bytes) {
  Header h{f.id, f.info, payload_bytes, MessageType(f.msg)};
  Printer p;
  p.out = FormatHeader(h);
  std::visit(p, f.msg);
  return p.out;
}

}  // namespace crfs::proto
