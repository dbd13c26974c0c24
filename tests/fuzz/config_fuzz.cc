// libFuzzer target: crfsd's configuration parser. Oracle: no crash, leak or
// hang; an accepted configuration satisfies the invariants crfsd relies on.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "server/config.h"
#include "server/identity.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto c = crfs::server::ParseConfig(std::string_view(reinterpret_cast<const char*>(data), size));
  if (!c.ok()) return 0;
  if (c->storage_root.empty() || c->storage_root[0] != '/' || c->tls_crl.empty()) abort();
  for (const auto& t : c->tenants) {
    if (!crfs::server::IsValidName(t.name) || t.ids.count == 0 || t.ids.uid_base == 0) abort();
  }
  return 0;
}
