#include "server/answers.h"

#include <openssl/evp.h>

#include <algorithm>

#include "proto/codec.h"
#include "server/transaction.h"

namespace crfs::server {
namespace {

constexpr uint32_t kMaxText = 4096;
constexpr uint32_t kMaxClientName = 64;
constexpr uint32_t kMaxMap = 1u << 20;

}  // namespace

BodyDigest TransactionDigest(const Transaction& t) {
  BodyDigest d{};
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  proto::Writer w(16);
  w.U8(t.flags);
  w.Le64(t.base_generation);
  bool ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr) == 1 &&
            EVP_DigestUpdate(ctx, w.bytes().data(), w.bytes().size()) == 1;
  for (const proto::ItemRange& r : t.ranges) {
    auto bytes = proto::EncodeFrame(proto::Frame{0, 0, r});
    ok = ok && bytes.ok() && EVP_DigestUpdate(ctx, bytes->data(), bytes->size()) == 1;
  }
  unsigned int n = 0;
  ok = ok && EVP_DigestFinal_ex(ctx, d.data(), &n) == 1 && n == d.size();
  EVP_MD_CTX_free(ctx);
  if (!ok) d.fill(0xff);  // no digest: matches nothing a real body hashes to
  return d;
}

bool IsZero(const ClientInstance& id) {
  return std::all_of(id.begin(), id.end(), [](uint8_t b) { return b == 0; });
}

void EncodeAnswer(const StoredAnswer& a, proto::Writer* w) {
  w->Le32(static_cast<uint32_t>(a.who.client.size()));
  w->Put(a.who.client);
  w->Put(proto::Bytes(a.who.id.data(), a.who.id.size()));
  w->Le64(a.txn);
  w->Put(proto::Bytes(a.digest.data(), a.digest.size()));
  w->Le32(static_cast<uint32_t>(a.err));
  w->Le32(static_cast<uint32_t>(a.text.size()));
  w->Put(a.text);
  w->Le64(a.reply.generation);
  w->Le32(a.reply.flags);
  w->Le32(static_cast<uint32_t>(a.reply.map.size()));
  for (const proto::TransMapEntry& e : a.reply.map) {
    w->Le64(e.provisional);
    w->Le64(e.real);
  }
}

Status DecodeAnswer(proto::Reader* r, StoredAnswer* a) {
  uint32_t n = 0, err = 0;
  CRFS_RETURN_IF_ERROR(r->Le32(&n, "answer client length"));
  if (n == 0 || n > kMaxClientName) return Status(Code::kTooLarge, "answer client name length");
  CRFS_RETURN_IF_ERROR(r->TakeString(n, &a->who.client, "answer client"));
  proto::Bytes b;
  CRFS_RETURN_IF_ERROR(r->Take(a->who.id.size(), &b, "answer client id"));
  std::copy(b.begin(), b.end(), a->who.id.begin());
  CRFS_RETURN_IF_ERROR(r->Le64(&a->txn, "answer transaction"));
  CRFS_RETURN_IF_ERROR(r->Take(a->digest.size(), &b, "answer digest"));
  std::copy(b.begin(), b.end(), a->digest.begin());
  CRFS_RETURN_IF_ERROR(r->Le32(&err, "answer errno"));
  if (err > 4095) return Status(Code::kBadValue, "answer errno out of range");
  a->err = static_cast<int32_t>(err);
  CRFS_RETURN_IF_ERROR(r->Le32(&n, "answer text length"));
  if (n > kMaxText) return Status(Code::kTooLarge, "answer text length");
  CRFS_RETURN_IF_ERROR(r->TakeString(n, &a->text, "answer text"));
  CRFS_RETURN_IF_ERROR(r->Le64(&a->reply.generation, "answer generation"));
  CRFS_RETURN_IF_ERROR(r->Le32(&a->reply.flags, "answer flags"));
  CRFS_RETURN_IF_ERROR(r->Le32(&n, "answer map length"));
  if (n > kMaxMap || n > r->remaining() / 16) return Status(Code::kTooLarge, "answer map length");
  a->reply.map.resize(n);
  for (proto::TransMapEntry& e : a->reply.map) {
    CRFS_RETURN_IF_ERROR(r->Le64(&e.provisional, "answer map"));
    CRFS_RETURN_IF_ERROR(r->Le64(&e.real, "answer map"));
  }
  return Status::Ok();
}

const StoredAnswer* AnswerCache::Find(const ClientKey& who, uint64_t txn) const {
  auto it = answers_.find({who, txn});
  return it == answers_.end() ? nullptr : &it->second;
}

void AnswerCache::Forget(const Id& id) {
  auto it = answers_.find(id);
  if (it == answers_.end()) return;
  map_entries_ -= it->second.reply.map.size();
  if (auto c = per_client_.find(id.first); c != per_client_.end() && --c->second == 0) per_client_.erase(c);
  answers_.erase(it);
}

void AnswerCache::Remember(StoredAnswer a) {
  Id id{a.who, a.txn};
  if (answers_.count(id)) {
    Forget(id);
    order_.erase(std::find(order_.begin(), order_.end(), id));
  }
  map_entries_ += a.reply.map.size();
  per_client_[a.who]++;
  answers_.emplace(id, std::move(a));
  order_.push_back(id);
  // Past a bound: the oldest go first (of this client, for its own bound).
  if (per_client_[id.first] > kPerClient) {
    auto old = std::find_if(order_.begin(), order_.end(), [&](const Id& o) { return o.first == id.first; });
    Forget(*old);
    order_.erase(old);
  }
  while (!order_.empty() && (order_.size() > kMax || map_entries_ > kMaxMapEntries)) {
    Forget(order_.front());
    order_.pop_front();
  }
}

void AnswerCache::EncodeAll(proto::Writer* w) const {
  w->Le64(order_.size());
  for (const Id& id : order_) EncodeAnswer(answers_.at(id), w);
}

size_t AnswerCache::EncodedSize() const {
  size_t n = 8;
  for (const auto& [id, a] : answers_) n += 96 + a.who.client.size() + a.text.size() + 16 * a.reply.map.size();
  return n;
}

}  // namespace crfs::server
