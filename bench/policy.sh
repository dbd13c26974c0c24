#!/bin/bash
# Benchmark of the policy's cost, on one run:
#  - one decision: policy_bench over the shipped policy and over a generated
#    one of 1,000 rules that a request passes all of (none matches: the worst
#    case, every rule tried) before the default allow;
#  - the read path and a transaction stream through crfsd with each policy:
#    `crfs find` of a tree of 20,000 files in 1,500 directories (a readdir
#    decision per directory, an item-query decision per object), `crfs cat`
#    of a 256 MiB file (one decision, then cached), `crfs import` of the tree
#    (a decision per operation), with local btrfs and sshfs on the same run
#    for scale. crfsd reloads the policy with SIGHUP between runs.
# Prints tables of nanoseconds and seconds with ratios. Needs root. Not part
# of the test suite.
#
# usage: bench/policy.sh [BUILD_DIR]   (default build/release, (re)built first)
# CRFS_BENCH_FILES, CRFS_BENCH_DIRS, CRFS_BENCH_MIB, CRFS_BENCH_RULES change the sizes.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
build=${1:-build/release}
files=${CRFS_BENCH_FILES:-20000} dirs=${CRFS_BENCH_DIRS:-1500} mib=${CRFS_BENCH_MIB:-256} rules=${CRFS_BENCH_RULES:-1000}

source bench/lib.sh
bench_setup "$build" $((mib * 2 + 2048))
cmake --build "$build" --target policy_bench > /dev/null

# 1,000 rules of every pattern shape, none of which the benchmark's requests
# match: literal paths, subtree prefixes, general globs, names, clients.
python3 - "$rules" > "$work/policy-big.json" << 'PY'
import json, sys
n = int(sys.argv[1])
rules = []
for i in range(n):
    k = i % 5
    r = {'id': f'r{i}', 'effect': 'deny'}
    if k == 0:
        r['path'] = f'/nope-{i}/file'
    elif k == 1:
        r['path'] = f'/archive-{i}/**'
    elif k == 2:
        r['path'] = f'/tree/*/x-{i}-*.tmp'
    elif k == 3:
        r['name'] = f'*.bak{i}'
    else:
        r['client'] = f'spiffe://bench.crfs/tenant/bench/client/robot-{i}'
    rules.append(r)
print(json.dumps({'version': 1, 'tenants': {'bench': {'rules': rules}},
                  'defaults': [{'id': 'allow-the-rest', 'effect': 'allow'}]}, indent=1))
PY
"$crfsctl" policy check "$work/policy-big.json" > /dev/null 2>&1 ||
  { "$crfsctl" policy check "$work/policy-big.json"; exit 1; }

echo
echo "one policy decision ($(nproc) cores; policy_bench, 200,000 decisions each)"
echo "-- the shipped policy (policy/examples/default.json):"
"$build/bench/policy_bench" policy/examples/default.json
echo "-- $rules rules, none matching, then the default allow:"
"$build/bench/policy_bench" "$work/policy-big.json"

echo "creating $files files in $dirs directories and a $mib MiB file..." >&2
bench_make_tree "$work/src" "$files" "$dirs"
cp -a "$work/src" "$tenant/tree"
dd if=/dev/urandom of="$tenant/big" bs=1M count="$mib" status=none
chown -R 100000:100000 "$tenant"
sync
bench_servers

use_policy() {  # FILE: make it crfsd's policy and wait for the reload
  local sha
  sha=$(sha256sum "$1" | cut -d' ' -f1)
  cp "$1" "$work/policy.json.new" && mv "$work/policy.json.new" "$work/policy.json"
  kill -HUP "$crfsd_pid"
  for _ in $(seq 200); do grep -q -- "-> $sha\|unchanged (sha256 $sha)" "$work/crfsd.log" && return; sleep 0.05; done
  echo "crfsd did not reload $1" >&2
  exit 1
}

declare -A t
cp policy/examples/default.json "$work/policy-default.json"
t[local_find]=$(timed find "$tenant/tree" -ls)
t[sshfs_find]=$(timed find "$sshmnt/tree" -ls)
t[local_cat]=$(timed cat "$tenant/big")
t[sshfs_cat]=$(timed cat "$sshmnt/big")
t[local_import]=$(timed cp -a "$work/src" "$tenant/copy-local")
t[sshfs_import]=$(timed cp -a "$work/src" "$sshmnt/copy-sshfs")
for round in 1 2; do  # alternating, twice: the machine is noisy
  for p in default big; do
    use_policy "$work/policy-$p.json"
    t[${p}_find_$round]=$(timed "$crfs" find /tree)
    t[${p}_cat_$round]=$(timed "$crfs" cat /big)
    t[${p}_import_$round]=$(timed "$crfs" import "$work/src" "/copy-$p-$round")
  done
done
best() { printf '%s\n' "$@" | sort -g | head -1; }

echo
echo "crfsd with the shipped policy and with $rules rules (warm caches; best of 2; seconds)"
printf '%-34s %8s %8s %9s %8s   %9s %8s\n' "workload" local sshfs "shipped" "$rules r." "rules/shipped" "shipped/l"
for w in find cat import; do
  case $w in
    find) name="stat $files objects (crfs find)" ;;
    cat) name="read $mib MiB (crfs cat)" ;;
    import) name="create $files files (import)" ;;
  esac
  d=$(best "${t[default_${w}_1]}" "${t[default_${w}_2]}")
  b=$(best "${t[big_${w}_1]}" "${t[big_${w}_2]}")
  printf '%-34s %8.3f %8.3f %9.3f %8.3f   %12.2fx %8.2fx\n' "$name" "${t[local_$w]}" "${t[sshfs_$w]}" "$d" "$b" \
    "$(echo "$b / $d" | bc -l)" "$(echo "$d / ${t[local_$w]}" | bc -l)"
done
