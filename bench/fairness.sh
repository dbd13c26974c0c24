#!/bin/bash
# How much one tenant's large transaction delays another tenant's requests.
#
# Tenant "bench" removes a tree of 20,000 files in 1,500 directories with
# `crfs rm -r` (one transaction); meanwhile tenant "other" sends PINGs on one
# session (a `crfs shell`), one after another, and records how long each took.
# Prints the PING latencies before and during the removal. Transactions
# commit on a store worker per tenant (server/store_worker.h), so the other
# tenant keeps being answered; when they ran in the event loop its worst
# latency was the whole commit (docs/benchmarks.md). Needs root. Not part of
# the test suite.
#
# usage: bench/fairness.sh [BUILD_DIR]   (default build/release, (re)built first)
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
build=${1:-build/release}
files=${CRFS_BENCH_FILES:-20000} dirs=${CRFS_BENCH_DIRS:-1500}

source bench/lib.sh
bench_setup "$build" 4096
src=$(mktemp -d /dev/shm/crfs-bench-src.XXXXXX)
bench_scratch=$src  # removed by bench_cleanup

# A second tenant, with a client of its own.
python3 - "$work/crfsd.json" << 'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c["tenants"]["other"] = {"id_map": {"uid_base": 200000, "gid_base": 200000, "count": 65536}}
json.dump(c, open(sys.argv[1], "w"))
PY
"$crfsctl" tenant add --config "$work/crfsd.json" other > /dev/null
pki/crfs-pki client "$work/pki" other probe > /dev/null

echo "creating $files files in $dirs directories on tmpfs..." >&2
bench_make_tree "$src/tree" "$files" "$dirs"
"$crfsd" --config "$work/crfsd.json" --port-file "$work/port" 2> "$work/crfsd.log" &
crfsd_pid=$!
for _ in $(seq 100); do [ -s "$work/port" ] && break; sleep 0.05; done
export CRFS_SERVER=127.0.0.1:$(cat "$work/port") CRFS_CA=$work/pki/ca.crt
export CRFS_CERT=$work/pki/clients/bench/runner.crt CRFS_KEY=$work/pki/clients/bench/runner.key
"$crfs" import "$src/tree" /tree > /dev/null
sync

# The probe: PINGs from tenant other for 4 s; the removal starts after 1 s.
python3 - "$crfs" "$work" << 'PY' &
import subprocess, sys, time
crfs, work = sys.argv[1], sys.argv[2]
p = subprocess.Popen([crfs, '--cert', f'{work}/pki/clients/other/probe.crt', '--key',
                      f'{work}/pki/clients/other/probe.key', 'shell'],
                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
out = open(f'{work}/probe.txt', 'w')
end = time.time() + 4
while time.time() < end:
    t0 = time.time()
    p.stdin.write('ping\n')
    p.stdin.flush()
    line = p.stdout.readline()
    if not line.startswith('crfsd at'):
        sys.exit('probe: unexpected reply: ' + line)
    out.write(f'{t0:.6f} {time.time() - t0:.6f}\n')
p.stdin.close()
p.wait()
PY
probe_pid=$!
sleep 1
rm_start=$(date +%s.%N)
"$crfs" rm -r /tree
rm_end=$(date +%s.%N)
wait "$probe_pid"

python3 - "$work/probe.txt" "$rm_start" "$rm_end" << 'PY'
import sys
rows = [tuple(map(float, l.split())) for l in open(sys.argv[1])]
start, end = float(sys.argv[2]), float(sys.argv[3])
def stats(name, xs):
    xs = sorted(xs)
    if not xs:
        print(f'{name:34s} (no pings)')
        return
    pick = lambda q: xs[min(len(xs) - 1, int(q * len(xs)))] * 1000
    print(f'{name:34s} {len(xs):6d} {pick(0.5):9.2f} {pick(0.99):9.2f} {xs[-1] * 1000:9.2f}')
print(f'\ntenant other PINGs one session while tenant bench runs `crfs rm -r` of 21,500 objects '
      f'({end - start:.3f} s)')
print(f'{"PING latency (ms)":34s} {"count":>6s} {"median":>9s} {"p99":>9s} {"max":>9s}')
stats('before the removal', [l for t, l in rows if t + l < start])
stats('overlapping the removal', [l for t, l in rows if t + l >= start and t <= end])
PY
echo "crfsd's log of the transaction:"
grep 'ops, planned in' "$work/crfsd.log" | sed 's/^<[0-9]>/  /' || true
