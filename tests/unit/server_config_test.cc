#include <gtest/gtest.h>

#include "server/config.h"
#include "server/identity.h"
#include "server/idmap.h"
#include "tests/unit/param_name.h"

namespace crfs::server {
namespace {

constexpr char kGood[] = R"({
  "listen": "127.0.0.1:7420",
  "storage_root": "/srv/crfs",
  "trust_domain": "crfs.test",
  "tls": {"ca": "/etc/crfs/ca.crt", "crl": "/etc/crfs/crl.pem", "cert": "/etc/crfs/s.crt", "key": "/etc/crfs/s.key"},
  "limits": {"max_sessions": 100},
  "policy": "/etc/crfs/policy.json",
  "audit": {"dir": "/var/lib/crfs/audit", "key": "/etc/crfs/audit.key", "origin": "crfs.test/audit"},
  "tenants": {
    "acme": {"id_map": {"uid_base": 100000, "gid_base": 100000, "count": 65536},
             "clients": {"carol": {"uid": 1000, "gid": 100}}},
    "beta": {"id_map": {"uid_base": 200000, "gid_base": 300000, "count": 1000, "squash_id": 999,
                        "root_squash": true, "unmapped": "squash"}}
  }
})";

TEST(ServerConfig, ParsesAGoodFile) {
  auto c = ParseConfig(kGood);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->listen_port, 7420);
  EXPECT_EQ(c->max_sessions, 100u);
  ASSERT_EQ(c->tenants.size(), 2u);
  const TenantConfig* beta = c->FindTenant("beta");
  ASSERT_NE(beta, nullptr);
  EXPECT_EQ(beta->ids.gid_base, 300000u);
  EXPECT_TRUE(beta->ids.root_squash);
  EXPECT_FALSE(beta->ids.refuse_unmapped);
  EXPECT_TRUE(c->FindTenant("acme")->ids.refuse_unmapped);
  EXPECT_EQ(c->FindTenant("gamma"), nullptr);
  const TenantConfig* acme = c->FindTenant("acme");
  EXPECT_EQ(acme->CredentialsOf("carol").uid, 1000u);
  EXPECT_EQ(acme->CredentialsOf("carol").gid, 100u);
  EXPECT_EQ(acme->CredentialsOf("laptop").uid, 0u);  // not listed: the tenant's root
}

struct BadConfig {
  const char* from;  // replaced in kGood ...
  const char* to;    // ... by this
  const char* error;
};

class ServerConfigBad : public ::testing::TestWithParam<BadConfig> {};

TEST_P(ServerConfigBad, NamesTheBadKey) {
  std::string text = kGood;
  size_t at = text.find(GetParam().from);
  ASSERT_NE(at, std::string::npos);
  text.replace(at, strlen(GetParam().from), GetParam().to);
  auto c = ParseConfig(text);
  ASSERT_FALSE(c.ok()) << "accepted: " << text;
  EXPECT_NE(c.status().message().find(GetParam().error), std::string::npos) << c.status().message();
}

INSTANTIATE_TEST_SUITE_P(
    Table, ServerConfigBad,
    ::testing::Values(
        BadConfig{"\"limits\"", "\"colour\": 1, \"limits\"", "config: colour: unknown key"},
        BadConfig{"\"trust_domain\"", "\"trust_domian\"", "trust_domain: missing"},
        BadConfig{"crfs.test", "Crfs.Test", "trust_domain: must be a lower-case DNS name"},
        BadConfig{"/srv/crfs", "srv/crfs", "storage_root: must be an absolute path"},
        BadConfig{"127.0.0.1:7420", "127.0.0.1", "listen: must be HOST:PORT"},
        BadConfig{"127.0.0.1:7420", "127.0.0.1:70000", "listen: port must be"},
        BadConfig{"\"crl\": \"/etc/crfs/crl.pem\", ", "", "tls.crl: missing"},
        BadConfig{"\"max_sessions\": 100", "\"max_sessions\": -1", "limits.max_sessions: must be an integer"},
        BadConfig{"\"max_sessions\": 100", "\"max_sessoins\": 1", "limits.max_sessoins: unknown key"},
        BadConfig{"\"max_sessions\": 100", "\"max_sessions\": 100, \"max_open_per_session\": 0",
                  "limits.max_open_per_session"},
        BadConfig{"\"max_sessions\": 100", "\"max_sessions\": 100, \"max_unnamed_per_tenant\": 0",
                  "limits.max_unnamed_per_tenant"},
        BadConfig{"\"max_sessions\": 100", "\"max_sessions\": 100, \"max_known_objects_per_tenant\": 63",
                  "limits.max_known_objects_per_tenant"},
        BadConfig{"\"count\": 65536", "\"count\": 0", "tenants.acme.id_map.count: must be an integer"},
        BadConfig{"\"uid_base\": 100000, ", "", "tenants.acme.id_map.uid_base"},
        BadConfig{"\"count\": 1000,", "\"count\": 4294967295,", "tenants.beta.id_map.count: base + count"},
        BadConfig{"\"squash\"", "\"ignore\"", "tenants.beta.id_map.unmapped: must be refuse or squash"},
        BadConfig{"\"acme\":", "\"Acme\":", "tenants.Acme: tenant names"},
        BadConfig{"\"root_squash\": true", "\"root_squash\": 1", "root_squash: must be true or false"},
        BadConfig{"\"uid\": 1000", "\"uid\": 65536", "tenants.acme.clients.carol.uid: must be an integer in 0..65535"},
        BadConfig{"\"uid\": 1000, ", "", "tenants.acme.clients.carol: uid and gid are required"},
        BadConfig{"\"carol\":", "\"Carol\":", "tenants.acme.clients.Carol: client names"},
        BadConfig{"\"gid\": 100}", "\"gid\": 100, \"home\": 1}", "tenants.acme.clients.carol.home: unknown key"},
        BadConfig{"\"max_sessions\": 100", "\"max_sessions\": 100, \"max_handshakes_per_address\": 0",
                  "limits.max_handshakes_per_address"},
        BadConfig{"\"max_sessions\": 100", "\"max_sessions\": 100, \"stop_timeout_ms\": 3600001",
                  "limits.stop_timeout_ms: must be an integer in 0..3600000"},
        // Tenants sharing host ids would own each other's files.
        BadConfig{"\"uid_base\": 200000", "\"uid_base\": 165535",
                  "tenants.beta.id_map: host uids overlap those of tenant acme"},
        BadConfig{"\"gid_base\": 300000", "\"gid_base\": 99001",
                  "tenants.beta.id_map: host gids overlap those of tenant acme"},
        BadConfig{"\"storage_root\"", "\"durability\": \"fast\", \"storage_root\"",
                  "durability: must be crash, power or sync"},
        BadConfig{"\"origin\": \"crfs.test/audit\"", "\"origin\": \"crfs test\"", "audit.origin: no spaces"},
        BadConfig{"\"origin\": \"crfs.test/audit\"", "\"origin\": \"crfs.test/audit\", \"checkpoint_interval_ms\": 10",
                  "audit.checkpoint_interval_ms: must be an integer"},
        BadConfig{"\"key\": \"/etc/crfs/audit.key\", ", "", "audit.key: missing"},
        BadConfig{"\"audit\"", "\"audyt\"", "audit: missing"}, BadConfig{"}\n}", "}\n", "not valid JSON"}),
    [](const ::testing::TestParamInfo<BadConfig>& info) {
      return crfs::testing::ParamName(std::to_string(info.index) + "_" + info.param.error);
    });

TEST(ServerConfig, AdjacentIdRangesDoNotOverlap) {
  std::string text = kGood;
  // acme holds [100000, 165536); beta starting right after it is fine.
  text.replace(text.find("\"uid_base\": 200000"), 18, "\"uid_base\": 165536");
  text.replace(text.find("\"gid_base\": 300000"), 18, "\"gid_base\": 99000");
  auto c = ParseConfig(text);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->max_handshakes, 1024u);
  EXPECT_EQ(c->max_handshakes_per_address, 16u);
  EXPECT_EQ(c->stop_timeout_ms, 30000u);
  EXPECT_EQ(c->durability, Durability::kPower) << "power-cut atomicity unless configured otherwise";
}

TEST(ServerConfig, TopLevelMustBeAnObject) {
  auto c = ParseConfig("[]");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("must be an object"), std::string::npos) << c.status().message();
}

TEST(IdMap, MapsLikeAUserNamespace) {
  IdMap m(IdMapConfig{100000, 200000, 1000, 65534, false, true});
  EXPECT_EQ(m.UidToHost(0), 100000u);
  EXPECT_EQ(m.GidToHost(999), 200999u);
  EXPECT_EQ(m.UidToHost(1000), std::nullopt) << "outside the map: refused";
  EXPECT_EQ(m.UidToTenant(100005), 5u);
  EXPECT_EQ(m.UidToTenant(0), 65534u) << "host root is squashed";
  EXPECT_EQ(m.UidToTenant(101000), 65534u);
  EXPECT_EQ(m.GidToTenant(100005), 65534u) << "uid base is not the gid base";
}

TEST(IdMap, RootSquashAndSquashingUnmapped) {
  IdMap m(IdMapConfig{100000, 100000, 1000, 999, true, false});
  EXPECT_EQ(m.UidToHost(0), 100999u) << "root squashed to the squash id";
  EXPECT_EQ(m.UidToHost(5000), 100999u) << "unmapped squashed";
  IdMap bad_squash(IdMapConfig{100000, 100000, 10, 65534, false, false});
  EXPECT_EQ(bad_squash.UidToHost(50), std::nullopt) << "a squash id outside the map cannot be used";
}

TEST(SpiffeId, ParsesTheCanonicalForm) {
  auto id = ParseSpiffeId("spiffe://crfs.test/tenant/acme/client/alice-1");
  ASSERT_TRUE(id.ok()) << id.status().ToString();
  EXPECT_EQ(id->trust_domain, "crfs.test");
  EXPECT_EQ(id->tenant, "acme");
  EXPECT_EQ(id->client, "alice-1");
}

TEST(SpiffeId, RefusesEverythingElse) {
  for (const char* bad : {
           "",
           "spiffe://",
           "https://crfs.test/tenant/acme/client/alice",
           "SPIFFE://crfs.test/tenant/acme/client/alice",
           "spiffe://crfs.test/tenant/acme/client/alice/",
           "spiffe://crfs.test/tenant/acme/client/alice/extra",
           "spiffe://crfs.test/tenant/acme/client/",
           "spiffe://crfs.test/tenant//client/alice",
           "spiffe://crfs.test/tenant/Acme/client/alice",
           "spiffe://crfs.test/tenant/acme/client/al%69ce",
           "spiffe://crfs.test/tenant/../client/alice",
           "spiffe://crfs.test/tenant/-acme/client/alice",
           "spiffe://crfs.test/tenants/acme/client/alice",
           "spiffe://crfs.test:443/tenant/acme/client/alice",
           "spiffe://user@crfs.test/tenant/acme/client/alice",
           "spiffe://crfs..test/tenant/acme/client/alice",
           "spiffe://crfs.test/tenant/acme/client/alice?x=1",
           "spiffe://crfs.test/tenant/acme/client/alice#f",
           "spiffe://crfs.test/tenant/acme",
       }) {
    EXPECT_FALSE(ParseSpiffeId(bad).ok()) << bad;
  }
  EXPECT_FALSE(ParseSpiffeId(std::string("spiffe://crfs.test/tenant/acme/client/al\0ice", 43)).ok());
  EXPECT_FALSE(ParseSpiffeId("spiffe://crfs.test/tenant/acme/client/" + std::string(64, 'a')).ok());
  EXPECT_TRUE(ParseSpiffeId("spiffe://crfs.test/tenant/acme/client/" + std::string(63, 'a')).ok());
}

}  // namespace
}  // namespace crfs::server
