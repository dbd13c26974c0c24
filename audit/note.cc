// note.cc - C2SP signed notes and checkpoints (note.h).
#include "audit/note.h"

#include <fcntl.h>
#include <openssl/pem.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace crfs::audit {
namespace {

constexpr uint8_t kEd25519 = 0x01;
constexpr std::string_view kDash = "\xe2\x80\x94 ";  // U+2014, then a space
constexpr size_t kMaxNote = 64 << 10;
constexpr size_t kMaxSignatures = 16;

Status Bad(const std::string& what) { return Status(Code::kInvalidArgument, what); }

bool ValidKeyName(std::string_view n) {
  if (n.empty() || n.size() > 255) return false;
  for (unsigned char c : n) {
    if (c <= 0x20 || c == '+' || c == 0x7f) return false;
  }
  return true;
}

std::shared_ptr<EVP_PKEY> PublicKey(const uint8_t pub[32]) {
  EVP_PKEY* k = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr, pub, 32);
  return std::shared_ptr<EVP_PKEY>(k, EVP_PKEY_free);
}

bool Ed25519Verify(EVP_PKEY* key, std::string_view msg, const uint8_t* sig, size_t sig_len) {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  const bool ok =
      ctx && EVP_DigestVerifyInit(ctx, nullptr, nullptr, nullptr, key) == 1 &&
      EVP_DigestVerify(ctx, sig, sig_len, reinterpret_cast<const unsigned char*>(msg.data()), msg.size()) == 1;
  EVP_MD_CTX_free(ctx);
  return ok;
}

}  // namespace

uint32_t KeyId(std::string_view name, const uint8_t public_key[32]) {
  std::string buf(name);
  buf += '\n';
  buf += static_cast<char>(kEd25519);
  buf.append(reinterpret_cast<const char*>(public_key), 32);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(buf.data(), buf.size(), md, &len, EVP_sha256(), nullptr);
  return uint32_t{md[0]} << 24 | uint32_t{md[1]} << 16 | uint32_t{md[2]} << 8 | md[3];
}

std::string Checkpoint::Text() const { return origin + "\n" + std::to_string(size) + "\n" + Base64Of(root) + "\n"; }

Result<Checkpoint> Checkpoint::Parse(std::string_view text) {
  std::vector<std::string_view> lines;
  size_t start = 0;
  while (start < text.size()) {
    const size_t nl = text.find('\n', start);
    if (nl == std::string_view::npos) return Bad("checkpoint: the text does not end in a newline");
    lines.push_back(text.substr(start, nl - start));
    start = nl + 1;
  }
  if (lines.size() != 3)
    return Bad("checkpoint: " + std::to_string(lines.size()) + " lines, want 3 (origin, size, root)");
  Checkpoint c;
  if (!ValidKeyName(lines[0])) return Bad("checkpoint: the origin is empty or has spaces, '+' or control characters");
  c.origin = std::string(lines[0]);
  const std::string_view s = lines[1];
  if (s.empty() || s.size() > 20 || (s.size() > 1 && s[0] == '0')) return Bad("checkpoint: bad tree size");
  uint64_t n = 0;
  for (char ch : s) {
    if (ch < '0' || ch > '9' || n > (UINT64_MAX - 9) / 10) return Bad("checkpoint: bad tree size");
    n = n * 10 + static_cast<uint64_t>(ch - '0');
  }
  c.size = n;
  std::vector<uint8_t> root;
  if (!FromBase64(lines[2], &root) || root.size() != 32) return Bad("checkpoint: the root is not a base64 SHA-256");
  std::copy(root.begin(), root.end(), c.root.begin());
  return c;
}

Result<Verifier> Verifier::Parse(std::string_view vkey) {
  const size_t p1 = vkey.find('+');
  const size_t p2 = p1 == std::string_view::npos ? p1 : vkey.find('+', p1 + 1);
  if (p2 == std::string_view::npos) return Bad("verifier key: want NAME+KEYID+KEY");
  Verifier v;
  const std::string_view name = vkey.substr(0, p1), id = vkey.substr(p1 + 1, p2 - p1 - 1), key = vkey.substr(p2 + 1);
  if (!ValidKeyName(name)) return Bad("verifier key: bad name");
  if (id.size() != 8 || id.find_first_not_of("0123456789abcdef") != std::string_view::npos) {
    return Bad("verifier key: the key id is 8 lower-case hex digits");
  }
  std::vector<uint8_t> raw;
  if (!FromBase64(key, &raw) || raw.size() != 33 || raw[0] != kEd25519) {
    return Bad("verifier key: the key is base64 of 0x01 and a 32-byte Ed25519 public key");
  }
  v.name_ = std::string(name);
  v.key_id_ = static_cast<uint32_t>(std::stoul(std::string(id), nullptr, 16));
  if (v.key_id_ != KeyId(v.name_, raw.data() + 1)) return Bad("verifier key: the key id does not match the key");
  v.key_ = PublicKey(raw.data() + 1);
  if (!v.key_) return Bad("verifier key: not an Ed25519 public key");
  v.vkey_ = std::string(vkey);
  return v;
}

Result<std::string> Verifier::Open(std::string_view note) const {
  if (note.size() > kMaxNote) return Bad("note: larger than " + std::to_string(kMaxNote) + " bytes");
  for (unsigned char c : note) {
    if (c < 0x20 && c != '\n') return Bad("note: a control character");
  }
  // The text ends at the last blank line; signature lines follow it.
  if (note.empty() || note.back() != '\n') return Bad("note: does not end in a newline");
  const size_t split = note.rfind("\n\n");
  if (split == std::string_view::npos) return Bad("note: no blank line before the signatures");
  const std::string_view text = note.substr(0, split + 1);
  std::string_view sigs = note.substr(split + 2);
  bool verified = false;
  size_t count = 0;
  while (!sigs.empty()) {
    const size_t nl = sigs.find('\n');
    const std::string_view line = sigs.substr(0, nl);
    sigs.remove_prefix(nl + 1);
    if (++count > kMaxSignatures) return Bad("note: more than " + std::to_string(kMaxSignatures) + " signatures");
    if (line.substr(0, kDash.size()) != kDash) return Bad("note: a signature line does not start with an em dash");
    const std::string_view rest = line.substr(kDash.size());
    const size_t sp = rest.find(' ');
    if (sp == std::string_view::npos) return Bad("note: a signature line without a signature");
    const std::string_view name = rest.substr(0, sp);
    std::vector<uint8_t> sig;
    if (!ValidKeyName(name) || !FromBase64(rest.substr(sp + 1), &sig) || sig.size() < 5) {
      return Bad("note: a malformed signature line");
    }
    const uint32_t id = uint32_t{sig[0]} << 24 | uint32_t{sig[1]} << 16 | uint32_t{sig[2]} << 8 | sig[3];
    if (name != name_ || id != key_id_) continue;  // someone else's: ignored
    if (sig.size() != 4 + 64 || !Ed25519Verify(key_.get(), text, sig.data() + 4, 64)) {
      return Bad("note: the signature of " + name_ + " does not verify");
    }
    verified = true;
  }
  if (!verified) return Bad("note: not signed by " + name_ + " (key id " + std::to_string(key_id_) + ")");
  return std::string(text);
}

Result<Signer> Signer::Load(const std::string& pem_path, const std::string& name) {
  if (!ValidKeyName(name)) return Bad("audit key name (origin) '" + name + "': empty, or has spaces or '+'");
  const int fd = open(pem_path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return Status(Code::kIo, "audit key " + pem_path + ": " + std::strerror(errno));
  // As ssh does with its keys: a signing key others can read is not used.
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || (st.st_mode & 077) != 0) {
    close(fd);
    char mode[8];
    std::snprintf(mode, sizeof(mode), "%04o", static_cast<unsigned>(st.st_mode & 07777));
    return Bad("audit key " + pem_path + ": not a regular file only its owner can read (mode " + mode +
               "): chmod 600 it");
  }
  std::FILE* f = fdopen(fd, "r");
  if (!f) {
    close(fd);
    return Status(Code::kIo, "audit key " + pem_path + ": " + std::strerror(errno));
  }
  EVP_PKEY* k = PEM_read_PrivateKey(f, nullptr, nullptr, nullptr);
  std::fclose(f);
  if (!k || EVP_PKEY_id(k) != EVP_PKEY_ED25519) {
    EVP_PKEY_free(k);
    return Bad("audit key " + pem_path + ": not a PEM Ed25519 private key");
  }
  Signer s;
  s.key_.reset(k, EVP_PKEY_free);
  uint8_t pub[32];
  size_t len = sizeof(pub);
  if (EVP_PKEY_get_raw_public_key(k, pub, &len) != 1 || len != 32) return Bad("audit key: no public key");
  std::vector<uint8_t> raw{kEd25519};
  raw.insert(raw.end(), pub, pub + 32);
  char id[9];
  std::snprintf(id, sizeof(id), "%08x", KeyId(name, pub));
  auto v = Verifier::Parse(name + "+" + id + "+" + Base64Of(raw));
  if (!v.ok()) return v.status();
  s.verifier_ = std::move(*v);
  return s;
}

Status Signer::Generate(const std::string& pem_path) {
  EVP_PKEY* k = EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519");
  if (!k) return Status(Code::kIo, "cannot generate an Ed25519 key");
  const int fd = open(pem_path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    EVP_PKEY_free(k);
    return Status(Code::kIo, pem_path + ": " + std::strerror(errno));
  }
  std::FILE* f = fdopen(fd, "w");
  const bool ok = f && PEM_write_PrivateKey(f, k, nullptr, nullptr, 0, nullptr, nullptr) == 1;
  EVP_PKEY_free(k);
  if (f ? std::fclose(f) != 0 || !ok : (close(fd), true)) return Status(Code::kIo, pem_path + ": write failed");
  return Status::Ok();
}

Result<std::string> Signer::Sign(std::string_view text) const {
  if (text.empty() || text.back() != '\n') return Bad("note text must end in a newline");
  uint8_t sig[64];
  size_t len = sizeof(sig);
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  const bool ok = ctx && EVP_DigestSignInit(ctx, nullptr, nullptr, nullptr, key_.get()) == 1 &&
                  EVP_DigestSign(ctx, sig, &len, reinterpret_cast<const unsigned char*>(text.data()), text.size()) == 1;
  EVP_MD_CTX_free(ctx);
  if (!ok || len != 64) return Status(Code::kIo, "Ed25519 signing failed");
  const uint32_t id = verifier_.key_id();
  std::vector<uint8_t> blob{static_cast<uint8_t>(id >> 24), static_cast<uint8_t>(id >> 16),
                            static_cast<uint8_t>(id >> 8), static_cast<uint8_t>(id)};
  blob.insert(blob.end(), sig, sig + 64);
  return std::string(text) + "\n" + std::string(kDash) + verifier_.name() + " " + Base64Of(blob) + "\n";
}

}  // namespace crfs::audit
