#!/bin/bash
# Builds tests/kmod_header as an out-of-tree module against Debian's
# linux-headers-amd64, in a scratch copy (the source tree stays clean).
# Fails if the header does not compile as kernel C with -Werror.
# usage: run_kmod_header_test.sh SOURCE_DIR
set -euo pipefail
src=$1
kdir=${CRFS_KDIR:-$(ls -d /usr/src/linux-headers-*-amd64 2>/dev/null | sort -V | tail -n 1)}
[ -n "$kdir" ] && [ -d "$kdir" ] || { echo "FAIL: no linux-headers-*-amd64 under /usr/src"; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp "$src/tests/kmod_header/crfs_proto_kmod_test.c" "$src/proto/crfs_proto.h" "$work/"
cat > "$work/Kbuild" <<'KB'
obj-m := crfs_proto_kmod_test.o
ccflags-y := -Werror
KB
echo "building against $kdir"
make -s -C "$kdir" M="$work" W=1 modules
modinfo "$work/crfs_proto_kmod_test.ko" | grep -E '^(description|vermagic):'
echo PASS
