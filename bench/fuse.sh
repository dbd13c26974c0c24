#!/bin/bash
# crfs-fuse against local btrfs (the limit) and sshfs (the peer), on one run,
# the same btrfs image, loopback only:
#   extract a tar of FILES files in DIRS directories; find | wc -l and ls -lR,
#   cold (caches dropped) and warm; rm -rf of the tree; dd of 1 GiB with
#   fsync, then read cold and warm; a small-file create rate.
# Prints seconds and ratios to local. Needs root. Not part of the test suite.
#
# usage: bench/fuse.sh [BUILD_DIR]   (default build/release, (re)built first)
#   CRFS_BENCH_FILES (20000), CRFS_BENCH_DIRS (1500), CRFS_BENCH_DD_MIB (1024),
#   CRFS_BENCH_SMALL (2000 files for the create rate), CRFS_DURABILITY (power)
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
build=${1:-build/release}
files=${CRFS_BENCH_FILES:-20000} dirs=${CRFS_BENCH_DIRS:-1500}
dd_mib=${CRFS_BENCH_DD_MIB:-1024} small=${CRFS_BENCH_SMALL:-2000}

source bench/lib.sh
bench_setup "$build" 6144
crfs_fuse=$build/client/crfs-fuse
src=$(mktemp -d /dev/shm/crfs-bench-src.XXXXXX)
bench_scratch=$src  # removed by bench_cleanup
crfsmnt=$work/crfs-fuse
fuse_cleanup() {
  mountpoint -q "$crfsmnt" 2> /dev/null && fusermount3 -u "$crfsmnt"
  [ -n "${fuse_pid:-}" ] && wait "$fuse_pid" 2> /dev/null
  bench_cleanup
}
trap fuse_cleanup EXIT

echo "creating $files files in $dirs directories on tmpfs..." >&2
bench_make_tree "$src/tree" "$files" "$dirs"
tar cf "$src/tree.tar" -C "$src" tree
bench_servers
mkdir -p "$crfsmnt"
"$crfs_fuse" "$CRFS_SERVER" "$crfsmnt" -f -o "cert=$CRFS_CERT,key=$CRFS_KEY,ca=$CRFS_CA" 2> "$work/fuse.log" &
fuse_pid=$!
for _ in $(seq 100); do mountpoint -q "$crfsmnt" && break; sleep 0.05; done
mountpoint -q "$crfsmnt" || { cat "$work/fuse.log"; exit 1; }

mkdir "$mnt/local" "$crfsmnt/crfs" "$sshmnt/sshfs"
targets=("$mnt/local" "$crfsmnt/crfs" "$sshmnt/sshfs")
declare -A t

small_files() {
  python3 -c '
import os, sys
d = sys.argv[1]
os.mkdir(d)
for i in range(int(sys.argv[2])):
    with open(os.path.join(d, "f%d" % i), "w") as f:
        f.write("x" * 100)
' "$@"
}

for i in 0 1 2; do
  d=${targets[$i]}
  echo "running in $d..." >&2
  drop
  t[extract,$i]=$(timed tar xf "$src/tree.tar" -C "$d")
  drop
  t[find_cold,$i]=$(timed sh -c "find '$d/tree' | wc -l")
  t[find_warm,$i]=$(timed sh -c "find '$d/tree' | wc -l")
  drop
  t[ls_cold,$i]=$(timed ls -lR "$d/tree")
  t[ls_warm,$i]=$(timed ls -lR "$d/tree")
  t[rm,$i]=$(timed rm -rf "$d/tree")
  t[dd_write,$i]=$(timed dd if=/dev/zero of="$d/big" bs=1M count="$dd_mib" conv=fsync)
  drop
  t[dd_cold,$i]=$(timed dd if="$d/big" of=/dev/null bs=1M)
  t[dd_warm,$i]=$(timed dd if="$d/big" of=/dev/null bs=1M)
  rm -f "$d/big"
  t[small,$i]=$(timed small_files "$d/small" "$small")
  rm -rf "$d/small"
done

ROW_WIDTH=34
printf "%-34s %8s %8s %8s   %7s %7s\n" "seconds (lower is better)" local crfs sshfs crfs/l sshfs/l
row "extract $files files, $dirs dirs" "${t[extract,0]}" "${t[extract,1]}" "${t[extract,2]}"
row "find | wc -l, cold" "${t[find_cold,0]}" "${t[find_cold,1]}" "${t[find_cold,2]}"
row "find | wc -l, warm" "${t[find_warm,0]}" "${t[find_warm,1]}" "${t[find_warm,2]}"
row "ls -lR, cold" "${t[ls_cold,0]}" "${t[ls_cold,1]}" "${t[ls_cold,2]}"
row "ls -lR, warm" "${t[ls_warm,0]}" "${t[ls_warm,1]}" "${t[ls_warm,2]}"
row "rm -rf of the tree" "${t[rm,0]}" "${t[rm,1]}" "${t[rm,2]}"
row "dd write $dd_mib MiB + fsync" "${t[dd_write,0]}" "${t[dd_write,1]}" "${t[dd_write,2]}"
row "dd read, cold" "${t[dd_cold,0]}" "${t[dd_cold,1]}" "${t[dd_cold,2]}"
row "dd read, warm" "${t[dd_warm,0]}" "${t[dd_warm,1]}" "${t[dd_warm,2]}"
row "create $small small files" "${t[small,0]}" "${t[small,1]}" "${t[small,2]}"
echo "(durability ${CRFS_DURABILITY:-power}; crfs-fuse defaults: entry/attr timeout 1 s, write_delay 0.5 s)"
