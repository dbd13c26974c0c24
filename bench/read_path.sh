#!/bin/bash
# Benchmark of crfsd's read path against local btrfs and sshfs, on one run:
#  - metadata: every object of a tree of 20,000 files in 1,500 directories,
#    `find -ls` locally and over sshfs, `crfs find` through crfsd;
#  - data: one 1 GiB file read sequentially, `cat` locally and over sshfs,
#    `crfs cat` through crfsd (TLS 1.3 + a crc32c per 4 KiB block).
# Cold runs drop the page cache first (echo 3 > /proc/sys/vm/drop_caches);
# warm runs follow a cold one. Prints a table of seconds and ratios to local.
# Everything runs on loopback and a loop-mounted btrfs image under a scratch
# directory, all removed at the end. Needs root. Not part of the test suite.
#
# usage: bench/read_path.sh [BUILD_DIR]   (default build/release, (re)built first)
# CRFS_BENCH_FILES, CRFS_BENCH_DIRS, CRFS_BENCH_MIB change the sizes.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
build=${1:-build/release}
files=${CRFS_BENCH_FILES:-20000} dirs=${CRFS_BENCH_DIRS:-1500} mib=${CRFS_BENCH_MIB:-1024}

source bench/lib.sh
bench_setup "$build" $((mib * 2 + 1024))

echo "creating $files files in $dirs directories and a $mib MiB file..." >&2
bench_make_tree "$tenant/tree" "$files" "$dirs"
dd if=/dev/urandom of="$tenant/big" bs=1M count="$mib" status=none
sync

bench_servers

count_local=$(find "$tenant/tree" | wc -l)
count_crfs=$("$crfs" find /tree 2> /dev/null | wc -l)
[ "$count_local" = "$count_crfs" ] || { echo "crfs find saw $count_crfs objects, find $count_local" >&2; exit 1; }

declare -A t
for mode in cold warm; do
  [ $mode = cold ] && drop
  t[local_meta_$mode]=$(timed find "$tenant/tree" -ls)
  [ $mode = cold ] && drop
  t[crfs_meta_$mode]=$(timed "$crfs" find /tree)
  [ $mode = cold ] && drop
  t[sshfs_meta_$mode]=$(timed find "$sshmnt/tree" -ls)
done
for mode in cold warm; do
  [ $mode = cold ] && drop
  t[local_read_$mode]=$(timed cat "$tenant/big")
  [ $mode = cold ] && drop
  t[crfs_read_$mode]=$(timed "$crfs" cat /big)
  [ $mode = cold ] && drop
  t[sshfs_read_$mode]=$(timed cat "$sshmnt/big")
done

echo
echo "crfs read path vs local btrfs and sshfs ($(nproc) cores, loopback, kernel $(uname -r))"
printf '%-30s %8s %8s %8s   %7s %7s\n' "workload (seconds)" local crfs sshfs "crfs/l" "sshfs/l"
for mode in cold warm; do
  row "stat $count_local objects ($mode)" "${t[local_meta_$mode]}" "${t[crfs_meta_$mode]}" "${t[sshfs_meta_$mode]}"
done
for mode in cold warm; do
  row "read $mib MiB ($mode)" "${t[local_read_$mode]}" "${t[crfs_read_$mode]}" "${t[sshfs_read_$mode]}"
done
for mode in cold warm; do
  printf 'read throughput %-6s %6.0f MB/s local, %6.0f MB/s crfs (%3.0f%% of local), %6.0f MB/s sshfs\n' "$mode" \
    "$(echo "$mib * 1.048576 / ${t[local_read_$mode]}" | bc -l)" \
    "$(echo "$mib * 1.048576 / ${t[crfs_read_$mode]}" | bc -l)" \
    "$(echo "100 * ${t[local_read_$mode]} / ${t[crfs_read_$mode]}" | bc -l)" \
    "$(echo "$mib * 1.048576 / ${t[sshfs_read_$mode]}" | bc -l)"
done
