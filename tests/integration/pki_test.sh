#!/bin/bash
# crfs-pki: a CA, server and client certificates with the SPIFFE identity,
# 0600 keys, no overwriting, name checks, expiry, revocation and the CRL.
# usage: pki_test.sh CRFS_PKI
set -euo pipefail
pki=$1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
refused() { if "$pki" "$@" > "$work/out" 2>&1; then fail "accepted: crfs-pki $*"; fi; }
ca=$work/ca

"$pki" init "$ca" --trust-domain crfs.test > /dev/null
[ "$(stat -c %a "$ca/ca.key")" = 600 ] || fail "CA key is not 0600"
refused init "$ca" --trust-domain crfs.test
grep -q 'exists' "$work/out" || fail "double init: no 'exists' error"
refused init "$work/ca2"  # no trust domain
refused init "$work/ca3" --trust-domain 'Bad_Domain'

"$pki" server "$ca" crfsd --dns localhost --ip 127.0.0.1 > /dev/null
refused server "$ca" other  # no SAN at all
openssl x509 -in "$ca/servers/crfsd.crt" -noout -ext subjectAltName | grep -q 'DNS:localhost, IP Address:127.0.0.1' ||
  fail "server SAN"
openssl verify -CAfile "$ca/ca.crt" -purpose sslserver "$ca/servers/crfsd.crt" > /dev/null || fail "server cert does not verify"

"$pki" client "$ca" acme alice > /dev/null
[ "$(stat -c %a "$ca/clients/acme/alice.key")" = 600 ] || fail "client key is not 0600"
openssl x509 -in "$ca/clients/acme/alice.crt" -noout -ext subjectAltName |
  grep -q 'URI:spiffe://crfs.test/tenant/acme/client/alice' || fail "client identity URI"
openssl verify -CAfile "$ca/ca.crt" -purpose sslclient "$ca/clients/acme/alice.crt" > /dev/null || fail "client cert"
before=$(sha256sum "$ca/clients/acme/alice.key")
refused client "$ca" acme alice
[ "$(sha256sum "$ca/clients/acme/alice.key")" = "$before" ] || fail "refused issuance changed the key"
"$pki" client "$ca" acme alice --force > /dev/null
[ "$(sha256sum "$ca/clients/acme/alice.key")" != "$before" ] || fail "--force did not replace the key"

for bad in Acme 'a/b' '../x' '-x' 'x-' "$(printf 'a%.0s' {1..64})" ''; do
  refused client "$ca" "$bad" bob
  refused client "$ca" acme "$bad"
done
[ ! -e "$ca/clients/Acme" ] && [ ! -e "$work/x" ] || fail "a bad name created files"

refused client "$ca" acme carol --not-after 2030
refused client "$ca" acme carol --not-before 20300101000000Z --not-after 20200101000000Z
# A signing failure after the key was made (here: a damaged CA database)
# leaves no key behind.
cp -a "$ca" "$work/broken" && echo zz > "$work/broken/db/serial"
sed -i "s|$ca|$work/broken|" "$work/broken/db/openssl.cnf"
refused client "$work/broken" acme carol
grep -q 'signing failed' "$work/out" || fail "no signing error"
[ ! -e "$work/broken/clients/acme/carol.key" ] || fail "failed issuance left a key"

"$pki" client "$ca" acme old --not-before 20200101000000Z --not-after 20200201000000Z > /dev/null
if openssl verify -CAfile "$ca/ca.crt" "$ca/clients/acme/old.crt" > /dev/null 2>&1; then fail "expired cert verifies"; fi

serial=$(openssl x509 -in "$ca/clients/acme/alice.crt" -noout -serial | cut -d= -f2)
"$pki" revoke "$ca" "$ca/clients/acme/alice.crt" > /dev/null
openssl crl -in "$ca/crl.pem" -noout -text | grep -q "Serial Number: $serial" || fail "revoked serial not in CRL"
cat "$ca/ca.crt" "$ca/crl.pem" > "$work/chain.pem"
if openssl verify -crl_check -CAfile "$work/chain.pem" "$ca/clients/acme/alice.crt" > /dev/null 2>&1; then
  fail "revoked cert verifies with the CRL"
fi
"$pki" client "$ca" acme bob > /dev/null
openssl verify -crl_check -CAfile "$work/chain.pem" "$ca/clients/acme/bob.crt" > /dev/null || fail "good cert vs CRL"
echo PASS
