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

scripts/install-deps > /dev/null
for p in sshfs openssh-server openssh-client bc; do
  dpkg-query -W -f='${Status}' "$p" 2> /dev/null | grep -q 'install ok installed' ||
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$p" > /dev/null
done
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBUILD_TESTING=OFF > /dev/null
cmake --build "$build" > /dev/null  # incremental: never benchmark a stale binary
crfsd=$build/server/crfsd crfs=$build/client/crfs crfsctl=$build/tools/crfsctl

work=$(mktemp -d /var/tmp/crfs-bench.XXXXXX)
mnt=$work/mnt sshmnt=$work/sshfs loop="" crfsd_pid="" sshd_pid=""
cleanup() {
  mountpoint -q "$sshmnt" 2> /dev/null && fusermount3 -u "$sshmnt"
  [ -n "$sshd_pid" ] && kill "$sshd_pid" 2> /dev/null
  [ -n "$crfsd_pid" ] && kill "$crfsd_pid" 2> /dev/null && wait "$crfsd_pid" 2> /dev/null
  mountpoint -q "$mnt" && umount "$mnt"
  [ -n "$loop" ] && losetup -d "$loop"
  rm -rf "$work"
}
trap cleanup EXIT

truncate -s $((mib * 2 + 1024))M "$work/img"
mkfs.btrfs -q "$work/img" > /dev/null
loop=$(losetup --find --show "$work/img")
mkdir -p "$mnt" "$sshmnt"
mount -o noatime,nodev,nosuid "$loop" "$mnt"
pki/crfs-pki init "$work/pki" --trust-domain bench.crfs > /dev/null
pki/crfs-pki server "$work/pki" crfsd --ip 127.0.0.1 > /dev/null
pki/crfs-pki client "$work/pki" bench runner > /dev/null
printf '%s\n' "{\"listen\": \"127.0.0.1:0\", \"storage_root\": \"$mnt\", \"trust_domain\": \"bench.crfs\"," \
  " \"tls\": {\"ca\": \"$work/pki/ca.crt\", \"crl\": \"$work/pki/crl.pem\"," \
  "         \"cert\": \"$work/pki/servers/crfsd.crt\", \"key\": \"$work/pki/servers/crfsd.key\"}," \
  " \"tenants\": {\"bench\": {\"id_map\": {\"uid_base\": 100000, \"gid_base\": 100000, \"count\": 65536}}}}" \
  > "$work/crfsd.json"
"$crfsctl" tenant add --config "$work/crfsd.json" bench > /dev/null
tenant=$mnt/tenants/bench

echo "creating $files files in $dirs directories and a $mib MiB file..." >&2
python3 -c '
import os, sys
root, files, dirs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
paths = [root]
os.mkdir(root)
for d in range(1, dirs):  # a tree: each directory under an earlier one
    p = os.path.join(paths[(d - 1) // 8], "dir%d" % d)
    os.mkdir(p)
    paths.append(p)
for f in range(files):
    with open(os.path.join(paths[f % dirs], "file%d" % f), "w") as fh:
        fh.write("x" * (f % 512))
' "$tenant/tree" "$files" "$dirs"
dd if=/dev/urandom of="$tenant/big" bs=1M count="$mib" status=none
sync

"$crfsd" --config "$work/crfsd.json" --port-file "$work/port" 2> "$work/crfsd.log" &
crfsd_pid=$!
for _ in $(seq 100); do [ -s "$work/port" ] && break; sleep 0.05; done
export CRFS_SERVER=127.0.0.1:$(cat "$work/port") CRFS_CA=$work/pki/ca.crt
export CRFS_CERT=$work/pki/clients/bench/runner.crt CRFS_KEY=$work/pki/clients/bench/runner.key

# sshd on loopback, started by PID, with keys of its own.
mkdir -p "$work/ssh" /run/sshd
ssh-keygen -q -t ed25519 -N '' -f "$work/ssh/host"
ssh-keygen -q -t ed25519 -N '' -f "$work/ssh/user"
sshport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
printf '%s\n' "ListenAddress 127.0.0.1" "Port $sshport" "HostKey $work/ssh/host" \
  "AuthorizedKeysFile $work/ssh/user.pub" "PermitRootLogin prohibit-password" "PasswordAuthentication no" \
  "Subsystem sftp internal-sftp" "PidFile none" "StrictModes no" > "$work/ssh/sshd_config"
/usr/sbin/sshd -D -f "$work/ssh/sshd_config" -E "$work/ssh/log" &
sshd_pid=$!
for _ in $(seq 50); do (echo > "/dev/tcp/127.0.0.1/$sshport") 2> /dev/null && break; sleep 0.1; done
sshfs -p "$sshport" -o IdentityFile="$work/ssh/user",StrictHostKeyChecking=no,UserKnownHostsFile=/dev/null \
  "root@127.0.0.1:$tenant" "$sshmnt"

drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }
timed() {
  local t0 t1
  t0=$(date +%s.%N)
  "$@" > /dev/null 2>&1
  t1=$(date +%s.%N)
  echo "$t1 - $t0" | bc -l
}
row() {  # name local crfs sshfs
  printf '%-30s %8.3f %8.3f %8.3f   %6.2fx %6.2fx\n' "$1" "$2" "$3" "$4" "$(echo "$3 / $2" | bc -l)" \
    "$(echo "$4 / $2" | bc -l)"
}

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
