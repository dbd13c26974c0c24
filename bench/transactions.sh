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

truncate -s 4G "$work/img"
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
src=$(mktemp -d /dev/shm/crfs-bench-src.XXXXXX)
trap 'rm -rf "$src"; cleanup' EXIT

echo "creating $files files in $dirs directories on tmpfs..." >&2
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
' "$src/tree" "$files" "$dirs"
mkdir "$mnt/local"
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

timed() {
  local t0 t1
  t0=$(date +%s.%N)
  "$@" > /dev/null 2> "$work/last.err"
  t1=$(date +%s.%N)
  echo "$t1 - $t0" | bc -l
}
row() {  # name local crfs sshfs
  printf '%-34s %8.3f %8.3f %8.3f   %6.2fx %6.2fx\n' "$1" "$2" "$3" "$4" "$(echo "$3 / $2" | bc -l)" \
    "$(echo "$4 / $2" | bc -l)"
}

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
