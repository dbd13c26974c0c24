#!/bin/bash
# Benchmark of transactions against local btrfs and sshfs, on one run:
#  - create: a tree of 20,000 files in 1,500 directories (from tmpfs), with
#    `cp -r` locally and over sshfs, `crfs import` through crfsd (batched
#    transactions of ~1,000 objects);
#  - remove: the same tree, `rm -rf` locally and over sshfs, `crfs rm -r`
#    (one transaction) through crfsd.
# Also counts what the crfs client sent to the server (frames and bytes, all
# of them: HELLO, the queries that discover the tree, the transaction).
# Everything runs on loopback and a loop-mounted btrfs image under a scratch
# directory, all removed at the end. Needs root. Not part of the test suite.
#
# usage: bench/transactions.sh [BUILD_DIR]   (default build/release, (re)built first)
# CRFS_BENCH_FILES and CRFS_BENCH_DIRS change the sizes.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
build=${1:-build/release}
files=${CRFS_BENCH_FILES:-20000} dirs=${CRFS_BENCH_DIRS:-1500}

source bench/lib.sh
bench_setup "$build" 4096
ROW_WIDTH=34
src=$(mktemp -d /dev/shm/crfs-bench-src.XXXXXX)
bench_scratch=$src  # removed by bench_cleanup

echo "creating $files files in $dirs directories on tmpfs..." >&2
bench_make_tree "$src/tree" "$files" "$dirs"
mkdir "$mnt/local"
sync

bench_servers

declare -A t
sync
t[local_create]=$(timed cp -r "$src/tree" "$mnt/local/tree")
sync
t[crfs_create]=$(timed "$crfs" --stats import "$src/tree" /tree)
create_stats=$(tail -1 "$work/last.err")
sync
t[sshfs_create]=$(timed cp -r "$src/tree" "$sshmnt/tree-sshfs")
sync
diff -r "$src/tree" "$tenant/tree" > /dev/null || { echo "crfs import did not copy the tree" >&2; exit 1; }
t[local_rm]=$(timed rm -rf "$mnt/local/tree")
sync
t[crfs_rm]=$(timed "$crfs" --stats rm -r /tree)
rm_stats=$(tail -1 "$work/last.err")
sync
t[sshfs_rm]=$(timed rm -rf "$sshmnt/tree-sshfs")
[ ! -e "$tenant/tree" ] || { echo "crfs rm -r left the tree" >&2; exit 1; }

objects=$((files + dirs))
printf '\n%d files in %d directories (%d objects), btrfs on a loop device, loopback\n' "$files" "$dirs" "$objects"
printf '%-34s %8s %8s %8s   %7s %7s\n' "workload (seconds)" local crfs sshfs crfs/l sshfs/l
row "create tree (cp -r / crfs import)" "${t[local_create]}" "${t[crfs_create]}" "${t[sshfs_create]}"
row "remove tree (rm -rf / crfs rm -r)" "${t[local_rm]}" "${t[crfs_rm]}" "${t[sshfs_rm]}"
echo
echo "crfs import: ${create_stats#crfs: }"
echo "crfs rm -r:  ${rm_stats#crfs: }"
echo "crfsd's log of its longer transactions:"
grep 'ops, planned in' "$work/crfsd.log" | sed 's/^<[0-9]>/  /' || true
