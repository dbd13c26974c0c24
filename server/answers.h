// answers.h - the answers to a tenant's applied transactions, by client
// instance, so that a transaction resent after a dropped connection or a
// restart of crfsd is answered as the first time and not applied again
// (docs/protocol.md §6.4).
//
// A client instance is (client name from the certificate, the 16-byte
// client_id of its HELLO): a client id alone names nothing, so another
// certificate presenting the same id never sees these answers. An answer
// is kept with the SHA-256 of the transaction's body: a resent id with
// another body is refused (EEXIST), never answered with what it did not do.
//
// Bounds (per tenant): kPerClient answers per client instance and kMax in
// all, at most kMaxMapEntries provisional-id map entries; past them the
// oldest are forgotten. A forgotten transaction resent is planned again
// and, as everything it touched changed since its base, is ESTALE.
//
// The tenant's store owns its cache; it lives in the intent journal
// (journal.h): each applied transaction's END record carries its answer,
// and the journal's restart record carries the whole cache.
//
// Not thread-safe: used by the thread that owns the store.
#pragma once

#include <array>
#include <cstdint>
#include <deque>
#include <map>
#include <string>
#include <utility>

#include "proto/messages.h"
#include "proto/status.h"
#include "proto/wire_reader.h"

namespace crfs::server {

struct Transaction;

using ClientInstance = std::array<uint8_t, 16>;
using BodyDigest = std::array<uint8_t, 32>;

struct ClientKey {
  std::string client;  // the certificate's client name
  ClientInstance id{};
  bool operator<(const ClientKey& o) const { return std::tie(client, id) < std::tie(o.client, o.id); }
  bool operator==(const ClientKey&) const = default;
};

struct StoredAnswer {
  ClientKey who;
  uint64_t txn = 0;  // the transaction's request id
  BodyDigest digest{};
  int32_t err = 0;  // 0: applied; else the errno it was answered with
  std::string text;
  proto::TransReply reply;
  bool operator==(const StoredAnswer&) const = default;
};

// SHA-256 of a transaction's flags, base generation and ranges (in their
// canonical encoding).
BodyDigest TransactionDigest(const Transaction& t);
bool IsZero(const ClientInstance& id);

void EncodeAnswer(const StoredAnswer& a, proto::Writer* w);
[[nodiscard]] Status DecodeAnswer(proto::Reader* r, StoredAnswer* a);

class AnswerCache {
 public:
  static constexpr size_t kPerClient = 256;
  static constexpr size_t kMax = 16384;
  static constexpr size_t kMaxMapEntries = 1 << 20;

  // The answer to transaction `txn` of `who`, or nullptr.
  const StoredAnswer* Find(const ClientKey& who, uint64_t txn) const;
  // Keeps `a` (replacing an answer to the same transaction), forgetting the
  // oldest past the bounds.
  void Remember(StoredAnswer a);
  size_t size() const { return order_.size(); }
  // Every answer, oldest first, for the journal's restart record.
  void EncodeAll(proto::Writer* w) const;
  size_t EncodedSize() const;

 private:
  using Id = std::pair<ClientKey, uint64_t>;
  void Forget(const Id& id);
  std::map<Id, StoredAnswer> answers_;
  std::deque<Id> order_;  // oldest first
  std::map<ClientKey, size_t> per_client_;
  size_t map_entries_ = 0;
};

}  // namespace crfs::server
