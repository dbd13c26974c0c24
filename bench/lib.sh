# bench/lib.sh - what the benchmarks share, sourced by bench/*.sh from the
# repository root: dependencies and a fresh release build, a btrfs image on
# a loop device with a PKI and one tenant ("bench"), crfsd, sshd + sshfs on
# loopback (all started by PID), timing helpers, and a cleanup on exit that
# removes everything it made, also when a benchmark fails.
#
# bench_setup BUILD_DIR IMAGE_MIB   sets crfsd crfs crfsctl work mnt tenant loop
#                                   (crfsd.json durability: CRFS_DURABILITY, default power;
#                                   policy: a copy of CRFS_BENCH_POLICY at $work/policy.json,
#                                   default the shipped one)
# bench_servers                     starts crfsd (CRFS_* exported) and sshfs at $sshmnt
# timed CMD...                      seconds CMD took (its stderr in $work/last.err)
# row NAME LOCAL CRFS SSHFS         one table row with ratios to local
# drop                              sync and drop the page cache
# bench_make_tree ROOT FILES DIRS   the benchmark tree: DIRS directories, each under an
#                                   earlier one (8 per level), FILES files of 0-511 bytes

bench_setup() {
  local build=$1 image_mib=$2
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

  truncate -s "${image_mib}M" "$work/img"
  mkfs.btrfs -q "$work/img" > /dev/null
  loop=$(losetup --find --show "$work/img")
  mkdir -p "$mnt" "$sshmnt"
  mount -o noatime,nodev,nosuid "$loop" "$mnt"
  pki/crfs-pki init "$work/pki" --trust-domain bench.crfs > /dev/null
  pki/crfs-pki server "$work/pki" crfsd --ip 127.0.0.1 > /dev/null
  pki/crfs-pki client "$work/pki" bench runner > /dev/null
  cp "${CRFS_BENCH_POLICY:-policy/examples/default.json}" "$work/policy.json"
  "$build/tools/crfs-audit" keygen "$work/audit.key" --origin bench.crfs/audit > /dev/null
  printf '%s\n' "{\"listen\": \"127.0.0.1:0\", \"storage_root\": \"$mnt\", \"trust_domain\": \"bench.crfs\"," \
    " \"policy\": \"$work/policy.json\"," \
    " \"audit\": {\"dir\": \"$work/audit\", \"key\": \"$work/audit.key\", \"origin\": \"bench.crfs/audit\"}," \
    " \"durability\": \"${CRFS_DURABILITY:-power}\"," \
    " \"tls\": {\"ca\": \"$work/pki/ca.crt\", \"crl\": \"$work/pki/crl.pem\"," \
    "         \"cert\": \"$work/pki/servers/crfsd.crt\", \"key\": \"$work/pki/servers/crfsd.key\"}," \
    " \"tenants\": {\"bench\": {\"id_map\": {\"uid_base\": 100000, \"gid_base\": 100000, \"count\": 65536}}}}" \
    > "$work/crfsd.json"
  "$crfsctl" tenant add --config "$work/crfsd.json" bench > /dev/null
  tenant=$mnt/tenants/bench
  trap bench_cleanup EXIT
}

bench_cleanup() {
  mountpoint -q "$sshmnt" 2> /dev/null && fusermount3 -u "$sshmnt"
  [ -n "$sshd_pid" ] && kill "$sshd_pid" 2> /dev/null
  [ -n "$crfsd_pid" ] && kill "$crfsd_pid" 2> /dev/null && wait "$crfsd_pid" 2> /dev/null
  mountpoint -q "$mnt" && umount "$mnt"
  [ -n "$loop" ] && losetup -d "$loop"
  [ -n "${bench_scratch:-}" ] && rm -rf "$bench_scratch"
  rm -rf "$work"
}

bench_servers() {
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

}

drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }
timed() {
  local t0 t1
  t0=$(date +%s.%N)
  "$@" > /dev/null 2> "$work/last.err"
  t1=$(date +%s.%N)
  echo "$t1 - $t0" | bc -l
}
row() {  # name local crfs sshfs
  printf "%-${ROW_WIDTH:-30}s %8.3f %8.3f %8.3f   %6.2fx %6.2fx\n" "$1" "$2" "$3" "$4" "$(echo "$3 / $2" | bc -l)" \
    "$(echo "$4 / $2" | bc -l)"
}

bench_make_tree() {
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
' "$@"
}
