// note.h - signed notes and checkpoints in the C2SP formats
// (c2sp.org/signed-note, c2sp.org/tlog-checkpoint), Ed25519 through
// OpenSSL. docs/audit.md "Checkpoints" is the normative text for crfs.
//
//   <origin>\n<tree size>\n<base64 root>\n\n— <key name> base64(key id || signature)\n
//
// A key's name is the log's origin; its id is the first four bytes of
// SHA-256(name || 0x0A || 0x01 || public key). Verifiers are given in the
// "vkey" text form of Go's note package: <name>+<8 hex key id>+<base64(0x01 ||
// public key)>.
//
// Signer holds a private key (only the audit writer may); Verifier and the
// parsers are for anyone. All are immutable after construction: safe to
// share between threads.
#pragma once

#include <openssl/evp.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "audit/merkle.h"
#include "proto/status.h"

namespace crfs::audit {

struct Checkpoint {
  std::string origin;
  uint64_t size = 0;
  Hash root{};

  // The note text: three lines, each ending in a newline.
  std::string Text() const;
  // Strict: exactly origin, a decimal size without leading zeros, a
  // base64 SHA-256; extension lines are refused (crfs writes none).
  static Result<Checkpoint> Parse(std::string_view text);
};

class Verifier {
 public:
  // From the vkey text form.
  static Result<Verifier> Parse(std::string_view vkey);
  const std::string& name() const { return name_; }
  uint32_t key_id() const { return key_id_; }
  const std::string& vkey() const { return vkey_; }
  // The note's text if one of its signatures is this key's and verifies;
  // an error if none is, or one by this key fails (a note is rejected
  // whole), or the note is malformed.
  Result<std::string> Open(std::string_view note) const;

 private:
  std::string name_, vkey_;
  uint32_t key_id_ = 0;
  std::shared_ptr<EVP_PKEY> key_;
};

class Signer {
 public:
  // A PEM Ed25519 private key (PKCS#8, as `openssl genpkey -algorithm
  // ed25519` or `crfs-audit keygen` writes it), named `name`.
  static Result<Signer> Load(const std::string& pem_path, const std::string& name);
  // Writes a new key to `pem_path` (mode 0600, refusing to overwrite).
  static Status Generate(const std::string& pem_path);
  // `text` (ending in a newline) as a signed note.
  Result<std::string> Sign(std::string_view text) const;
  const Verifier& verifier() const { return verifier_; }

 private:
  std::shared_ptr<EVP_PKEY> key_;
  Verifier verifier_;
};

// Key id of an Ed25519 public key named `name`.
uint32_t KeyId(std::string_view name, const uint8_t public_key[32]);

}  // namespace crfs::audit
